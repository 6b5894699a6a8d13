"""npmnv2: MobileNetV2 and its DeepLabV3 head in readable NumPy, with transformers' public API."""

from .configuration_mobilenet_v2 import MobileNetV2Config
from .modeling_mobilenet_v2 import (
    MobileNetV2ForImageClassification,
    MobileNetV2ForSemanticSegmentation,
    MobileNetV2Model,
    MobileNetV2PreTrainedModel,
)
from .outputs import (
    BaseModelOutputWithPoolingAndNoAttention,
    ImageClassifierOutputWithNoAttention,
    SemanticSegmenterOutput,
)
from .warnings import NpMnV2Warning

__version__ = "0.1.0"

__all__ = [
    "BaseModelOutputWithPoolingAndNoAttention",
    "ImageClassifierOutputWithNoAttention",
    "MobileNetV2Config",
    "MobileNetV2ForImageClassification",
    "MobileNetV2ForSemanticSegmentation",
    "MobileNetV2Model",
    "MobileNetV2PreTrainedModel",
    "NpMnV2Warning",
    "SemanticSegmenterOutput",
]

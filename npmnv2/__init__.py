"""npmnv2: MobileNetV2 and its DeepLabV3 head in readable NumPy, with transformers' public API."""

from . import data_files, ops, verify, viz
from .auto import (
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageClassification,
    AutoModelForSemanticSegmentation,
    MobileNetV2FeatureExtractor,
)
from .compare import Comparison, compare
from .configuration_mobilenet_v2 import MobileNetV2Config
from .image_processing_mobilenet_v2 import MobileNetV2ImageProcessor
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
from .summary import Summary
from .tflite.integer_model import QuantizedMobileNetV2, QuantizedOutput
from .trace import Step, Trace
from .warnings import NpMnV2Warning


def explore(model, image, *, other=None):
    """The interactive explorer of `model` on `image` in Jupyter; see `npmnv2.explorer.explore`."""
    from .explorer import explore as _explore

    return _explore(model, image, other=other)


__version__ = "0.1.0"

__all__ = [
    "AutoImageProcessor",
    "AutoModel",
    "AutoModelForImageClassification",
    "AutoModelForSemanticSegmentation",
    "BaseModelOutputWithPoolingAndNoAttention",
    "Comparison",
    "ImageClassifierOutputWithNoAttention",
    "MobileNetV2Config",
    "MobileNetV2FeatureExtractor",
    "MobileNetV2ForImageClassification",
    "MobileNetV2ForSemanticSegmentation",
    "MobileNetV2ImageProcessor",
    "MobileNetV2Model",
    "MobileNetV2PreTrainedModel",
    "NpMnV2Warning",
    "QuantizedMobileNetV2",
    "QuantizedOutput",
    "SemanticSegmenterOutput",
    "Step",
    "Summary",
    "Trace",
    "compare",
    "data_files",
    "explore",
    "ops",
    "verify",
    "viz",
]

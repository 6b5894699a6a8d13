"""transformers' Auto* entry points and deprecated names, so that code written for transformers'
MobileNetV2 runs with only its import (and `return_tensors="np"`) changed.

npmnv2 has one architecture, so each Auto class hands over to the MobileNetV2 class it would pick.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

from .image_processing_mobilenet_v2 import MobileNetV2ImageProcessor
from .modeling_mobilenet_v2 import (
    MobileNetV2ForImageClassification,
    MobileNetV2ForSemanticSegmentation,
    MobileNetV2Model,
)


class AutoImageProcessor:
    """`AutoImageProcessor.from_pretrained(source)`: the `MobileNetV2ImageProcessor` of a weights source."""

    @staticmethod
    def from_pretrained(source: str | os.PathLike, **overrides: Any) -> MobileNetV2ImageProcessor:
        processor = MobileNetV2ImageProcessor.from_pretrained(source)
        return processor.with_options(overrides) if overrides else processor


class AutoModel:
    """`AutoModel.from_pretrained(source)`: the bare `MobileNetV2Model`."""

    @staticmethod
    def from_pretrained(source: str | os.PathLike, **kwargs: Any) -> MobileNetV2Model:
        return MobileNetV2Model.from_pretrained(source, **kwargs)


class AutoModelForImageClassification:
    """`AutoModelForImageClassification.from_pretrained(source)`: `MobileNetV2ForImageClassification`."""

    @staticmethod
    def from_pretrained(source: str | os.PathLike, **kwargs: Any) -> MobileNetV2ForImageClassification:
        return MobileNetV2ForImageClassification.from_pretrained(source, **kwargs)


class AutoModelForSemanticSegmentation:
    """`AutoModelForSemanticSegmentation.from_pretrained(source)`: `MobileNetV2ForSemanticSegmentation`."""

    @staticmethod
    def from_pretrained(source: str | os.PathLike, **kwargs: Any) -> MobileNetV2ForSemanticSegmentation:
        return MobileNetV2ForSemanticSegmentation.from_pretrained(source, **kwargs)


class MobileNetV2FeatureExtractor(MobileNetV2ImageProcessor):
    """Deprecated (as in transformers 4): the same as `MobileNetV2ImageProcessor`; use that."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        warnings.warn(
            "MobileNetV2FeatureExtractor is deprecated (as in transformers); use MobileNetV2ImageProcessor instead, "
            "it takes the same arguments.",
            FutureWarning,
            stacklevel=2,
        )
        super().__init__(*args, **kwargs)

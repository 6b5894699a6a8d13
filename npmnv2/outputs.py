"""Output records of the forward passes, with transformers' class and field names.

Every array is in transformers' layout: NCHW for feature maps, (N, L) or (N, L, H, W) logits.
Read fields by name; `to_tuple()` (what `return_dict=False` returns) gives transformers' tuple,
the fields in order with the None ones left out.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np


class _ModelOutput:
    def to_tuple(self) -> tuple[Any, ...]:
        """The fields that are not None, in order: transformers' `return_dict=False` tuple."""
        return tuple(getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None)

    def __getitem__(self, key: str | int) -> Any:
        """outputs["logits"] as in transformers, or outputs[0] as its tuple."""
        return getattr(self, key) if isinstance(key, str) else self.to_tuple()[key]

    def keys(self) -> list[str]:
        return [f.name for f in fields(self) if getattr(self, f.name) is not None]


@dataclass
class BaseModelOutputWithPoolingAndNoAttention(_ModelOutput):
    """`MobileNetV2Model` output.

    last_hidden_state: (N, C, Ho, Wo) output of the final 1x1 convolution (`conv_1x1`).
    pooler_output: (N, C) its global average, or None without a pooling layer.
    hidden_states: the 16 inverted-residual block outputs (N, C_i, H_i, W_i), when asked for.
    """

    last_hidden_state: np.ndarray
    pooler_output: np.ndarray | None = None
    hidden_states: tuple[np.ndarray, ...] | None = None


@dataclass
class ImageClassifierOutputWithNoAttention(_ModelOutput):
    """`MobileNetV2ForImageClassification` output.

    loss: scalar (0-d array) when labels were given.
    logits: (N, L) scores before softmax.
    hidden_states: as in `BaseModelOutputWithPoolingAndNoAttention`, when asked for.
    """

    loss: np.ndarray | None = None
    logits: np.ndarray | None = None
    hidden_states: tuple[np.ndarray, ...] | None = None


@dataclass
class SemanticSegmenterOutput(_ModelOutput):
    """`MobileNetV2ForSemanticSegmentation` output.

    loss: scalar (0-d array) when labels were given (logits upsampled to the label size first).
    logits: (N, L, Ho, Wo) class scores at the backbone's output resolution (input / output_stride).
    hidden_states: the 16 block outputs, when asked for.
    attentions: always None (kept for field compatibility with transformers).
    """

    loss: np.ndarray | None = None
    logits: np.ndarray | None = None
    hidden_states: tuple[np.ndarray, ...] | None = None
    attentions: None = None

"""MobileNetV2Config: the hyper-parameters of the network, with transformers' names and defaults."""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .formats.json_file import read_json_object
from .ops import ACTIVATIONS

# Caps on the sizes a config.json can set, checked before anything is allocated.
MAX_IMAGE_SIDE = 4096
MAX_NUM_LABELS = 100_000  # ImageNet-21k has 21,843; the classifier at the cap is 512 MB
MAX_DEPTH_MULTIPLIER = 4.0  # published: 0.35 .. 1.4
MAX_EXPAND_RATIO = 16.0
MAX_ACTIVATION_ELEMENTS = 1 << 28  # the widest activation (1 GiB in float32)
PROBLEM_TYPES = ("regression", "single_label_classification", "multi_label_classification")


def _closest(name: str, candidates: list[str]) -> str:
    match = difflib.get_close_matches(name, candidates, n=1)
    return f" Did you mean {match[0]!r}?" if match else ""


def _shown(value: Any) -> str:
    """A field's value as an error message shows it: its repr, or for a long one what it is and how
    long (100,001 labels are not printed)."""
    if isinstance(value, (dict, list, tuple)) and len(value) > 8:
        return f"<a {type(value).__name__} of {len(value):,} entries>"
    text = repr(value)
    return text if len(text) <= 120 else f"{text[:100]}... <{len(text):,} characters>"


@dataclass
class MobileNetV2Config:
    """Configuration of a MobileNetV2 backbone and its heads (transformers' `MobileNetV2Config`).

    Field names and defaults are transformers' *code* defaults. Every value is checked when the
    config is made; an invalid one raises ValueError naming the field, the value and what is allowed.

    Fields:
        num_channels: input channels (3 for RGB).
        image_size: nominal input size, used by image processors and summaries (the network
            itself accepts any size >= 32).
        depth_multiplier: width multiplier alpha; every layer's channels are scaled by it.
        depth_divisible_by: channel counts are rounded to a multiple of this.
        min_depth: no layer has fewer channels than this.
        expand_ratio: t in the paper; expanded channels M = t * C_in.
        output_stride: input size / output size of the backbone: 32 (classification) or 8/16
            (segmentation, later depthwise convolutions are dilated instead of strided).
        first_layer_is_expansion: the 3x3 stem doubles as the first block's expansion; when
            False an extra 1x1 expansion follows it.
        finegrained_output: keep the final 1x1 conv at 1280 channels when depth_multiplier < 1.
        hidden_act: activation after every expansion and depthwise conv (see ops.ACTIVATIONS).
        tf_padding: TensorFlow SAME padding (True) or PyTorch symmetric padding (False).
        classifier_dropout_prob: dropout before the classifier (training only: npmnv2 is
            inference-only, so it is kept for round-tripping).
        initializer_range: std of the normal distribution of randomly initialised weights.
        layer_norm_eps: batch-norm epsilon of the backbone (the DeepLab head uses 1e-5).
        semantic_loss_ignore_index: label value the segmentation loss skips.
        pooling: "global" (transformers: average over the whole final map) or "fixed_7x7"
            (the original TF-slim release: a 7x7 average, stride 1, VALID, which gives a grid of
            logits for inputs larger than 224; identical to "global" at 224). npmnv2-only: it is
            written to config.json, and transformers ignores it.
        num_labels, id2label, label2id: the classes; give `num_labels` or `id2label`.
        problem_type: None (inferred from labels), or one of PROBLEM_TYPES.
        extra: keys of a transformers config.json that npmnv2 does not use (`architectures`,
            `transformers_version`, ...), kept and written back unchanged.

    >>> MobileNetV2Config(depth_multiplier=0.5).output_stride
    32
    """

    num_channels: int = 3
    image_size: int | tuple[int, int] = 224
    depth_multiplier: float = 1.0
    depth_divisible_by: int = 8
    min_depth: int = 8
    expand_ratio: float = 6.0
    output_stride: int = 32
    first_layer_is_expansion: bool = True
    finegrained_output: bool = True
    hidden_act: str = "relu6"
    tf_padding: bool = True
    classifier_dropout_prob: float = 0.8
    initializer_range: float = 0.02
    layer_norm_eps: float = 0.001
    semantic_loss_ignore_index: int = 255
    pooling: str = "global"
    num_labels: int | None = None
    id2label: dict[int, str] | None = None
    label2id: dict[str, int] | None = None
    problem_type: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __new__(cls, *args: Any, **kwargs: Any) -> MobileNetV2Config:
        # Reject a misspelt keyword with a suggestion, before the dataclass __init__ sees it.
        names = [f.name for f in dataclasses.fields(cls)]
        for key in kwargs:
            if key not in names:
                raise TypeError(f"MobileNetV2Config got an unknown field {key!r}.{_closest(key, names)}")
        return super().__new__(cls)

    def __post_init__(self) -> None:
        self._check_types()
        self._check_ranges()
        self._settle_labels()

    # ---------------------------------------------------------------- validation
    def _fail(self, name: str, allowed: str) -> None:
        raise ValueError(f"MobileNetV2Config.{name}={_shown(getattr(self, name))} is invalid: {allowed}.")

    def _check_types(self) -> None:
        for name in ("num_channels", "depth_divisible_by", "min_depth", "output_stride", "semantic_loss_ignore_index"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                self._fail(name, "expected an int")
        for name in ("first_layer_is_expansion", "finegrained_output", "tf_padding"):
            if not isinstance(getattr(self, name), bool):
                self._fail(name, "expected True or False")
        for name in (
            "depth_multiplier",
            "expand_ratio",
            "classifier_dropout_prob",
            "initializer_range",
            "layer_norm_eps",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                self._fail(name, "expected a finite number")
        if isinstance(self.image_size, list):
            self.image_size = tuple(self.image_size)
        size = self.image_size if isinstance(self.image_size, tuple) else (self.image_size,)
        if len(size) not in (1, 2) or any(isinstance(s, bool) or not isinstance(s, int) or s < 32 for s in size):
            self._fail("image_size", "expected an int >= 32 or a pair (height, width) of ints >= 32")
        if any(s > MAX_IMAGE_SIDE for s in size):
            self._fail("image_size", f"each side must be at most {MAX_IMAGE_SIDE} (MAX_IMAGE_SIDE)")

    def widest_activation(self, height: int, width: int) -> float:
        """Values in the widest activation of one image of height x width: the first block's
        expansion, 16 x expand_ratio channels (widened by a multiplier above 1) at half resolution."""
        return max(self.depth_multiplier, 1.0) * self.expand_ratio * 16 * (height // 2) * (width // 2)

    def check_activation_size(self, height: int, width: int, what: str) -> None:
        """Raise ValueError, naming `what`, when an input of height x width would make an activation
        wider than MAX_ACTIVATION_ELEMENTS (a config's image_size, pixel values, a processor's size)."""
        widest = self.widest_activation(height, width)
        if widest > MAX_ACTIVATION_ELEMENTS:
            raise ValueError(
                f"{what}: depth_multiplier={self.depth_multiplier} x expand_ratio={self.expand_ratio} at {height}x"
                f"{width} makes activations of {widest:,.0f} values, over the limit of {MAX_ACTIVATION_ELEMENTS:,} "
                "(MAX_ACTIVATION_ELEMENTS); use a smaller image size or multiplier."
            )

    def _check_ranges(self) -> None:
        if self.num_channels < 1:
            self._fail("num_channels", "must be >= 1")
        if not 0 < self.depth_multiplier <= MAX_DEPTH_MULTIPLIER:
            self._fail(
                "depth_multiplier", f"must be > 0 and at most {MAX_DEPTH_MULTIPLIER} (e.g. 0.35, 0.5, 0.75, 1.0, 1.4)"
            )
        if not 1 <= self.num_channels <= 16:
            self._fail("num_channels", "must be between 1 and 16 (3 for RGB)")
        if not 1 <= self.depth_divisible_by <= 1024:
            self._fail("depth_divisible_by", "must be between 1 and 1024 (8 in the paper)")
        if not 1 <= self.min_depth <= 1024:
            self._fail("min_depth", "must be between 1 and 1024 (8 in the paper)")
        if not 0 < self.expand_ratio <= MAX_EXPAND_RATIO:
            self._fail("expand_ratio", f"must be > 0 and at most {MAX_EXPAND_RATIO} (6 in the paper)")
        # The widest activation grows with depth_multiplier x expand_ratio x image area: cap it, so
        # that a config cannot ask for gigabytes before any weight is checked.
        h, w = self.image_hw
        self.check_activation_size(h, w, f"MobileNetV2Config: image_size={self.image_size}")
        if self.output_stride not in (8, 16, 32):
            self._fail("output_stride", "allowed values are 8, 16 and 32")
        if self.hidden_act not in ACTIVATIONS:
            self._fail("hidden_act", f"allowed values are {', '.join(sorted(ACTIVATIONS))}")
        if not 0 <= self.classifier_dropout_prob <= 1:
            self._fail("classifier_dropout_prob", "must be in [0, 1]")
        if self.initializer_range < 0:
            self._fail("initializer_range", "must be >= 0")
        if self.layer_norm_eps <= 0:
            self._fail("layer_norm_eps", "must be > 0")
        if self.pooling not in ("global", "fixed_7x7"):
            self._fail("pooling", "allowed values are 'global' and 'fixed_7x7'")
        if self.problem_type is not None and self.problem_type not in PROBLEM_TYPES:
            self._fail("problem_type", f"allowed values are None, {', '.join(PROBLEM_TYPES)}")

    def _settle_labels(self) -> None:
        """Make num_labels, id2label and label2id agree (transformers' default: 2 labels)."""
        if self.id2label is not None:
            try:
                self.id2label = {int(k): str(v) for k, v in self.id2label.items()}
            except (AttributeError, TypeError, ValueError):
                self._fail("id2label", "expected a mapping of int class ids to label names")
            if sorted(self.id2label) != list(range(len(self.id2label))):
                self._fail("id2label", f"class ids must be 0..{len(self.id2label) - 1} without gaps")
            if len(self.id2label) > MAX_NUM_LABELS:
                self._fail("id2label", f"at most {MAX_NUM_LABELS:,} labels (MAX_NUM_LABELS)")
            if self.num_labels is not None and self.num_labels != len(self.id2label):
                raise ValueError(
                    f"MobileNetV2Config: num_labels={self.num_labels} but id2label has {len(self.id2label)} "
                    "entries; give one of them, or make them agree."
                )
        else:
            num = 2 if self.num_labels is None else self.num_labels
            if isinstance(num, bool) or not isinstance(num, int) or not 0 <= num <= MAX_NUM_LABELS:
                self._fail("num_labels", f"expected an int between 0 and {MAX_NUM_LABELS:,} (MAX_NUM_LABELS)")
            self.id2label = {i: f"LABEL_{i}" for i in range(num)}
        self.num_labels = len(self.id2label)
        if self.label2id is None:
            self.label2id = {name: i for i, name in self.id2label.items()}
        else:
            try:
                self.label2id = {str(k): int(v) for k, v in self.label2id.items()}
            except (AttributeError, TypeError, ValueError):
                self._fail("label2id", "expected a mapping of label names to int class ids, e.g. {'cat': 1}")

    # ---------------------------------------------------------------- derived values
    @property
    def image_hw(self) -> tuple[int, int]:
        """image_size as (height, width)."""
        return self.image_size if isinstance(self.image_size, tuple) else (self.image_size, self.image_size)

    # ---------------------------------------------------------------- transformers config.json
    def to_dict(self) -> dict[str, Any]:
        """The transformers `config.json` content: HF keys, then the preserved unknown keys."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name in ("extra", "num_labels") or (f.name == "pooling" and self.pooling == "global"):
                continue  # num_labels is implied by id2label; the default pooling is transformers' own
            value = getattr(self, f.name)
            if f.name == "id2label":
                value = {str(k): v for k, v in value.items()}
            elif f.name == "image_size" and isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        out["model_type"] = "mobilenet_v2"
        out.update({k: v for k, v in self.extra.items() if k not in out})
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MobileNetV2Config:
        """Build from a transformers config dict; keys npmnv2 does not use go to `extra`."""
        if not isinstance(data, dict):
            raise TypeError(f"MobileNetV2Config.from_dict expects a dict, got {type(data).__name__}.")
        model_type = data.get("model_type", "mobilenet_v2")
        if model_type != "mobilenet_v2":
            raise ValueError(
                f"MobileNetV2Config.from_dict: model_type is {model_type!r}, expected 'mobilenet_v2'; "
                "this config belongs to another architecture."
            )
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: v for k, v in data.items() if k in names}
        extra = {k: v for k, v in data.items() if k not in names and k != "model_type"}
        return cls(**known, extra=extra)

    def to_json_file(self, path: str | os.PathLike) -> None:
        """Write `config.json` (sorted keys, as transformers does)."""
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(self.to_dict(), fh, indent=2, sort_keys=True)
            fh.write("\n")

    @classmethod
    def from_pretrained(cls, source: str | os.PathLike, **overrides: Any) -> MobileNetV2Config:
        """The config of a checkpoint folder, a config.json file or a hub id, with fields changed by
        keyword (as transformers: `MobileNetV2Config.from_pretrained(path, tf_padding=False)`)."""
        from .formats import CONFIG_NAME
        from .formats.errors import WeightFileError
        from .weights import resolve_checkpoint

        path = resolve_checkpoint(source)
        if path.suffix == ".tflite":
            raise WeightFileError(
                f"{str(path)!r} is a TFLite model: its config is inferred when the model loads; use "
                "MobileNetV2ForImageClassification.from_pretrained(path).config."
            )
        config_path = path / CONFIG_NAME if path.is_dir() else path
        if config_path.suffix != ".json":
            config_path = path.with_name(CONFIG_NAME)
        data = read_json_object(config_path, "config")
        unknown = [k for k in overrides if k not in {f.name for f in dataclasses.fields(cls)}]
        if unknown:
            raise TypeError(f"MobileNetV2Config.from_pretrained: unknown fields {unknown}.")
        return cls.from_dict({**data, **overrides})

    @classmethod
    def from_json_file(cls, path: str | os.PathLike) -> MobileNetV2Config:
        """Read a transformers `config.json`."""
        return cls.from_dict(read_json_object(Path(path), "config"))

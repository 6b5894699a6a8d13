"""MobileNetV2 as data: the paper's channel and stride tables, the output-stride rule, and one
spec per layer. Nothing here computes on arrays; the model code reads these specs.

Reading order: the tables -> `make_divisible` -> `ConvSpec` / `BlockSpec` -> `backbone_spec`
(with the output-stride -> dilation rule) -> the heads (`classifier_spec`, `deeplab_head_spec`)
-> `layer_specs`, every layer of one model class in execution order.

Imports only the config and the table of layer kinds.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

from .configuration_mobilenet_v2 import MobileNetV2Config
from .layer_kinds import ConvKind, layer_kind

# ============================================================================ the tables

# Output channels of each bottleneck's linear projection, before the depth multiplier:
# index 0 is the stem's projection (the paper's first bottleneck, t=1), 1..16 are `layer.0..15`.
PROJECTION_CHANNELS = [16, 24, 24, 32, 32, 32, 64, 64, 64, 64, 96, 96, 96, 160, 160, 160, 320]
# Stride of each block's depthwise conv (`layer.0..15`); the stem's 3x3 conv has stride 2.
BLOCK_STRIDES = [2, 1, 2, 1, 1, 2, 1, 1, 1, 1, 1, 1, 2, 1, 1, 1]
STEM_CHANNELS = 32  # the stem's 3x3 conv, before the depth multiplier
LAST_CHANNELS = 1280  # the final 1x1 conv (`conv_1x1`), before the depth multiplier
HEAD_CHANNELS = 256  # every DeepLabV3 head conv (not scaled by the depth multiplier)
HEAD_EPS = 1e-5  # transformers' head batch norms use 1e-5, not config.layer_norm_eps
MIN_INPUT_SIZE = 32  # the documented minimum: 32 / output_stride 32 = a 1x1 final feature map

Task = Literal["backbone", "classification", "segmentation"]


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a channel count to the nearest multiple of `divisor`, never below `min_value` and
    never more than 10% below `value` (TF-slim's `_make_divisible`, as transformers uses it).

    >>> make_divisible(32 * 0.35), make_divisible(96 * 0.35), make_divisible(16 * 0.35, 8, 8)
    (16, 32, 8)
    """
    min_value = divisor if min_value is None else min_value
    new_value = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new_value < 0.9 * value:  # rounding down lost more than 10%: go one step up
        new_value += divisor
    return int(new_value)


def apply_depth_multiplier(config: MobileNetV2Config, channels: int) -> int:
    """channels * depth_multiplier, rounded by `make_divisible` with the config's divisor and floor."""
    return make_divisible(round(channels * config.depth_multiplier), config.depth_divisible_by, config.min_depth)


# ============================================================================ specs


class ConvSpec(NamedTuple):
    """One layer (conv -> optional batch norm -> optional activation), as data. Build it with keywords.

    name: transformers module path relative to the backbone ("layer.3.expand_1x1", "classifier").
    kind: see `npmnv2.layer_kinds.ConvKind` (its row of `LAYER_KINDS` says how it runs).
    c_in, c_out: channels in and out; kernel_size, stride, dilation: of the convolution.
    activation: transformers activation name, or None for a linear layer.
    eps: batch-norm epsilon, or None when the layer has no batch norm.
    bias: whether the convolution itself has a bias (only the two classifiers do).
    tf_scope: the TF-slim scope of the same layer, to match TF/TFLite tensors.
    """

    name: str
    kind: ConvKind
    c_in: int
    c_out: int
    kernel_size: int = 1
    stride: int = 1
    dilation: int = 1
    activation: str | None = None
    eps: float | None = None
    bias: bool = False
    tf_scope: str = ""

    # The names of this layer's steps in a trace, built here and nowhere else.
    @property
    def conv_step(self) -> str:
        return self.name + layer_kind(self).step_suffix  # "layer.3.expand_1x1.convolution", "classifier"

    @property
    def norm_step(self) -> str:
        return f"{self.name}.normalization"

    @property
    def act_step(self) -> str:
        return f"{self.name}.activation"


class BlockSpec(NamedTuple):
    """An inverted residual block: its conv layers in order and whether it adds its input back.

    The block's own step (the residual add, or the projection passed on) is named `name`.
    """

    name: str
    convs: tuple[ConvSpec, ...]
    residual: bool
    tf_scope: str


class BackboneSpec(NamedTuple):
    stem: BlockSpec
    layers: tuple[BlockSpec, ...]
    conv_1x1: ConvSpec

    @property
    def blocks(self) -> tuple[BlockSpec, ...]:
        """The stem and the 16 inverted residual blocks, in order."""
        return (self.stem, *self.layers)

    def convs(self) -> list[ConvSpec]:
        """Every conv layer of the backbone in execution order."""
        return [*(c for block in self.blocks for c in block.convs), self.conv_1x1]


class DeepLabHeadSpec(NamedTuple):
    """The DeepLabV3 head's four convs, and the names of its three steps that are not convs."""

    conv_pool: ConvSpec
    conv_aspp: ConvSpec
    conv_projection: ConvSpec
    classifier: ConvSpec
    avg_pool: str = "segmentation_head.avg_pool"
    interpolate: str = "segmentation_head.interpolate"
    concat: str = "segmentation_head.concat"

    def convs(self) -> list[ConvSpec]:
        return [self.conv_pool, self.conv_aspp, self.conv_projection, self.classifier]


POOLER = "pooler"  # the step name of the classifier's (and bare model's) pooling


# ============================================================================ the backbone


def _bottleneck(
    config: MobileNetV2Config, name: str, scope: str, c_in: int, c_out: int, *, expand: bool, stride: int, dilation: int
) -> tuple[ConvSpec, ...]:
    """expand (1x1, activation) -> depthwise (3x3, activation) -> project (1x1, linear)."""
    act, eps = config.hidden_act, config.layer_norm_eps
    m = make_divisible(round(c_in * config.expand_ratio), config.depth_divisible_by, config.min_depth)
    if not expand:  # the stem: first_conv already produced the expanded channels
        m = c_in
    convs = []
    if expand:
        convs.append(
            ConvSpec(
                name=f"{name}.expand_1x1", kind="pointwise", c_in=c_in, c_out=m,
                activation=act, eps=eps, tf_scope=f"{scope}/expand",
            )
        )  # fmt: skip
    convs.append(
        ConvSpec(
            name=f"{name}.conv_3x3", kind="depthwise", c_in=m, c_out=m, kernel_size=3, stride=stride,
            dilation=dilation, activation=act, eps=eps, tf_scope=f"{scope}/depthwise",
        )
    )  # fmt: skip
    # The projection is linear: no activation, so the low-dimensional bottleneck keeps its
    # information (the paper's "linear bottleneck", section 3.2).
    convs.append(
        ConvSpec(name=f"{name}.reduce_1x1", kind="pointwise", c_in=m, c_out=c_out, eps=eps, tf_scope=f"{scope}/project")
    )
    return tuple(convs)


def backbone_spec(config: MobileNetV2Config) -> BackboneSpec:
    """The whole backbone as data: channel counts, strides and dilations of every conv layer."""
    channels = [apply_depth_multiplier(config, c) for c in PROJECTION_CHANNELS]
    stem_channels = apply_depth_multiplier(config, STEM_CHANNELS)
    act, eps = config.hidden_act, config.layer_norm_eps

    stem_convs = [
        ConvSpec(
            name="conv_stem.first_conv", kind="conv", c_in=config.num_channels, c_out=stem_channels, kernel_size=3,
            stride=2, activation=act, eps=eps, tf_scope="MobilenetV2/Conv",
        )
    ]  # fmt: skip
    if not config.first_layer_is_expansion:  # an extra 1x1 expansion after the 3x3 stem conv
        stem_convs.append(
            ConvSpec(
                name="conv_stem.expand_1x1", kind="pointwise", c_in=stem_channels, c_out=stem_channels,
                activation=act, eps=eps, tf_scope="MobilenetV2/expanded_conv/expand",
            )
        )  # fmt: skip
    stem_convs += _bottleneck(
        config, "conv_stem", "MobilenetV2/expanded_conv", stem_channels, channels[0], expand=False, stride=1, dilation=1
    )
    stem = BlockSpec("conv_stem", tuple(stem_convs), residual=False, tf_scope="MobilenetV2/expanded_conv")

    layers = []
    current_stride, dilation = 2, 1  # the stem's first conv has stride 2
    for i, stride in enumerate(BLOCK_STRIDES):
        if current_stride == config.output_stride:
            # Output stride reached: stop shrinking; this block keeps the current dilation and
            # the stride it would have had multiplies the dilation of the blocks after it.
            layer_stride, layer_dilation = 1, dilation
            dilation *= stride
        else:
            # Still shrinking: an ordinary (possibly strided) depthwise conv, no dilation.
            layer_stride, layer_dilation = stride, 1
            current_stride *= stride
        scope = f"MobilenetV2/expanded_conv_{i + 1}"
        convs = _bottleneck(
            config, f"layer.{i}", scope, channels[i], channels[i + 1],
            expand=True, stride=layer_stride, dilation=layer_dilation,
        )  # fmt: skip
        residual = layer_stride == 1 and channels[i] == channels[i + 1]  # shapes must match to add
        layers.append(BlockSpec(f"layer.{i}", convs, residual, scope))

    if config.finegrained_output and config.depth_multiplier < 1.0:
        last = LAST_CHANNELS  # keep the final features wide even for thin networks
    else:
        last = apply_depth_multiplier(config, LAST_CHANNELS)
    conv_1x1 = ConvSpec(
        name="conv_1x1", kind="pointwise", c_in=channels[-1], c_out=last,
        activation=act, eps=eps, tf_scope="MobilenetV2/Conv_1",
    )  # fmt: skip
    return BackboneSpec(stem, tuple(layers), conv_1x1)


# ============================================================================ the heads


def classifier_spec(config: MobileNetV2Config) -> ConvSpec | None:
    """The linear classifier on the pooled 1280 features (None when num_labels == 0: no classifier)."""
    if config.num_labels == 0:
        return None
    c_in = backbone_spec(config).conv_1x1.c_out
    return ConvSpec(
        name="classifier", kind="linear", c_in=c_in, c_out=config.num_labels, bias=True,
        tf_scope="MobilenetV2/Logits/Conv2d_1c_1x1",
    )  # fmt: skip


def deeplab_head_spec(config: MobileNetV2Config) -> DeepLabHeadSpec:
    """The DeepLabV3 head: image-pool branch, 1x1 branch, projection, classifier (in that order).

    It is the ASPP of DeepLabV3 reduced to its image-pooling and 1x1 branches (no atrous 3x3
    branches, no v3+ decoder), reading the 320-channel output of `layer.15`.
    """
    c_in = apply_depth_multiplier(config, PROJECTION_CHANNELS[-1])
    head, relu = "segmentation_head", "relu"
    return DeepLabHeadSpec(
        conv_pool=ConvSpec(
            name=f"{head}.conv_pool", kind="pointwise", c_in=c_in, c_out=HEAD_CHANNELS,
            activation=relu, eps=HEAD_EPS, tf_scope="image_pooling",
        ),
        conv_aspp=ConvSpec(
            name=f"{head}.conv_aspp", kind="pointwise", c_in=c_in, c_out=HEAD_CHANNELS,
            activation=relu, eps=HEAD_EPS, tf_scope="aspp0",
        ),
        conv_projection=ConvSpec(
            name=f"{head}.conv_projection", kind="pointwise", c_in=2 * HEAD_CHANNELS, c_out=HEAD_CHANNELS,
            activation=relu, eps=HEAD_EPS, tf_scope="concat_projection",
        ),
        classifier=ConvSpec(
            name=f"{head}.classifier", kind="pointwise", c_in=HEAD_CHANNELS, c_out=config.num_labels,
            bias=True, tf_scope="logits/semantic",
        ),
    )  # fmt: skip


def head_specs(config: MobileNetV2Config, task: Task) -> list[ConvSpec]:
    """The layers a task puts after the backbone: none, the linear classifier, or the DeepLabV3 head."""
    if task == "classification":
        classifier = classifier_spec(config)
        return [] if classifier is None else [classifier]
    if task == "segmentation":
        return deeplab_head_spec(config).convs()
    return []


def layer_specs(config: MobileNetV2Config, task: Task) -> list[ConvSpec]:
    """Every layer with parameters of one model class, in execution order (backbone, then head)."""
    return [*backbone_spec(config).convs(), *head_specs(config, task)]

"""The catalogue of MobileNetV2 porting bugs: one small function per hypothesis.

When a matched op is wrong on its own (`npmnv2.verify.check`), each hypothesis proposes how the
port might differ from the spec there: a modified copy of one step of the op's group (its padding,
its batch-norm eps, its activation, its kernel, ...) or of the pixels it read. `check` re-runs the
group with each proposal and keeps those that reproduce the port's output. A hypothesis is a
function `(group, context) -> [Proposal, ...]`; register it with `@hypothesis("id")`.

The ids, the bugs they name, and what they re-run:
    input.channel_order      BGR where RGB                      the pixels with their channels reversed
    input.normalization      another range, mean or std         the pixels in [0, 1], [0, 255], ImageNet mean/std, ...
    padding.symmetric        symmetric where TF SAME            the conv with (k-1)//2*d on every side
    padding.tf_same          TF SAME where symmetric            the conv with TensorFlow's SAME padding
    batch_norm.eps           another eps                        the batch norm with the eps that fits best
    activation.relu          ReLU where ReLU6                   the activation uncapped
    activation.missing       no activation                      the activation left out
    activation.on_projection an activation after the bottleneck ReLU6 (or ReLU) after the linear projection
    residual.missing         no skip connection                 the block output without its input added
    kernel.transposed        kh and kw swapped                  the conv with its kernel transposed
    kernel.flipped           convolution, not correlation       the conv with its kernel rotated by 180 degrees
    stride.misplaced         the stride on another conv         the block with its stride moved to the 1x1 conv
    dilation.wrong           another dilation rate              the depthwise conv at dilation 1, 2, 4
    upsample.align_corners   the other corner convention        the resize with align_corners flipped
Integer peers (`check_integer`): rounding.single, rounding.ties_up, rounding.float32, zero_point.off_by_one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..ops import Pad2D, conv_padding, relu, relu6
from ..trace import Step


@dataclass
class Proposal:
    """One way the port may differ: `steps` replaces steps of the group by name (a changed Step, or
    a function of the step's inputs), `pixels` the pixels the group starts from. `detail` says it
    in words, with the numbers."""

    detail: str
    steps: dict[str, Step | Callable[[list[np.ndarray]], np.ndarray]] = dataclasses.field(default_factory=dict)
    pixels: Callable[[np.ndarray], np.ndarray] | None = None
    target: str | None = None  # the step the bug is in (default: the first one changed)


@dataclass
class Context:
    """What a hypothesis may read: the spec's config, whether the group starts from the pixels, the
    inputs each step of the group read when re-run as the spec says (NHWC), and the port's tensor
    at the group's last step (NHWC) with that step's name."""

    config: Any
    from_pixels: bool
    inputs: dict[str, list[np.ndarray]]
    target: np.ndarray
    target_step: str


Hypothesis = Callable[[list[Step], Context], list[Proposal]]
CATALOGUE: dict[str, Hypothesis] = {}


def hypothesis(cause_id: str) -> Callable[[Hypothesis], Hypothesis]:
    """Register a hypothesis under its catalogue id."""

    def register(function: Hypothesis) -> Hypothesis:
        CATALOGUE[cause_id] = function
        return function

    return register


def _with(step: Step, **changes: Any) -> Step:
    return dataclasses.replace(step, **changes)


def _convs(group: list[Step]) -> list[Step]:
    return [s for s in group if s.kind == "convolution"]


def _input_hw(step: Step) -> tuple[int, int]:
    return step.input_shapes[0][2], step.input_shapes[0][3]


# ============================================================================ the input pipeline


@hypothesis("input.channel_order")
def channel_order(group: list[Step], ctx: Context) -> list[Proposal]:
    if not ctx.from_pixels:
        return []
    return [
        Proposal(
            "the pixels in BGR order where the spec feeds RGB", pixels=lambda x: x[..., ::-1], target="pixel_values"
        )
    ]


@hypothesis("input.normalization")
def normalization(group: list[Step], ctx: Context) -> list[Proposal]:
    if not ctx.from_pixels:
        return []
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    unit = lambda x: (x + 1) / 2  # noqa: E731 -- the spec's [-1, 1] pixels back in [0, 1]
    return [
        Proposal("pixels in [0, 1] where the spec feeds [-1, 1]", pixels=unit, target="pixel_values"),
        Proposal(
            "pixels in [0, 255] where the spec feeds [-1, 1]", pixels=lambda x: unit(x) * 255, target="pixel_values"
        ),
        Proposal(
            "ImageNet mean/std normalization where the spec scales to [-1, 1]",
            pixels=lambda x: (unit(x) - mean) / std,
            target="pixel_values",
        ),
        Proposal("pixels in [-1, 1] scaled by 1/127.5 twice", pixels=lambda x: x / 127.5, target="pixel_values"),
    ]


# ============================================================================ padding


@hypothesis("padding.symmetric")
def padding_symmetric(group: list[Step], ctx: Context) -> list[Proposal]:
    out = []
    for s in _convs(group):
        a = s.attrs
        new = _padding(*_input_hw(s), a["kernel_size"], a["stride"], a["dilation"], tf_same=False)
        if a["kernel_size"] > 1 and tuple(a["padding"]) != new:
            out.append(
                Proposal(
                    f"{s.name}: symmetric padding {new} where the spec pads {tuple(a['padding'])} (TF SAME)",
                    {s.name: _with(s, attrs={**a, "padding": new})},
                )
            )
    return out


@hypothesis("padding.tf_same")
def padding_tf_same(group: list[Step], ctx: Context) -> list[Proposal]:
    out = []
    for s in _convs(group):
        a = s.attrs
        h, w = _input_hw(s)
        k, st, d = a["kernel_size"], a["stride"], a["dilation"]
        if st > 1 and d > 1:
            continue
        new = _padding(h, w, k, st, d, tf_same=True)
        if k > 1 and tuple(a["padding"]) != new:
            out.append(
                Proposal(
                    f"{s.name}: TF SAME padding {new} where the spec pads {tuple(a['padding'])} (symmetric)",
                    {s.name: _with(s, attrs={**a, "padding": new})},
                )
            )
    return out


# ============================================================================ batch norm


def _fitted_eps(step: Step, x: np.ndarray | None, target: np.ndarray | None) -> float | None:
    """The eps that makes the batch norm give `target` from `x`: per channel,
    (gamma * (x - mean) / (target - beta))^2 - var, median over the well-conditioned values."""
    if x is None or target is None:
        return None
    p = step.params
    num = p["gamma"] * (x - p["mean"])
    den = target - p["beta"]
    ok = np.abs(den) > 1e-3 * np.abs(den).max()
    if not ok.any():
        return None
    eps = (num[ok] / den[ok]) ** 2 - np.broadcast_to(p["var"], num.shape)[ok]
    value = float(np.median(eps))
    return value if value > 0 else None


@hypothesis("batch_norm.eps")
def batch_norm_eps(group: list[Step], ctx: Context) -> list[Proposal]:
    out = []
    for s in group:
        if s.kind != "batch_norm":
            continue
        current = s.attrs["eps"]
        candidates = {1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 0.0} - {current}
        x = ctx.inputs.get(s.name, [None])[0]
        fitted = _fitted_eps(s, x, ctx.target if ctx.target_step == s.name else None)
        if fitted:
            candidates.add(float(f"{fitted:.2g}"))
        for eps in sorted(candidates):
            out.append(
                Proposal(
                    f"{s.name}: batch norm eps {eps:g} where the spec has {current:g}",
                    {s.name: _with(s, attrs={**s.attrs, "eps": eps})},
                )
            )
    return out


# ============================================================================ activations


@hypothesis("activation.relu")
def activation_relu(group: list[Step], ctx: Context) -> list[Proposal]:
    return [
        Proposal(
            f"{s.name}: ReLU (no cap at 6) where the spec has ReLU6",
            {s.name: _with(s, op=relu, attrs={**s.attrs, "function": "relu"})},
        )
        for s in group
        if s.kind == "activation" and s.attrs.get("function") == "relu6"
    ]


@hypothesis("activation.missing")
def activation_missing(group: list[Step], ctx: Context) -> list[Proposal]:
    return [
        Proposal(f"{s.name}: no activation where the spec has {s.attrs.get('function')}", {s.name: lambda xs: xs[0]})
        for s in group
        if s.kind == "activation"
    ]


@hypothesis("activation.on_projection")
def activation_on_projection(group: list[Step], ctx: Context) -> list[Proposal]:
    """ReLU6 (or ReLU) on a block's linear projection: on the projection's own output, or, when the
    port shows only the block's output, on the projection before the skip connection adds it."""
    out = []
    for s in group:
        block = s.name.split(".reduce_1x1")[0] if ".reduce_1x1" in s.name else s.name
        projection = f"{block}.reduce_1x1.normalization"
        for function, name in ((relu6, "ReLU6"), (relu, "ReLU")):
            what = f"{name} after the linear bottleneck {block}.reduce_1x1, which the spec leaves linear"
            if s.name == projection:
                out.append(Proposal(f"{projection}: {what}", {s.name: ("then", function)}, target=projection))
            elif s.kind == "residual_add":
                change = lambda xs, f=function: xs[0] + f(xs[1])  # noqa: E731 -- the projection is the 2nd input
                out.append(Proposal(f"{projection}: {what}", {s.name: change}, target=projection))
            elif s.kind == "block_output":
                out.append(
                    Proposal(f"{projection}: {what}", {s.name: lambda xs, f=function: f(xs[0])}, target=projection)
                )
    return out


# ============================================================================ blocks


@hypothesis("residual.missing")
def residual_missing(group: list[Step], ctx: Context) -> list[Proposal]:
    return [
        Proposal(
            f"{s.name}: the block's output without its input added (no skip connection)", {s.name: lambda xs: xs[1]}
        )
        for s in group
        if s.kind == "residual_add"
    ]


@hypothesis("stride.misplaced")
def stride_misplaced(group: list[Step], ctx: Context) -> list[Proposal]:
    """The stride-2 depthwise conv of a block at stride 1, with the stride on the block's expansion
    (or projection) 1x1 conv instead."""
    out = []
    for s in _convs(group):
        a = s.attrs
        if a.get("conv_type") != "depthwise" or a["stride"] == 1:
            continue
        block = s.name.rsplit(".", 2)[0]
        h, w = _input_hw(s)
        k, d = a["kernel_size"], a["dilation"]
        same = a["tf_padding"]
        for other in group:
            if other.kind != "convolution" or not other.name.startswith(block + ".") or other is s:
                continue
            if other.attrs.get("conv_type") != "pointwise":
                continue
            where = "expansion" if "expand" in other.name else "projection"
            # the 1x1 conv strided (it keeps every other pixel), the depthwise conv at stride 1
            if where == "expansion":
                pad = _padding((h + 1) // 2, (w + 1) // 2, k, 1, d, tf_same=same)
            else:
                pad = _padding(h, w, k, 1, d, tf_same=same)
            changes = {s.name: _with(s, attrs={**a, "stride": 1, "padding": pad}), other.name: ("strided", 2)}
            out.append(
                Proposal(
                    f"{block}: stride 2 on the {where} 1x1 conv ({other.name}) instead of the "
                    f"depthwise conv ({s.name})",
                    changes,
                    target=s.name,
                )
            )
    return out


def _padding(h: int, w: int, k: int, stride: int, dilation: int, tf_same: bool) -> tuple[int, int, int, int]:
    """The padding a conv of this geometry gets (`ops.conv_padding`), as the plain tuple steps record."""
    return tuple(conv_padding(h, w, kernel_size=k, stride=stride, dilation=dilation, tf_padding=tf_same))


@hypothesis("dilation.wrong")
def dilation_wrong(group: list[Step], ctx: Context) -> list[Proposal]:
    out = []
    for s in _convs(group):
        a = s.attrs
        if a.get("conv_type") != "depthwise" or a["stride"] != 1:
            continue
        h, w = _input_hw(s)
        for d in (1, 2, 4):
            if d != a["dilation"]:
                pad = _padding(h, w, a["kernel_size"], 1, d, tf_same=a["tf_padding"])
                out.append(
                    Proposal(
                        f"{s.name}: dilation {d} where the spec has {a['dilation']}",
                        {s.name: _with(s, attrs={**a, "dilation": d, "padding": pad})},
                    )
                )
    return out


# ============================================================================ kernels


@hypothesis("kernel.transposed")
def kernel_transposed(group: list[Step], ctx: Context) -> list[Proposal]:
    return [
        Proposal(
            f"{s.name}: the kernel with kh and kw swapped",
            {s.name: _with(s, params={**s.params, "kernel": np.swapaxes(s.params["kernel"], 0, 1)})},
        )
        for s in _convs(group)
        if s.attrs["kernel_size"] > 1
    ]


@hypothesis("kernel.flipped")
def kernel_flipped(group: list[Step], ctx: Context) -> list[Proposal]:
    return [
        Proposal(
            f"{s.name}: a true convolution (the kernel rotated by 180 degrees) where the spec correlates",
            {s.name: _with(s, params={**s.params, "kernel": s.params["kernel"][::-1, ::-1]})},
        )
        for s in _convs(group)
        if s.attrs["kernel_size"] > 1
    ]


# ============================================================================ the DeepLab head


@hypothesis("upsample.align_corners")
def upsample_align_corners(group: list[Step], ctx: Context) -> list[Proposal]:
    return [
        Proposal(
            f"{s.name}: align_corners={not s.attrs.get('align_corners', True)} where the spec has "
            f"{s.attrs.get('align_corners', True)}",
            {s.name: _with(s, attrs={**s.attrs, "align_corners": not s.attrs.get("align_corners", True)})},
        )
        for s in group
        if s.kind == "resize"
    ]


__all__ = ["CATALOGUE", "Context", "Pad2D", "Proposal", "hypothesis"]

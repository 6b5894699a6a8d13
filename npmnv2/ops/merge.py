"""Where two tensors meet: the residual add and the channel concatenation of the DeepLabV3 head.

Forms: textbook forward (`add`, `concat_channels`); backward (`add_backward` copies the
gradient to both inputs, `concat_channels_backward` splits it); loop twins; the integer forms
(`add_int`: both inputs rescaled to a common scale, added, requantized; `concat_channels_int`) and
the loop twin of `add_int`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .pages import OpPage
from .quantization import (
    describe_integer_op,
    multiply_by_quantized_multiplier,
    multiply_by_quantized_multiplier_scalar,
    quantize_multiplier,
    round_half_away,
)

# ============================================================================ textbook forward


def add(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The residual connection: x + y, elementwise; both (N, H, W, C) of the same shape.

    >>> add(np.ones((1, 1, 1, 2)), np.full((1, 1, 1, 2), 2.0)).ravel()
    array([3., 3.])
    """
    if x.shape != y.shape:
        raise ValueError(f"add: a residual connection needs equal shapes, got {x.shape} and {y.shape}.")
    return x + y


def concat_channels(*tensors: np.ndarray) -> np.ndarray:
    """Stack NHWC tensors along the channel axis, in the order given.

    Shapes: (N, H, W, C_1), (N, H, W, C_2), ... -> (N, H, W, C_1 + C_2 + ...).

    >>> concat_channels(np.zeros((1, 2, 2, 3)), np.ones((1, 2, 2, 5))).shape
    (1, 2, 2, 8)
    """
    return np.concatenate(tensors, axis=-1)


# ============================================================================ backward


def add_backward(grad_out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The residual add passes its gradient unchanged to both inputs: (grad_out, grad_out)."""
    return grad_out, grad_out


def concat_channels_backward(grad_out: np.ndarray, sizes: list[int]) -> list[np.ndarray]:
    """The gradient of a channel concatenation is split back into the parts' channel counts."""
    return np.split(grad_out, np.cumsum(sizes)[:-1], axis=-1)


# ============================================================================ loop twins


def add_loops(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """x + y, number by number. The twin of `ops.add`."""
    out = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        out[index] = x[index] + y[index]
    return out


def concat_channels_loops(*tensors: np.ndarray) -> np.ndarray:
    """Copy each tensor's channels after the previous ones'. The twin of `ops.concat_channels`."""
    n, h, w, _ = tensors[0].shape
    out = np.zeros((n, h, w, sum(t.shape[-1] for t in tensors)), dtype=tensors[0].dtype)
    start = 0
    for t in tensors:
        for ch in range(t.shape[-1]):
            out[..., start + ch] = t[..., ch]
        start += t.shape[-1]
    return out


# ============================================================================ integer form


def add_int(
    a: np.ndarray,
    a_scale: float,
    a_zero_point: int,
    b: np.ndarray,
    b_scale: float,
    b_zero_point: int,
    out_scale: float,
    out_zero_point: int,
    act_range: tuple[int, int],
) -> np.ndarray:
    """A quantized ADD: both inputs brought to a common scale, added, requantized (TFLite's reference Add).

    Math: with left_shift = 20 and s = 2 * max(s_a, s_b):
        a' = MBQM((a - a_zero_point) * 2^20, s_a / s),   b' = MBQM((b - b_zero_point) * 2^20, s_b / s)
        out = clamp(out_zero_point + MBQM(a' + b', s / (2^20 * s_out)))
    where MBQM is `multiply_by_quantized_multiplier` (multipliers below 1, so it only shifts right).
    Shapes: a, b (N, H, W, C) -> (N, H, W, C) int64.
    """
    left_shift = 20
    twice_max = 2 * max(float(np.float32(a_scale)), float(np.float32(b_scale)))
    ma, sa = quantize_multiplier(float(np.float32(a_scale)) / twice_max)
    mb, sb = quantize_multiplier(float(np.float32(b_scale)) / twice_max)
    mo, so = quantize_multiplier(twice_max / ((1 << left_shift) * float(np.float32(out_scale))))
    scaled_a = multiply_by_quantized_multiplier((a.astype(np.int64) - a_zero_point) << left_shift, ma, sa)
    scaled_b = multiply_by_quantized_multiplier((b.astype(np.int64) - b_zero_point) << left_shift, mb, sb)
    return np.clip(multiply_by_quantized_multiplier(scaled_a + scaled_b, mo, so) + out_zero_point, *act_range)


def concat_channels_int(
    inputs: list[np.ndarray],
    scales: list[float],
    zero_points: list[int],
    out_scale: float,
    out_zero_point: int,
    out_range: tuple[int, int],
) -> np.ndarray:
    """CONCATENATION on the channel axis, requantizing each input to the output's scale in float32
    arithmetic, as TFLite's reference ConcatenationWithScaling does:
        q_out = round(q * (s_in / s_out) - zp_in * (s_in / s_out)) + zp_out     (an input already at the output's
    scale and zero point is copied as it is). Shapes: (N, H, W, C_k) -> (N, H, W, sum C_k) int64."""
    parts = []
    inverse = np.float32(1.0) / np.float32(out_scale)
    for x, scale, zp in zip(inputs, scales, zero_points, strict=True):
        if zp == out_zero_point and np.float32(scale) == np.float32(out_scale):
            parts.append(x.astype(np.int64))
            continue
        factor = np.float32(scale) * inverse
        bias = np.float32(-zp) * factor
        value = x.astype(np.float32) * factor + bias  # float32, as in C
        parts.append(np.clip(round_half_away(value) + out_zero_point, *out_range).astype(np.int64))
    return np.concatenate(parts, axis=-1)


# ============================================================================ integer loop twins


def add_int_loops(a, a_scale, a_zero_point, b, b_scale, b_zero_point, out_scale, out_zero_point, act_range):
    """TFLite's reference quantized Add, element by element."""

    twice_max = 2 * max(float(np.float32(a_scale)), float(np.float32(b_scale)))
    ma, sa = quantize_multiplier(float(np.float32(a_scale)) / twice_max)
    mb, sb = quantize_multiplier(float(np.float32(b_scale)) / twice_max)
    mo, so = quantize_multiplier(twice_max / ((1 << 20) * float(np.float32(out_scale))))
    out = np.zeros(a.shape, np.int64)
    for index in np.ndindex(a.shape):
        sa_val = multiply_by_quantized_multiplier_scalar((int(a[index]) - a_zero_point) * (1 << 20), ma, sa)
        sb_val = multiply_by_quantized_multiplier_scalar((int(b[index]) - b_zero_point) * (1 << 20), mb, sb)
        raw = multiply_by_quantized_multiplier_scalar(sa_val + sb_val, mo, so) + out_zero_point
        out[index] = min(max(raw, act_range[0]), act_range[1])
    return out


# ============================================================================ the pages: describe, differentiate


def describe_add(step: Any) -> str:
    return f"residual connection: block input + projection output, {step.output_shape}."


def describe_concat(step: Any) -> str:
    parts = " + ".join(str(s[1]) for s in step.input_shapes)
    return f"concatenate on channels: {parts} -> {step.output_shape[1]}."


PAGES = (
    OpPage(
        add,
        describe_add,
        lambda step, inputs, g: (list(add_backward(g)), {}),
        add_backward,
        forward_step=lambda step, inputs: step.op(inputs[0], inputs[1]),
        loops=add_loops,
    ),
    OpPage(
        concat_channels,
        describe_concat,
        lambda step, inputs, g: (concat_channels_backward(g, [x.shape[-1] for x in inputs]), {}),
        concat_channels_backward,
        forward_step=lambda step, inputs: step.op(*inputs),
        loops=concat_channels_loops,
    ),
)

INTEGER_PAGES = (
    OpPage(add_int, describe_integer_op("both inputs rescaled to a common scale, added in int32")),
    OpPage(concat_channels_int, describe_integer_op("each input requantized to the output's scale, then concatenated")),
)

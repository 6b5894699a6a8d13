"""Where two tensors meet: the residual add and the channel concatenation of the DeepLabV3 head.

Forms: textbook forward (`add`, `concat_channels`); backward (`add_backward` copies the
gradient to both inputs, `concat_channels_backward` splits it); loop twins; the integer forms
(`add_int`: both inputs rescaled to a common scale, added, requantized; `add_int_xnnpack`, the
XNNPACK delegate's; `concat_channels_int`) and the loop twins of both adds.
"""

from __future__ import annotations

import math
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


def xnnpack_add_multipliers(a_scale: float, b_scale: float, out_scale: float) -> tuple[int, int, int]:
    """XNNPACK's (a_multiplier, b_multiplier, shift) for a quantized ADD: each input's scale over the
    output's, in float32, as an integer with about 20 significant bits under one common shift.

    Math: r_a = float32(s_a / s_out), r_b likewise; e = the binary exponent of max(r_a, r_b)
    (2^e <= max < 2^(e+1)); shift = 20 - e; multiplier = rint(r * 2^shift) (ties to even, lrintf).

    >>> xnnpack_add_multipliers(0.5, 0.25, 1.0)
    (1048576, 524288, 21)
    """
    r_a = np.float32(a_scale) / np.float32(out_scale)
    r_b = np.float32(b_scale) / np.float32(out_scale)
    exponent = math.frexp(float(max(r_a, r_b)))[1] - 1
    shift = 20 - exponent
    return int(np.rint(r_a * np.float32(2.0**shift))), int(np.rint(r_b * np.float32(2.0**shift))), shift


def add_int_xnnpack(
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
    """A quantized ADD as the XNNPACK delegate computes it (its qu8/qs8 vadd kernels): both inputs times
    their own ~20-bit multiplier, summed in int32, one arithmetic shift.

    Math: (M_a, M_b, shift) = `xnnpack_add_multipliers(s_a, s_b, s_out)`
          bias = 2^(shift - 1) - M_a * a_zero_point - M_b * b_zero_point
          out = clamp(out_zero_point + ((bias + M_a * a + M_b * b) >> shift))   (rounds half up)
    TFLite's kernels instead shift both inputs left by 20 and requantize three times with 31-bit
    multipliers (`add_int`). The two rarely part, but they do: 1 of 75,264 values of the Coral
    classifier's first residual add on the cat photo, where this rule matches XNNPACK on every element.
    Shapes: a, b (N, H, W, C) -> (N, H, W, C) int64.
    """
    m_a, m_b, shift = xnnpack_add_multipliers(a_scale, b_scale, out_scale)
    bias = (1 << (shift - 1)) - m_a * int(a_zero_point) - m_b * int(b_zero_point)
    total = bias + np.asarray(a, np.int64) * m_a + np.asarray(b, np.int64) * m_b
    return np.clip((total >> shift) + out_zero_point, *act_range)


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


def add_int_xnnpack_loops(a, a_scale, a_zero_point, b, b_scale, b_zero_point, out_scale, out_zero_point, act_range):
    """XNNPACK's quantized add, element by element in Python ints."""
    m_a, m_b, shift = xnnpack_add_multipliers(a_scale, b_scale, out_scale)
    bias = (1 << (shift - 1)) - m_a * a_zero_point - m_b * b_zero_point
    out = np.zeros(a.shape, np.int64)
    for index in np.ndindex(a.shape):
        value = ((bias + int(a[index]) * m_a + int(b[index]) * m_b) >> shift) + out_zero_point
        out[index] = min(max(value, act_range[0]), act_range[1])
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
    OpPage(add_int_xnnpack, describe_integer_op("XNNPACK's add: each input times a 20-bit multiplier, one shift")),
    OpPage(concat_channels_int, describe_integer_op("each input requantized to the output's scale, then concatenated")),
)

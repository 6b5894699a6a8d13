"""The integer arithmetic every quantized op shares: quantize, dequantize, fixed-point multipliers.

A quantized tensor stores integers q that stand for real numbers
    real = scale * (q - zero_point)                 (uint8 or int8; int32 biases with zero point 0)
(Jacob et al. 2018, arXiv 1712.05877; the TFLite quantization spec for the per-channel case). A
layer adds up integer products in int32 and brings the sum back to the output's scale with a
fixed-point multiplier M0 * 2^shift, M0 a 31-bit integer:
    out = clamp(zero_point_out + round(M * (sum + bias)),  act_min, act_max),   M = s_in * s_w / s_out
Every function reproduces TFLite's reference kernels bit for bit, rounding included. Forms: the
vectorised functions and their one-Python-int-at-a-time loop twins (`*_scalar`, `requantize_loops`).
Each op's integer form is in its own op module (`conv.conv2d_int`, `depthwise.depthwise_conv2d_int`, ...).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from .pages import OpPage

# A rounding rule for x * M0 * 2^(shift - 31): (x, M0, shift) -> integers (which kernel set rounds how).
Multiplier = Callable[[np.ndarray, Any, Any], np.ndarray]

# ============================================================================ integer form

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


DTYPE_RANGE = {np.dtype(np.uint8): (0, 255), np.dtype(np.int8): (-128, 127), np.dtype(np.int32): (INT32_MIN, INT32_MAX)}


class QuantParams(NamedTuple):
    """A tensor's quantization: real = scale * (q - zero_point), per tensor (one scale) or per
    channel along `axis` (one scale and zero point per channel)."""

    scale: np.ndarray  # (1,) or (C,) float
    zero_point: np.ndarray  # (1,) or (C,) int
    axis: int = 0

    @property
    def per_channel(self) -> bool:
        return self.scale.size > 1

    @property
    def tensor_scale(self) -> float:
        """The scale of a per-tensor quantization (the first channel's for a per-channel one)."""
        return float(self.scale[0])

    @property
    def tensor_zero_point(self) -> int:
        return int(self.zero_point[0])

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        """The real numbers integers q stand for (float64), per channel along `axis` if so."""
        return dequantize(q, self.scale, self.zero_point, self.axis)


def round_half_away(x: Any) -> Any:
    """std::round / TfLiteRound: to the nearest integer, halves away from zero (NumPy's round goes to
    even), in x's own dtype (a float32 array stays float32, as TFLite computes it).

    >>> round_half_away(np.array([0.5, 1.5, -0.5, -2.5, 2.4]))
    array([ 1.,  2., -1., -3.,  2.])
    """
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def quantize(real: np.ndarray, scale: float, zero_point: int, dtype: np.dtype) -> np.ndarray:
    """q = clamp(round(real / scale) + zero_point) in `dtype`'s range (round half away from zero).

    >>> quantize(np.array([-1.0, 0.0, 0.5, 1.0]), 1 / 128, 128, np.uint8)
    array([  0, 128, 192, 255], dtype=uint8)
    """
    low, high = DTYPE_RANGE[np.dtype(dtype)]
    q = round_half_away(real / scale) + zero_point
    return np.clip(q, low, high).astype(dtype)


def quantize_float32(x: np.ndarray, scale: float, zero_point: int, out_range: tuple[int, int]) -> np.ndarray:
    """TFLite's QUANTIZE of a float32 tensor (reference AffineQuantize), in float32 as it computes:
    q = clamp(round(x / float32(scale)) + zero_point), rounding half away from zero.
    Shapes: any -> the same, int64.

    >>> quantize_float32(np.array([-1.0, 0.0, 0.25, 1.0], np.float32), 1 / 127.5, -1, (-128, 127))
    array([-128,   -1,   31,  126])
    """
    q = round_half_away(np.asarray(x, np.float32) / np.float32(scale))
    return np.clip(q.astype(np.int64) + int(zero_point), *out_range)


def dequantize_float32(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """TFLite's DEQUANTIZE of an integer tensor (reference Dequantize): float32(scale * (q - zero_point)),
    the product in double. Shapes: any -> the same, float32."""
    return (float(scale) * (np.asarray(q, np.int64) - int(zero_point))).astype(np.float32)


def dequantize(
    q: np.ndarray, scale: float | np.ndarray, zero_point: int | np.ndarray, axis: int | None = None
) -> np.ndarray:
    """real = scale * (q - zero_point), in float64: per tensor (a number, or an array of one), or per
    channel along `axis` (scale and zero_point of length q.shape[axis]; without axis they broadcast
    as NumPy does, i.e. on the last axis).

    >>> dequantize(np.array([128, 130], np.uint8), 0.5, 128)
    array([0., 1.])
    >>> dequantize(np.array([[2, 2], [4, 4]]), np.array([1.0, 0.5]), np.array([0, 2]), axis=0)
    array([[2., 2.],
           [1., 1.]])
    """
    scale, zero_point = np.asarray(scale, np.float64), np.asarray(zero_point, np.int64)
    if axis is not None and scale.size > 1:  # per channel: one scale per index of `axis`
        shape = [1] * q.ndim
        shape[axis] = scale.size
        scale, zero_point = scale.reshape(shape), zero_point.reshape(shape)
    return scale * (q.astype(np.int64) - zero_point)


def quantize_multiplier(real: float) -> tuple[int, int]:
    """A real multiplier as (M0, shift) with real ~= M0 * 2^(shift - 31), M0 in [2^30, 2^31): TFLite's
    `QuantizeMultiplier`.

    Math: real = frac * 2^shift with frac in [0.5, 1) (frexp); M0 = round(frac * 2^31), half away
    from zero; a frac that rounds up to 2^31 becomes 2^30 with shift + 1. Below 2^-31 it is 0.

    >>> quantize_multiplier(0.5)
    (1073741824, 0)
    >>> quantize_multiplier(0.0072474)
    (1992150143, -7)
    """
    if real == 0.0:
        return 0, 0
    frac, shift = math.frexp(real)
    m0 = math.floor(abs(frac) * 2**31 + 0.5) * (1 if frac > 0 else -1)
    if m0 == 2**31:
        m0, shift = m0 // 2, shift + 1
    if shift < -31:
        return 0, 0
    return m0, shift


def saturating_rounding_doubling_high_mul(a: np.ndarray, b: np.ndarray | int) -> np.ndarray:
    """gemmlowp's SaturatingRoundingDoublingHighMul: round(a * b / 2^31), the high half of 2ab.

    Math (gemmlowp): ab = a * b; nudge = 2^30 if ab >= 0 else 1 - 2^30; result = trunc((ab + nudge) / 2^31),
    trunc rounding toward zero as C's division does; the one overflow, a = b = -2^31, gives 2^31 - 1.
    For ab < 0, trunc(t / 2^31) = floor((t + 2^31 - 1) / 2^31) with t = ab + 1 - 2^30, which is
    (ab + 2^30) >> 31: the same expression as for ab >= 0, so one shift serves both signs.
    Shapes: a any (int32 values in an int64 array), b broadcastable.

    >>> saturating_rounding_doubling_high_mul(np.array([100, -100, 3, -3]), 2**30)  # 1.5 -> 2, -1.5 -> -1
    array([ 50, -50,   2,  -1])
    """
    a = np.asarray(a, np.int64)
    b = np.asarray(b, np.int64)
    high = (a * b + (1 << 30)) >> 31
    if b.size and int(b.min()) == INT32_MIN:  # the only case that saturates
        high = np.where((a == INT32_MIN) & (b == INT32_MIN), INT32_MAX, high)
    return high


def rounding_divide_by_pot(x: np.ndarray, exponent: int | np.ndarray) -> np.ndarray:
    """gemmlowp's RoundingDivideByPOT: x / 2^exponent rounded to nearest, ties away from zero.

    Math (gemmlowp): remainder = x & (2^e - 1); threshold = (2^e - 1) >> 1, plus 1 when x < 0;
    result = (x >> e) + (remainder > threshold). The same number is
        (x + 2^(e-1) - [x < 0]) >> e         (e >= 1; e = 0 leaves x as it is)
    which is what is computed.

    >>> rounding_divide_by_pot(np.array([5, -5, 6, -6, 2, -2]), 2)
    array([ 1, -1,  2, -2,  1, -1])
    """
    x = np.asarray(x, np.int64)
    exponent = np.asarray(exponent, np.int64)
    if exponent.ndim == 0 and int(exponent) == 0:
        return x
    half = np.where(exponent > 0, np.int64(1) << np.maximum(exponent - 1, 0), 0)
    return (x + (half - (x < 0) * (exponent > 0))) >> exponent


def multiply_by_quantized_multiplier(x: np.ndarray, m0: int | np.ndarray, shift: int | np.ndarray) -> np.ndarray:
    """x * M0 * 2^(shift - 31), rounded as TFLite's reference kernels do: twice (gemmlowp).

    Math: left = max(shift, 0), right = max(-shift, 0);
          result = RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(x * 2^left, M0), right).
    The pinned ai-edge-litert build rounds twice like this (first the doubling high multiply,
    then the rounding shift) in CONV_2D, DEPTHWISE_CONV_2D, ADD, MEAN and QUANTIZE, and once in
    FULLY_CONNECTED (`multiply_by_quantized_multiplier_single_rounding`); `tests/test_integer_model.py`
    proves both against the interpreter on every element.
    Shapes: x any; m0, shift scalars or per-channel arrays broadcasting on the last axis.

    >>> multiply_by_quantized_multiplier(np.array([1000, -1000]), *quantize_multiplier(0.25))
    array([ 250, -250])
    """
    shift = np.asarray(shift, np.int64)
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(np.asarray(x, np.int64) << left, m0), right)


def rounding_divide_by_pot_ties_up(x: np.ndarray, exponent: int | np.ndarray) -> np.ndarray:
    """x / 2^exponent rounded to nearest, ties toward +infinity: (x + 2^(e-1)) >> e.

    The rounding right shift of the interpreter's optimized kernels (the ones it runs by default,
    without a delegate) where the reference kernels use gemmlowp's ties-away-from-zero
    (`rounding_divide_by_pot`); the two differ only on a negative tie (-6 / 4 = -1.5: -1 here, -2
    there).

    >>> rounding_divide_by_pot_ties_up(np.array([5, -5, 6, -6, 2, -2]), 2)
    array([ 1, -1,  2, -1,  1,  0])
    """
    x = np.asarray(x, np.int64)
    exponent = np.asarray(exponent, np.int64)
    half = np.where(exponent > 0, np.int64(1) << np.maximum(exponent - 1, 0), 0)
    return (x + half) >> exponent


def multiply_by_quantized_multiplier_ties_up(
    x: np.ndarray, m0: int | np.ndarray, shift: int | np.ndarray
) -> np.ndarray:
    """x * M0 * 2^(shift - 31) as the interpreter's optimized CONV_2D, FULLY_CONNECTED and int8 MEAN
    compute it: gemmlowp's doubling high multiply (ties away), then a rounding shift with ties up.

    Math: RoundingDivideByPOT_up(SaturatingRoundingDoublingHighMul(x * 2^left, M0), right).
    Measured, not assumed: on every CONV_2D, FULLY_CONNECTED and MEAN of the five shipped models
    (three Coral uint8, the TF2 int8 per-channel export, the iNat classifier), run on the optimized
    kernels' own inputs (`OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES`), this matched every
    element, where the reference rule missed up to 1,992 of a projection's outputs (a negative tie:
    a projection has no ReLU6 to clamp negative values away).

    >>> multiply_by_quantized_multiplier_ties_up(np.array([-6]), 2**30, -1)  # -6 * 0.5 * 0.5 = -1.5
    array([-1])
    >>> multiply_by_quantized_multiplier(np.array([-6]), 2**30, -1)
    array([-2])
    """
    shift = np.asarray(shift, np.int64)
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    return rounding_divide_by_pot_ties_up(
        saturating_rounding_doubling_high_mul(np.asarray(x, np.int64) << left, m0), right
    )


def multiply_by_quantized_multiplier_single_rounding(x: np.ndarray, m0: int, shift: int) -> np.ndarray:
    """x * M0 * 2^(shift - 31) rounded once, half up: (x * M0 + 2^(30 - shift)) >> (31 - shift).

    The pinned ai-edge-litert's reference FULLY_CONNECTED (uint8) rounds this way, while its
    CONV_2D, DEPTHWISE_CONV_2D, ADD, MEAN and QUANTIZE round twice (`multiply_by_quantized_multiplier`):
    measured on the iNat model's classifier, single rounding matched all 10,220 outputs of 10 images
    and double rounding missed 6 (an accumulator of 32399 with M0 = 1255647169, shift = -10 is
    18.4999 in real units: double rounding gives 19, single rounding 18, the interpreter 18).

    >>> multiply_by_quantized_multiplier_single_rounding(np.array([32399]), 1255647169, -10)
    array([18])
    >>> multiply_by_quantized_multiplier(np.array([32399]), 1255647169, -10)
    array([19])
    """
    total_shift = 31 - shift
    return (np.asarray(x, np.int64) * m0 + (np.int64(1) << (total_shift - 1))) >> total_shift


def multiply_by_float32_scale(x: np.ndarray, scale: Any, shift: Any = 0) -> np.ndarray:
    """x * scale as the XNNPACK delegate requantizes (its "fp32" requantization): in float32, rounded
    to the nearest integer, ties to even (`lrintf`, or the magic-bias addition its SIMD kernels use).

    Math: out = rint(float32(x) * float32(scale)). The multiplier is one float32 number (per output
    channel if the weights are), `xnnpack_scale`, not TFLite's (M0, shift): `shift` is there so that the
    rule has the signature of the others (`Multiplier`) and must be 0. float32(x) itself rounds sums
    beyond 2^24, as XNNPACK's int32-to-float conversion does.
    Measured: every CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED output of the five shipped models
    equals XNNPACK's (`OpResolverType.BUILTIN`, x86-64), where TFLite's fixed-point rules miss up to
    4,455 of a depthwise layer's 47,040.
    Shapes: x any; scale a number or per-channel (last axis) float32 array.

    >>> multiply_by_float32_scale(np.array([5, 7, -5, 9]), np.float32(0.5))  # 2.5 -> 2, 3.5 -> 4, 4.5 -> 4
    array([ 2,  4, -2,  4])
    """
    if np.any(np.asarray(shift) != 0):
        raise ValueError("multiply_by_float32_scale: XNNPACK's multiplier is one float32 scale; shift must be 0.")
    return np.rint(np.asarray(x).astype(np.float32) * np.asarray(scale, np.float32)).astype(np.int64)


def xnnpack_scale(x_scale: float, weight_scale: Any, out_scale: float) -> np.ndarray:
    """The float32 multiplier XNNPACK requantizes a conv or FC layer with: the three scales as float32,
    multiplied and divided in float32, (s_x * s_w) / s_out (per channel when s_w is an array).
    TFLite's own kernels compute it in double and make it (M0, shift) instead (`quantize_multiplier`).

    >>> float(xnnpack_scale(0.0078125, 0.0235, 0.0235))
    0.0078125
    """
    product = np.float32(x_scale) * np.asarray(weight_scale, np.float32)
    return (product / np.float32(out_scale)).astype(np.float32)


def requantize_xnnpack(
    x: np.ndarray, x_scale: float, x_zero_point: int, out_scale: float, out_zero_point: int, out_range: tuple[int, int]
) -> np.ndarray:
    """QUANTIZE between two 8-bit scales as XNNPACK converts (its qu8/qs8 "vcvt" kernels): an 8-bit
    fixed-point multiplier and one rounding shift.

    Math: M = rint(256 * float32(s_in / s_out)), float32;  bias = 256 * zp_out - M * zp_in + 128;
          out = clamp((bias + M * x) >> 8)       (arithmetic shift: rounds half up)
    TFLite's kernels use a 31-bit multiplier instead (`requantize`), so the two part wherever s_in / s_out
    is not a multiple of 1/256: on DeepLab's final requantization (s_in / s_out = 0.3528) they differ in
    38,115 of 278,784 values, and this rule matches XNNPACK on every one.
    Shapes: any -> the same, int64.

    >>> requantize_xnnpack(np.array([0, 1, 2, 3]), 0.5, 0, 1.0, 0, (0, 255))  # 0.5 -> 1, 1.5 -> 2 (half up)
    array([0, 1, 1, 2])
    """
    multiplier = int(np.rint(np.float32(256) * (np.float32(x_scale) / np.float32(out_scale))))
    bias = (int(out_zero_point) << 8) - multiplier * int(x_zero_point) + (1 << 7)
    return np.clip((bias + np.asarray(x, np.int64) * multiplier) >> 8, *out_range)


def activation_range(activation: str | None, scale: float, zero_point: int, dtype: np.dtype) -> tuple[int, int]:
    """(act_min, act_max): the integer range a fused activation leaves (TFLite's
    CalculateActivationRangeQuantized; its quantization of 0 and 6 is done in float32).

    >>> activation_range("relu6", 0.0235294122248888, 0, np.uint8)
    (0, 255)
    """
    low, high = DTYPE_RANGE[np.dtype(dtype)]
    scale32 = np.float32(scale)

    def q(value: float) -> int:
        return int(zero_point + _round_half_away(np.float32(value) / scale32))

    if activation == "relu":
        return max(low, q(0.0)), high
    if activation == "relu6":
        return max(low, q(0.0)), min(high, q(6.0))
    if activation == "relu_n1_to_1":
        return max(low, q(-1.0)), min(high, q(1.0))
    return low, high


def _round_half_away(x: float) -> int:
    return math.floor(abs(x) + 0.5) * (1 if x >= 0 else -1)


def requantize_output(
    acc: np.ndarray, m0, shift, zero_point: int, act_range: tuple[int, int], *, multiply: Multiplier | None = None
) -> np.ndarray:
    """The end of every integer layer: clamp(zero_point + multiply(acc, M0, shift), range), where
    `multiply` is the kernel set's rounding rule (`multiply_by_quantized_multiplier`, the reference
    kernels', by default)."""
    out = (multiply or multiply_by_quantized_multiplier)(acc, m0, shift) + zero_point
    return np.clip(out, *act_range)


def requantize(
    x: np.ndarray, x_zero_point: int, m0: int, shift: int, out_zero_point: int, out_range: tuple[int, int]
) -> np.ndarray:
    """TFLite's QUANTIZE between integer types: clamp(out_zero_point + MBQM(x - x_zero_point, s_in / s_out))."""
    return np.clip(
        multiply_by_quantized_multiplier(x.astype(np.int64) - x_zero_point, m0, shift) + out_zero_point, *out_range
    )


def exact_int_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """An integer matrix product through float64 BLAS, exact.

    Why it is exact: every product and every partial sum is an integer of magnitude at most
    sum_k |a_ik| |b_kj| <= P * max|a| * max|b|; for MobileNetV2's layers (|a| <= 255 after the
    offset, |b| <= 255, P <= 1280 * 1) that is below 1280 * 255 * 255 < 2^27, far below 2^53,
    under which float64 represents every integer exactly, in any summation order. The function
    checks the bound and refuses when it could be exceeded.
    """
    bound = a.shape[-1] * float(np.abs(a).max(initial=0)) * float(np.abs(b).max(initial=0))
    if bound >= 2**53:
        raise ValueError(f"integer matmul: sums up to {bound:.3g} could exceed 2^53; float64 would round them.")
    return np.rint(a.astype(np.float64) @ b.astype(np.float64)).astype(np.int64)


# ============================================================================ integer loop twins


def c_div(a: int, b: int) -> int:
    """C's integer division: toward zero."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def srdhm_scalar(a: int, b: int) -> int:
    """gemmlowp's SaturatingRoundingDoublingHighMul, as written there (with its branch on the sign)."""
    if a == b == -(2**31):
        return 2**31 - 1
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    return c_div(ab + nudge, 1 << 31)


def rounding_divide_by_pot_scalar(x: int, exponent: int) -> int:
    """gemmlowp's RoundingDivideByPOT, as written there (mask, remainder, threshold)."""
    mask = (1 << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> exponent) + (1 if remainder > threshold else 0)


def multiply_by_quantized_multiplier_scalar(x: int, m0: int, shift: int) -> int:
    """TFLite's MultiplyByQuantizedMultiplier (double rounding)."""
    left, right = max(shift, 0), max(-shift, 0)
    return rounding_divide_by_pot_scalar(srdhm_scalar(x * (1 << left), m0), right)


def requantize_loops(x, x_zero_point, m0, shift, out_zero_point, out_range):
    """TFLite's Requantize, element by element."""
    out = np.zeros(x.shape, np.int64)
    for index in np.ndindex(x.shape):
        value = multiply_by_quantized_multiplier_scalar(int(x[index]) - x_zero_point, m0, shift) + out_zero_point
        out[index] = min(max(value, out_range[0]), out_range[1])
    return out


# ============================================================================ describing an integer step


def describe_requantization(step: Any) -> str:
    """How an integer step's output is brought to its own scale: the sentence that ends its explanation."""
    a = step.attrs
    if "scale" not in a or np.ndim(a["scale"]) != 0:
        return ""
    low, high = a.get("range", (None, None))
    return (
        f" Output requantized to scale {a['scale']:.6g}, zero point {a['zero_point']}, clamped to [{low}, {high}]"
        f" (the fused activation's range); {a.get('at_min', 0):,} values at the bottom, {a.get('at_max', 0):,} at"
        " the top."
    )


def describe_integer_op(what: str) -> Callable[[Any], str]:
    """The description of an integer op that has no float twin's words (add, pool, resize, ...)."""

    def describe(step: Any) -> str:
        twin = step.attrs.get("float_step")
        equals = f"; its output stands for the float step {twin}" if twin else ""
        return f"TFLite {step.attrs.get('tflite_op', '')}: {what}{equals}.{describe_requantization(step)}"

    return describe


INTEGER_PAGES = (OpPage(requantize, describe_integer_op("integers moved from one scale and zero point to another")),)

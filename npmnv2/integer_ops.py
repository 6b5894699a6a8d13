"""The integer arithmetic of a quantized TFLite MobileNetV2, one small NumPy function per op.

A quantized tensor stores integers q that stand for real numbers
    real = scale * (q - zero_point)                 (uint8 or int8; int32 biases with zero point 0)
(Jacob et al. 2018, "Quantization and Training of Neural Networks for Efficient
Integer-Arithmetic-Only Inference", arXiv 1712.05877; the TFLite quantization spec for the
per-channel case). A layer multiplies integers, adds them up in int32, and brings the sum back to
the output's scale with a fixed-point multiplier M0 * 2^shift, M0 a 31-bit integer:
    out = clamp(zero_point_out + round(M * (sum + bias)),  act_min, act_max),   M = s_in * s_w / s_out

Every function reproduces TFLite's *reference* kernels (`OpResolverType.BUILTIN_REF`) bit for bit,
rounding included; `tests/test_integer_ops.py` checks each against the interpreter, and the loop
twins in `npmnv2.reference` check the vectorised forms.

Layout: activations NHWC, as TFLite stores them; TFLite's kernels: conv OHWI, depthwise
(1, KH, KW, C), fully connected (L, C). Integers are carried in int64 arrays between steps.
"""

from __future__ import annotations

import math

import numpy as np

from .ops import Pad2D, kernel_tap

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
DTYPE_RANGE = {np.dtype(np.uint8): (0, 255), np.dtype(np.int8): (-128, 127), np.dtype(np.int32): (INT32_MIN, INT32_MAX)}

# ============================================================================ quantize, dequantize, multipliers


def quantize(real: np.ndarray, scale: float, zero_point: int, dtype: np.dtype) -> np.ndarray:
    """q = clamp(round(real / scale) + zero_point) in `dtype`'s range (round half away from zero).

    >>> quantize(np.array([-1.0, 0.0, 0.5, 1.0]), 1 / 128, 128, np.uint8)
    array([  0, 128, 192, 255], dtype=uint8)
    """
    low, high = DTYPE_RANGE[np.dtype(dtype)]
    q = np.sign(real / scale) * np.floor(np.abs(real / scale) + 0.5) + zero_point
    return np.clip(q, low, high).astype(dtype)


def dequantize(q: np.ndarray, scale: float | np.ndarray, zero_point: int | np.ndarray) -> np.ndarray:
    """real = scale * (q - zero_point), in float64 (per channel when scale is an array on the last axis).

    >>> dequantize(np.array([128, 130], np.uint8), 0.5, 128)
    array([0., 1.])
    """
    return np.asarray(scale, np.float64) * (q.astype(np.int64) - np.asarray(zero_point, np.int64))


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


def requantize_output(acc: np.ndarray, m0, shift, zero_point: int, act_range: tuple[int, int]) -> np.ndarray:
    """The end of every integer layer: clamp(zero_point + multiply_by_quantized_multiplier(acc), range)."""
    out = multiply_by_quantized_multiplier(acc, m0, shift) + zero_point
    return np.clip(out, *act_range)


# ============================================================================ convolutions


def _exact_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
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


def conv2d_int(
    x: np.ndarray, x_zero_point: int, kernel: np.ndarray, kernel_zero_point: int | np.ndarray, bias: np.ndarray | None,
    *, stride: int, dilation: int, padding: Pad2D,
) -> np.ndarray:  # fmt: skip
    """The int32 accumulator of a quantized convolution (before requantization).

    Math: acc[n, y, x, o] = bias[o] + sum_{i, j, c} (x_pad[n, y*s + i*d, x*s + j*d, c] - x_zp)
                                                    * (kernel[o, i, j, c] - k_zp[o])
    The padding stands for real zeros, i.e. the value x_zp: padded pixels add nothing.
    Shapes: x (N, H, W, C_in) ints, kernel (C_out, KH, KW, C_in) (TFLite's OHWI), bias (C_out,)
            -> (N, Ho, Wo, C_out) int64.
    """
    n = x.shape[0]
    c_out, kh, kw, c_in = kernel.shape
    centred = np.pad(x.astype(np.int64) - x_zero_point, ((0, 0), padding[:2], padding[2:], (0, 0)))  # 0 = x_zp
    hp, wp = centred.shape[1:3]
    ho, wo = (hp - dilation * (kh - 1) - 1) // stride + 1, (wp - dilation * (kw - 1) - 1) // stride + 1
    taps = [
        kernel_tap(centred, i, j, out_size=(ho, wo), stride=stride, dilation=dilation)
        for i in range(kh)
        for j in range(kw)
    ]
    cols = np.stack(taps, axis=3).reshape(n * ho * wo, kh * kw * c_in)  # (N*Ho*Wo, P) im2col
    weights = (
        (kernel.astype(np.int64) - np.reshape(kernel_zero_point, (-1, 1, 1, 1))).reshape(c_out, -1).T
    )  # (P, C_out)
    acc = _exact_matmul(cols, weights)  # (N*Ho*Wo, P) @ (P, C_out)
    if bias is not None:
        acc += bias.astype(np.int64)
    return acc.reshape(n, ho, wo, c_out)


def depthwise_conv2d_int(
    x: np.ndarray, x_zero_point: int, kernel: np.ndarray, kernel_zero_point: int | np.ndarray, bias: np.ndarray | None,
    *, stride: int, dilation: int, padding: Pad2D,
) -> np.ndarray:  # fmt: skip
    """The int32 accumulator of a quantized depthwise convolution (depth multiplier 1).

    Math: acc[n, y, x, c] = bias[c] + sum_{i, j} (x_pad[n, y*s + i*d, x*s + j*d, c] - x_zp)
                                                * (kernel[0, i, j, c] - k_zp[c])
    Shapes: x (N, H, W, C), kernel (1, KH, KW, C) (TFLite's layout), bias (C,) -> (N, Ho, Wo, C) int64.
    """
    _, kh, kw, c = kernel.shape
    # In float64, which holds these integers exactly (|x - x_zp|, |w - w_zp| <= 255: every partial
    # sum is below 9 * 255^2 < 2^20) and which NumPy multiplies faster than int64.
    centred = np.pad(x.astype(np.float64) - x_zero_point, ((0, 0), padding[:2], padding[2:], (0, 0)))
    hp, wp = centred.shape[1:3]
    ho, wo = (hp - dilation * (kh - 1) - 1) // stride + 1, (wp - dilation * (kw - 1) - 1) // stride + 1
    weights = kernel[0].astype(np.float64) - np.asarray(kernel_zero_point, np.float64)  # (KH, KW, C)
    acc = np.zeros((x.shape[0], ho, wo, c), np.float64)
    for i in range(kh):
        for j in range(kw):
            acc += kernel_tap(centred, i, j, out_size=(ho, wo), stride=stride, dilation=dilation) * weights[i, j]
    if bias is not None:
        acc += bias.astype(np.float64)
    return acc.astype(np.int64)


def fully_connected_int(
    x: np.ndarray, x_zero_point: int, weights: np.ndarray, weights_zero_point: int, bias: np.ndarray | None
) -> np.ndarray:
    """acc[n, o] = bias[o] + sum_c (x[n, c] - x_zp) * (weights[o, c] - w_zp).

    Shapes: x (N, C) ints, weights (L, C) (TFLite's layout), bias (L,) -> (N, L) int64.
    """
    acc = _exact_matmul(x.astype(np.int64) - x_zero_point, (weights.astype(np.int64) - weights_zero_point).T)
    return acc if bias is None else acc + bias.astype(np.int64)


# ============================================================================ add, pooling, mean


def add_int(
    a: np.ndarray, a_scale: float, a_zp: int, b: np.ndarray, b_scale: float, b_zp: int,
    out_scale: float, out_zp: int, act_range: tuple[int, int],
) -> np.ndarray:  # fmt: skip
    """A quantized ADD: both inputs brought to a common scale, added, requantized (TFLite's reference Add).

    Math: with left_shift = 20 and s = 2 * max(s_a, s_b):
        a' = MBQM((a - a_zp) * 2^20, s_a / s),   b' = MBQM((b - b_zp) * 2^20, s_b / s)
        out = clamp(out_zp + MBQM(a' + b', s / (2^20 * s_out)))
    where MBQM is `multiply_by_quantized_multiplier` (multipliers below 1, so it only shifts right).
    Shapes: a, b (N, H, W, C) -> (N, H, W, C) int64.
    """
    left_shift = 20
    twice_max = 2 * max(float(np.float32(a_scale)), float(np.float32(b_scale)))
    ma, sa = quantize_multiplier(float(np.float32(a_scale)) / twice_max)
    mb, sb = quantize_multiplier(float(np.float32(b_scale)) / twice_max)
    mo, so = quantize_multiplier(twice_max / ((1 << left_shift) * float(np.float32(out_scale))))
    scaled_a = multiply_by_quantized_multiplier((a.astype(np.int64) - a_zp) << left_shift, ma, sa)
    scaled_b = multiply_by_quantized_multiplier((b.astype(np.int64) - b_zp) << left_shift, mb, sb)
    return np.clip(multiply_by_quantized_multiplier(scaled_a + scaled_b, mo, so) + out_zp, *act_range)


def average_pool_int(x: np.ndarray, *, kernel_size: tuple[int, int], act_range: tuple[int, int]) -> np.ndarray:
    """VALID average pooling with stride 1 over whole windows, rounded half up: (sum + count/2) // count.

    Shapes: x (N, H, W, C) -> (N, H - KH + 1, W - KW + 1, C) int64.
    """
    kh, kw = kernel_size
    n, h, w, c = x.shape
    ho, wo = h - kh + 1, w - kw + 1
    total = np.zeros((n, ho, wo, c), np.int64)
    for i in range(kh):
        for j in range(kw):
            total += x[:, i : i + ho, j : j + wo].astype(np.int64)
    count = kh * kw
    return np.clip((total + count // 2) // count, *act_range)


def mean_int(x: np.ndarray, x_zp: int, m0: int, shift: int, out_zp: int, out_range: tuple[int, int]) -> np.ndarray:
    """MEAN over H and W of an int8 tensor, as TFLite's reference_integer_ops::Mean computes it.

    Math: the division by count = H*W is folded into the multiplier M0 * 2^shift (= s_in / s_out):
        k = min(floor(log2(count)), 32, 31 + shift);  M0' = floor(M0 * 2^k / count);  shift' = shift - k
        out = clamp(out_zp + MBQM(sum (x - x_zp), M0', shift'))
    Shapes: x (N, H, W, C) -> (N, 1, 1, C) int64.
    """
    count = x.shape[1] * x.shape[2]
    k = min(count.bit_length() - 1, 32, 31 + shift)
    folded = (m0 << k) // count
    total = (x.astype(np.int64) - x_zp).sum(axis=(1, 2), keepdims=True)  # (N, 1, 1, C)
    return np.clip(multiply_by_quantized_multiplier(total, folded, shift - k) + out_zp, *out_range)


def requantize(x: np.ndarray, in_zp: int, m0: int, shift: int, out_zp: int, out_range: tuple[int, int]) -> np.ndarray:
    """TFLite's QUANTIZE between integer types: clamp(out_zp + MBQM(x - in_zp, s_in / s_out))."""
    return np.clip(multiply_by_quantized_multiplier(x.astype(np.int64) - in_zp, m0, shift) + out_zp, *out_range)


def concatenate_int(
    inputs: list[np.ndarray], scales: list[float], zero_points: list[int], out_scale: float, out_zp: int,
    out_range: tuple[int, int],
) -> np.ndarray:  # fmt: skip
    """CONCATENATION on the channel axis, requantizing each input to the output's scale in float32
    arithmetic, as TFLite's reference ConcatenationWithScaling does:
        q_out = round(q * (s_in / s_out) - zp_in * (s_in / s_out)) + zp_out     (an input already at the output's
    scale and zero point is copied as it is). Shapes: (N, H, W, C_k) -> (N, H, W, sum C_k) int64."""
    parts = []
    inverse = np.float32(1.0) / np.float32(out_scale)
    for x, scale, zp in zip(inputs, scales, zero_points, strict=True):
        if zp == out_zp and np.float32(scale) == np.float32(out_scale):
            parts.append(x.astype(np.int64))
            continue
        factor = np.float32(scale) * inverse
        bias = np.float32(-zp) * factor
        value = x.astype(np.float32) * factor + bias  # float32, as in C
        parts.append(
            np.clip(np.sign(value) * np.floor(np.abs(value) + np.float32(0.5)) + out_zp, *out_range).astype(np.int64)
        )
    return np.concatenate(parts, axis=-1)


def resize_bilinear_int(
    x: np.ndarray, size: tuple[int, int], *, align_corners: bool, half_pixel_centers: bool
) -> np.ndarray:
    """RESIZE_BILINEAR of a uint8 or int8 tensor as TFLite's reference kernel computes it, in
    integers with 10 fractional bits.

    Math: scale = round(2^10 * in / out) (with align_corners: (in - 1) / (out - 1)); the source
    position of output pixel y is v = y * scale (half_pixel_centers: + scale/2 - 2^9), its
    neighbours y0 = v // 2^10, y1 = min(ceil(v / 2^10), in - 1), its weight v - 2^10 * y0;
        out = (sum of the four neighbours times their weights, in units of 2^-20 + 2^19) / 2^20
    rounded half away from zero.
    Shapes: x (N, H, W, C) -> (N, Ho, Wo, C) int64.
    """
    n, h, w, c = x.shape
    ho, wo = size

    def source(out_size: int, in_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if align_corners and out_size > 1:
            scale = ((1 << 10) * (in_size - 1) + (out_size - 1) // 2) // (out_size - 1)
        else:
            scale = ((1 << 10) * in_size + out_size // 2) // out_size
        value = np.arange(out_size, dtype=np.int64) * scale
        if half_pixel_centers:
            value = value + scale // 2 - (1 << 9)
        low = np.maximum(_trunc_div(value, 1 << 10), 0)
        high = np.minimum(_trunc_div(value + (1 << 10) - 1, 1 << 10), in_size - 1)
        return value - (1 << 10) * low, low, high

    wy, y0, y1 = source(ho, h)
    wx, x0, x1 = source(wo, w)
    # float64 holds every value below exactly (|x| <= 255 times 2^20 four times < 2^31)
    wy = wy.astype(np.float64)[:, None, None]  # (Ho, 1, 1): weight of the lower neighbour y1
    wx = wx.astype(np.float64)[None, :, None]  # (1, Wo, 1)
    v = x.astype(np.float64)
    rows0, rows1 = v[:, y0], v[:, y1]  # (N, Ho, W, C)
    top = rows0[:, :, x0] * ((1 << 10) - wx) + rows0[:, :, x1] * wx  # (N, Ho, Wo, C), in units of 2^-10
    bottom = rows1[:, :, x0] * ((1 << 10) - wx) + rows1[:, :, x1] * wx
    total = top * ((1 << 10) - wy) + bottom * wy  # in units of 2^-20
    return np.trunc((total + np.where(total > 0, 1 << 19, -(1 << 19))) / (1 << 20)).astype(np.int64)


def _trunc_div(a: np.ndarray, b: int) -> np.ndarray:
    """Integer division rounding toward zero, as C's `/`."""
    return np.where(a >= 0, a // b, -((-a) // b))


# ============================================================================ softmax (gemmlowp fixed point)


def _fixed_mul(a: np.ndarray, b: np.ndarray | int) -> np.ndarray:
    """The product of two fixed-point numbers (raw int32 values): SaturatingRoundingDoublingHighMul."""
    return saturating_rounding_doubling_high_mul(a, b)


def _saturating_shift_left(x: np.ndarray, exponent: int) -> np.ndarray:
    return np.clip(np.asarray(x, np.int64) << exponent, INT32_MIN, INT32_MAX)


def _wrap32(x: np.ndarray) -> np.ndarray:
    """int32 wrap-around of an int64 array (gemmlowp's fixed-point additions are plain int32 adds)."""
    return ((np.asarray(x, np.int64) + 2**31) % 2**32) - 2**31


def exp_on_negative_values(a: np.ndarray, integer_bits: int = 5) -> np.ndarray:
    """gemmlowp's exp(a) for a <= 0, a in fixed point with `integer_bits` integer bits; the result in
    Q0.31 (raw int32, 2^31 - 1 standing for 1).

    How: a = (a mod 1/4 - 1/4) + (a multiple of 1/4); exp of the first part by a Taylor series
    around -1/8, then multiplied by exp(-2^k) for each bit k set in the second part.
    """
    fractional_bits = 31 - integer_bits
    a = np.asarray(a, np.int64)
    one_quarter = 1 << (fractional_bits - 2)
    mask = one_quarter - 1
    a_mod_quarter_minus_quarter = (a & mask) - one_quarter
    # exp on [-1/4, 0): rescaled to Q0.31 first
    x = _saturating_shift_left(a_mod_quarter_minus_quarter, integer_bits)
    constant_term, one_third = 1895147668, 715827883  # exp(-1/8), 1/3 in Q0.31
    x = _wrap32(x + (1 << 28))  # x + 1/8
    x2 = _fixed_mul(x, x)
    x3 = _fixed_mul(x2, x)
    x4 = _fixed_mul(x2, x2)
    x4_over_4 = rounding_divide_by_pot(x4, 2)
    inner = rounding_divide_by_pot(_wrap32(_fixed_mul(_wrap32(x4_over_4 + x3), one_third) + x2), 1)
    result = _wrap32(constant_term + _fixed_mul(constant_term, _wrap32(x + inner)))
    remainder = a_mod_quarter_minus_quarter - a
    barrel = [(-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308), (2, 39332535), (3, 720401), (4, 242)]
    for exponent, multiplier in barrel:
        if integer_bits > exponent:
            bit = 1 << (fractional_bits + exponent)
            result = np.where(remainder & bit, _fixed_mul(result, multiplier), result)
    return np.where(a == 0, INT32_MAX, result)


def _one_over_one_plus_x(a: np.ndarray) -> np.ndarray:
    """gemmlowp's 1 / (1 + x) for x in [0, 1) (Q0.31 in and out), by Newton-Raphson on 48/17 - 32/17 d."""
    total = np.asarray(a, np.int64) + INT32_MAX  # RoundingHalfSum(a, One)
    half_denominator = np.where(total >= 0, (total + 1) // 2, -((-total + 1) // 2))
    x = _wrap32(1515870810 + _fixed_mul(half_denominator, -1010580540))  # Q2.29
    one_q2 = 1 << 29
    for _ in range(3):
        product = _fixed_mul(half_denominator, x)  # Q2.29
        x = _wrap32(x + _saturating_shift_left(_fixed_mul(x, _wrap32(one_q2 - product)), 2))  # Q4 -> Q2
    return _saturating_shift_left(x, 1)  # ExactMulByPot<-1> then Rescale<0>


def softmax_int(x: np.ndarray, x_scale: float, *, beta: float = 1.0, out_range: tuple[int, int]) -> np.ndarray:
    """TFLite's reference quantized SOFTMAX over the last axis (uint8/int8 in and out, output scale 1/256).

    Math: d = x - max(x) (integers); d' = d * beta * s_in in Q5.26 (a fixed-point multiplier);
    e = exp(d') in Q0.31 (`exp_on_negative_values`), 0 where d is below the input radius;
    sum = sum of e in Q12.19; out = e * (1 / sum) rounded to 8 bits, plus the output's minimum.
    Shapes: x (..., L) -> (..., L) int64.
    """
    integer_bits, accumulation_bits = 5, 12
    real = min(beta * float(np.float32(x_scale)) * (1 << (31 - integer_bits)), (1 << 31) - 1.0)
    multiplier, left_shift = quantize_multiplier(real)
    radius = math.floor(((1 << integer_bits) - 1) * (1 << (31 - integer_bits)) / (1 << left_shift))
    diff_min = -radius
    x = x.astype(np.int64)
    diff = x - x.max(axis=-1, keepdims=True)
    keep = diff >= diff_min
    rescaled = saturating_rounding_doubling_high_mul(diff << left_shift, multiplier)
    exps = np.where(keep, exp_on_negative_values(rescaled, integer_bits), 0)
    sum_of_exps = _wrap32(rounding_divide_by_pot(exps, accumulation_bits).sum(axis=-1, keepdims=True))
    headroom_plus_one = np.array([32 - int(v).bit_length() for v in sum_of_exps.ravel()]).reshape(sum_of_exps.shape)
    num_bits_over_unit = accumulation_bits - headroom_plus_one
    shifted_sum_minus_one = _wrap32((sum_of_exps << headroom_plus_one) - (1 << 31))
    shifted_scale = _one_over_one_plus_x(shifted_sum_minus_one)
    exponent = num_bits_over_unit + 31 - 8
    out = rounding_divide_by_pot(_fixed_mul(shifted_scale, exps), exponent) + out_range[0]
    return np.where(keep, np.clip(out, *out_range), out_range[0])

"""Softmax and log-softmax, in float and in TFLite's fixed-point arithmetic.

Forms: textbook forward (`softmax`, `log_softmax`, stable: the max is subtracted first); loop
twins; the integer form `softmax_int` (gemmlowp's fixed-point exp and reciprocal, as TFLite's
reference kernel computes it) and its loop twin. The gradient of softmax appears inside the
losses' backward (`npmnv2.ops.losses`).
"""

from __future__ import annotations

import math

import numpy as np

from .pages import OpPage
from .quantization import (
    INT32_MAX,
    INT32_MIN,
    c_div,
    describe_integer_op,
    quantize_multiplier,
    rounding_divide_by_pot,
    rounding_divide_by_pot_scalar,
    saturating_rounding_doubling_high_mul,
    srdhm_scalar,
)

# ============================================================================ textbook forward


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """exp(z - max z) / sum exp(z - max z) along `axis` (shifting by the max avoids overflow).

    >>> softmax(np.array([0.0, np.log(3.0)]))
    array([0.25, 0.75])
    """
    z = logits - logits.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def log_softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """z - max z - log(sum exp(z - max z)) along `axis`.

    >>> np.exp(log_softmax(np.array([0.0, np.log(3.0)])))
    array([0.25, 0.75])
    """
    z = logits - logits.max(axis=axis, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=axis, keepdims=True))


# ============================================================================ loop twins


def softmax_loops(logits: np.ndarray) -> np.ndarray:
    """exp(z_k - max z) / sum_j exp(z_j - max z) for each row (last axis). The twin of `ops.softmax`."""
    out = np.zeros_like(logits)
    for index in np.ndindex(logits.shape[:-1]):
        row = [float(v) for v in logits[index]]
        top = max(row)
        total = sum(math.exp(v - top) for v in row)
        out[index] = [math.exp(v - top) / total for v in row]
    return out


def log_softmax_loops(logits: np.ndarray) -> np.ndarray:
    """z_k - max z - log sum_j exp(z_j - max z) for each row. The twin of `ops.log_softmax`."""
    out = np.zeros_like(logits)
    for index in np.ndindex(logits.shape[:-1]):
        row = [float(v) for v in logits[index]]
        top = max(row)
        log_total = math.log(sum(math.exp(v - top) for v in row))
        out[index] = [v - top - log_total for v in row]
    return out


# ============================================================================ integer form


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


class KernelAbortError(ValueError):
    """An input on which TFLite's reference kernel aborts (a failed assertion), so there is no
    result to reproduce bit for bit: the integer model refuses it by name instead."""


def softmax_int(x: np.ndarray, x_scale: float, *, beta: float = 1.0, out_range: tuple[int, int]) -> np.ndarray:
    """TFLite's reference quantized SOFTMAX over the last axis (uint8/int8 in and out, output scale 1/256).

    Math: d = x - max(x) (integers); d' = d * beta * s_in in Q5.26 (a fixed-point multiplier);
    e = exp(d') in Q0.31 (`exp_on_negative_values`), 0 where d is below the input radius;
    sum = sum of e in Q12.19; out = e * (1 / sum) rounded to 8 bits, plus the output's minimum.
    When the sum reaches 256 (hundreds of classes tie for the maximum) the reference kernel's final
    shift exceeds 31 and the interpreter aborts; so does this function (`KernelAbortError`).
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
    if np.any(exponent > 31):  # gemmlowp's RoundingDivideByPOT asserts exponent <= 31: the interpreter aborts
        total = float(np.max(sum_of_exps)) / 2**19
        raise KernelAbortError(
            f"softmax_int: the exponentials of a row add up to {total:.0f} (at least 256: hundreds of classes tie "
            "for the maximum), where TFLite's reference SOFTMAX aborts (gemmlowp asserts a shift of at most 31); "
            "npmnv2 refuses to invent the result the interpreter cannot give."
        )
    out = rounding_divide_by_pot(_fixed_mul(shifted_scale, exps), exponent) + out_range[0]
    return np.where(keep, np.clip(out, *out_range), out_range[0])


# ============================================================================ integer loop twins


def softmax_int_loops(x, x_scale, *, beta=1.0, out_range):
    """TFLite's reference quantized Softmax, one row at a time with Python ints, following gemmlowp."""

    def fmul(a: int, b: int) -> int:
        return srdhm_scalar(a, b)

    def wrap(v: int) -> int:
        return ((v + 2**31) % 2**32) - 2**31

    def sat_shl(v: int, e: int) -> int:
        return min(max(v << e, -(2**31)), 2**31 - 1)

    def exp_neg(a: int) -> int:  # Q5.26 in, Q0.31 out
        frac_bits = 26
        quarter = 1 << (frac_bits - 2)
        a_mod = (a & (quarter - 1)) - quarter
        xq = wrap(sat_shl(a_mod, 5) + (1 << 28))
        x2 = fmul(xq, xq)
        x3 = fmul(x2, xq)
        x4 = fmul(x2, x2)
        x4_over_4 = rounding_divide_by_pot_scalar(x4, 2)
        inner = rounding_divide_by_pot_scalar(wrap(fmul(wrap(x4_over_4 + x3), 715827883) + x2), 1)
        result = wrap(1895147668 + fmul(1895147668, wrap(xq + inner)))
        remainder = a_mod - a
        for exponent, multiplier in (
            (-2, 1672461947),
            (-1, 1302514674),
            (0, 790015084),
            (1, 290630308),
            (2, 39332535),
            (3, 720401),
            (4, 242),
        ):
            if remainder & (1 << (frac_bits + exponent)):
                result = fmul(result, multiplier)
        return 2**31 - 1 if a == 0 else result

    def one_over_one_plus_x(a: int) -> int:
        total = a + 2**31 - 1
        half = c_div(total + (1 if total >= 0 else -1), 2)
        xq = wrap(1515870810 + fmul(half, -1010580540))
        for _ in range(3):
            xq = wrap(xq + sat_shl(fmul(xq, wrap((1 << 29) - fmul(half, xq))), 2))
        return sat_shl(xq, 1)

    multiplier, left_shift = quantize_multiplier(min(beta * float(np.float32(x_scale)) * (1 << 26), (1 << 31) - 1.0))
    diff_min = -math.floor(31 * (1 << 26) / (1 << left_shift))
    out = np.zeros(x.shape, np.int64)
    for index in np.ndindex(x.shape[:-1]):
        row = [int(v) for v in x[index]]
        top = max(row)
        exps = [
            exp_neg(srdhm_scalar((v - top) * (1 << left_shift), multiplier)) if v - top >= diff_min else None
            for v in row
        ]
        total = wrap(sum(rounding_divide_by_pot_scalar(e, 12) for e in exps if e is not None))
        headroom = 32 - total.bit_length()
        scale = one_over_one_plus_x(wrap((total << headroom) - (1 << 31)))
        exponent = 12 - headroom + 31 - 8
        if exponent > 31:
            raise KernelAbortError("softmax_int_loops: the exponentials add up to 256 or more; TFLite's kernel aborts.")
        out[index] = [
            out_range[0]
            if e is None
            else min(
                max(rounding_divide_by_pot_scalar(fmul(scale, e), exponent) + out_range[0], out_range[0]), out_range[1]
            )
            for e in exps
        ]
    return out


# ============================================================================ the page: describe

INTEGER_PAGES = (OpPage(softmax_int, describe_integer_op("softmax in gemmlowp fixed point (exp, then a reciprocal)")),)

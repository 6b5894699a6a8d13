"""`npmnv2.ops.quantization`: the integer arithmetic the integer forms share.
Each form against PyTorch where it has a twin there, its loop twin and finite differences."""

from __future__ import annotations

import numpy as np
import pytest

from npmnv2 import ops

RNG = np.random.default_rng(573)


def test_the_rounding_helpers_equal_gemmlowps_written_form():
    a = RNG.integers(-(2**31), 2**31, 3000)
    b = RNG.integers(0, 2**31, 3000)
    fast = ops.quantization.saturating_rounding_doubling_high_mul(a, b)
    assert [ops.quantization.srdhm_scalar(int(x), int(y)) for x, y in zip(a, b, strict=True)] == fast.tolist()
    assert ops.quantization.saturating_rounding_doubling_high_mul(np.array([-(2**31)]), -(2**31)).tolist() == [
        2**31 - 1
    ]
    for exponent in (0, 1, 3, 12, 30):
        fast = ops.quantization.rounding_divide_by_pot(a, exponent)
        assert [ops.quantization.rounding_divide_by_pot_scalar(int(x), exponent) for x in a] == fast.tolist()
    m0, shift = ops.quantization.quantize_multiplier(0.000823)
    acc = RNG.integers(-(2**24), 2**24, 3000)
    expected = [ops.quantization.multiply_by_quantized_multiplier_scalar(int(x), m0, shift) for x in acc]
    assert ops.quantization.multiply_by_quantized_multiplier(acc, m0, shift).tolist() == expected


@pytest.mark.parametrize("real", [1e-9, 0.0005, 0.25, 0.5, 0.9999999999, 1.0, 3.7])
def test_quantize_multiplier_reconstructs_the_real_multiplier(real):
    m0, shift = ops.quantization.quantize_multiplier(real)
    assert 2**30 <= m0 < 2**31
    assert abs(m0 * 2.0 ** (shift - 31) - real) <= real * 2**-30

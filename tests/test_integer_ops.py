"""Every integer op equals its loop twin (TFLite's C reference kernels transliterated, in Python
ints), on small random tensors; the rounding helpers equal gemmlowp's written form everywhere."""

from __future__ import annotations

import numpy as np
import pytest

from npmnv2 import ops
from npmnv2.ops import Pad2D

RNG = np.random.default_rng(13)


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


@pytest.mark.parametrize(
    ("stride", "dilation", "padding"), [(1, 1, Pad2D(1, 1, 1, 1)), (2, 1, Pad2D(0, 1, 0, 1)), (1, 2, Pad2D(2, 2, 2, 2))]
)
def test_integer_convolutions_equal_their_loops(stride, dilation, padding):
    x = RNG.integers(0, 256, (1, 6, 7, 3))
    kernel = RNG.integers(0, 256, (4, 3, 3, 3))
    bias = RNG.integers(-5000, 5000, 4)
    args = dict(stride=stride, dilation=dilation, padding=padding)
    np.testing.assert_array_equal(
        ops.conv.conv2d_int(x, 128, kernel, 120, bias, **args),
        ops.conv.conv2d_int_loops(x, 128, kernel, 120, bias, **args),
    )
    dw = RNG.integers(-127, 128, (1, 3, 3, 3))
    per_channel_zp = np.zeros(3, np.int64)
    np.testing.assert_array_equal(
        ops.depthwise.depthwise_conv2d_int(x, 128, dw, per_channel_zp, bias[:3], **args),
        ops.depthwise.depthwise_conv2d_int_loops(x, 128, dw, per_channel_zp, bias[:3], **args),
    )
    xs, w = RNG.integers(0, 256, (2, 10)), RNG.integers(0, 256, (5, 10))
    np.testing.assert_array_equal(
        ops.fully_connected.linear_int(xs, 128, w, 130, bias[:5] if len(bias) >= 5 else None),
        ops.fully_connected.linear_int_loops(xs, 128, w, 130, None),
    )


def test_add_pool_mean_requantize_equal_their_loops():
    a, b = RNG.integers(0, 256, (1, 4, 5, 3)), RNG.integers(0, 256, (1, 4, 5, 3))
    args = (a, 0.0317, 131, b, 0.0224, 118, 0.0402, 125, (0, 255))
    np.testing.assert_array_equal(ops.merge.add_int(*args), ops.merge.add_int_loops(*args))
    np.testing.assert_array_equal(
        ops.pooling.avg_pool2d_int(a, kernel_size=(4, 5), act_range=(0, 255)),
        ops.pooling.avg_pool2d_int_loops(a, kernel_size=(4, 5), act_range=(0, 255)),
    )
    x = RNG.integers(-128, 128, (1, 7, 7, 6))
    m0, shift = ops.quantization.quantize_multiplier(0.0235 / 0.0191)
    np.testing.assert_array_equal(
        ops.pooling.global_average_pool_int(x, -128, m0, shift, -128, (-128, 127)),
        ops.pooling.global_average_pool_int_loops(x, -128, m0, shift, -128, (-128, 127)),
    )
    m0, shift = ops.quantization.quantize_multiplier(0.0078125 / 0.00784314)
    np.testing.assert_array_equal(
        ops.quantization.requantize(a, 128, m0, shift, -1, (-128, 127)),
        ops.quantization.requantize_loops(a, 128, m0, shift, -1, (-128, 127)),
    )


@pytest.mark.parametrize(
    ("size", "align_corners", "half_pixel"),
    [((9, 11), True, False), ((7, 4), False, False), ((8, 10), False, True), ((1, 1), True, False)],
)
def test_integer_resize_equals_its_loops(size, align_corners, half_pixel):
    x = RNG.integers(0, 256, (1, 4, 5, 2))
    args = dict(align_corners=align_corners, half_pixel_centers=half_pixel)
    np.testing.assert_array_equal(
        ops.resize.resize_bilinear_int(x, size, **args), ops.resize.resize_bilinear_int_loops(x, size, **args)
    )


def test_integer_softmax_equals_its_fixed_point_loops_and_sums_to_about_one():
    x = RNG.integers(0, 256, (3, 40))
    ours = ops.probability.softmax_int(x, 0.0986, out_range=(0, 255))
    np.testing.assert_array_equal(ours, ops.probability.softmax_int_loops(x, 0.0986, out_range=(0, 255)))
    assert np.all(np.abs(ours.sum(axis=1) / 256 - 1) < 0.1)
    signed = ops.probability.softmax_int(x - 128, 0.0986, out_range=(-128, 127))
    np.testing.assert_array_equal(signed, ours - 128)


def test_concatenation_requantizes_in_float32_and_copies_matching_inputs():
    a, b = RNG.integers(0, 256, (1, 2, 2, 3)), RNG.integers(0, 256, (1, 2, 2, 2))
    out = ops.merge.concat_channels_int([a, b], [0.05, 0.02], [128, 0], 0.05, 128, (0, 255))
    np.testing.assert_array_equal(out[..., :3], a)  # same scale and zero point: copied
    expected = np.floor(b.astype(np.float32) * np.float32(0.02 / 0.05) + 0.5) + 128
    assert np.abs(out[..., 3:] - np.clip(expected, 0, 255)).max() <= 1


def test_the_float64_matmul_refuses_sums_it_could_not_hold_exactly():
    big = np.full((1, 4096), 2**21)
    with pytest.raises(ValueError, match="could exceed 2\\^53"):
        ops.fully_connected.linear_int(big, 0, big, 0, None)

"""`npmnv2.ops.pooling`: global and fixed-window average pooling (float and integer).
Each form against PyTorch where it has a twin there, its loop twin and finite differences."""

from __future__ import annotations

import numpy as np
import pytest
import torch.nn.functional as F
from op_checks import nchw, nhwc

from npmnv2 import ops

RNG = np.random.default_rng(842)


# ---------------------------------------------------------------- pooling + resize
def test_global_average_pool_matches_torch():
    x = RNG.normal(size=(2, 5, 7, 3))
    np.testing.assert_allclose(ops.global_average_pool(x), F.adaptive_avg_pool2d(nchw(x), 1).numpy()[:, :, 0, 0])


@pytest.mark.parametrize("h,w", [(7, 7), (10, 9)])
def test_avg_pool2d_matches_torch_and_loops(h, w):
    x = RNG.normal(size=(2, h, w, 3))
    ours = ops.avg_pool2d(x, kernel_size=7, stride=1)
    np.testing.assert_allclose(ours, nhwc(F.avg_pool2d(nchw(x), 7, stride=1)), rtol=1e-12)
    np.testing.assert_allclose(ours, ops.pooling.avg_pool2d_loops(x, kernel_size=7), rtol=1e-12)


def test_global_average_pool_backward_spreads_evenly():
    x = RNG.standard_normal((2, 3, 4, 5))
    g = RNG.standard_normal((2, 5))
    back = ops.pooling.global_average_pool_backward(g, x.shape)
    assert float((ops.global_average_pool(x) * g).sum()) == pytest.approx(float((x * back).sum()), rel=1e-12)


@pytest.mark.parametrize(("h", "w", "kernel_size", "stride"), [(5, 6, 2, 1), (7, 7, 3, 2), (4, 4, 4, 1)])
def test_avg_pool2d_backward_matches_loops_and_adjoint(h, w, kernel_size, stride):
    x = RNG.standard_normal((2, h, w, 3))
    out = ops.avg_pool2d(x, kernel_size=kernel_size, stride=stride)
    g = RNG.standard_normal(out.shape)
    back = ops.pooling.avg_pool2d_backward(g, x.shape, kernel_size=kernel_size, stride=stride)
    loops = ops.pooling.avg_pool2d_backward_loops(g, x.shape, kernel_size=kernel_size, stride=stride)
    np.testing.assert_allclose(back, loops, rtol=1e-12, atol=1e-12)
    assert float((out * g).sum()) == pytest.approx(float((x * back).sum()), rel=1e-12)


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

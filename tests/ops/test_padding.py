"""`npmnv2.ops.padding`: TF SAME and symmetric padding, pad2d and kernel taps.
Each form against PyTorch where it has a twin there, its loop twin and finite differences."""

from __future__ import annotations

import numpy as np
import pytest
from op_checks import GEOMETRY, close, x4

from npmnv2 import ops
from npmnv2.ops import Pad2D

RNG = np.random.default_rng(777)


# ---------------------------------------------------------------- padding
@pytest.mark.parametrize("size", range(1, 40))
@pytest.mark.parametrize("stride,dilation", GEOMETRY)
def test_tf_same_padding_gives_ceil_output_and_matches_transformers_formula(size, stride, dilation):
    before, after = ops.tf_same_padding(size, kernel_size=3, stride=stride, dilation=dilation)
    out = ops.conv_output_size(size, kernel_size=3, stride=stride, dilation=dilation, pad=before + after)
    assert out == -(-size // stride)
    assert after - before in (0, 1)
    # transformers' apply_tf_padding formula (valid where stride or dilation is 1)
    total = max(3 - stride, 0) if size % stride == 0 else max(3 - size % stride, 0)
    assert (before, after) == (total // 2 * dilation, (total - total // 2) * dilation)


def test_same_padding_puts_odd_pixel_after():
    assert ops.tf_same_padding(224, kernel_size=3, stride=2) == (0, 1)
    assert ops.tf_same_padding(10, kernel_size=4, stride=1) == (1, 2)


def test_same_padding_refuses_stride_with_dilation():
    with pytest.raises(ValueError, match=r"stride=2 with dilation=2 is not supported"):
        ops.tf_same_padding(10, kernel_size=3, stride=2, dilation=2)


def test_symmetric_padding_scales_with_dilation():
    assert ops.symmetric_padding(kernel_size=3, dilation=4) == (4, 4)
    assert ops.conv_padding(9, 9, kernel_size=3, stride=2, dilation=1, tf_padding=False) == Pad2D(1, 1, 1, 1)


def test_pad2d_backward_crops_the_border():
    x = RNG.standard_normal((1, 3, 4, 2))
    padding = Pad2D(1, 2, 0, 1)
    g = RNG.standard_normal(ops.pad2d(x, padding).shape)
    assert float((ops.pad2d(x, padding) * g).sum()) == pytest.approx(
        float((x * ops.padding.pad2d_backward(g, padding)).sum()), rel=1e-12
    )


@pytest.mark.parametrize(
    ("size", "k", "s", "d"), [(7, 3, 1, 1), (8, 3, 2, 1), (9, 3, 2, 1), (14, 3, 1, 2), (5, 1, 1, 1)]
)
def test_padding_arithmetic_equals_search(size, k, s, d) -> None:
    assert ops.tf_same_padding(size, kernel_size=k, stride=s, dilation=d) == ops.padding.tf_same_padding_search(
        size, kernel_size=k, stride=s, dilation=d
    )
    for pad in (0, 1, 2, 3):
        assert ops.conv_output_size(size, kernel_size=k, stride=s, dilation=d, pad=pad) == (
            ops.padding.conv_output_size_loops(size, kernel_size=k, stride=s, dilation=d, pad=pad)
        )


@pytest.mark.parametrize(("stride", "dilation"), [(1, 1), (2, 1), (1, 2)])
def test_pad_tap_and_im2col_equal_their_loops(stride, dilation) -> None:
    x = x4(2, 5, 6, 3)
    pad = Pad2D(0, 1, 2, 1)
    padded = ops.pad2d(x, pad)
    close(padded, ops.padding.pad2d_loops(x, pad))
    out = (2, 2)
    close(
        ops.kernel_tap(padded, 1, 2, out_size=out, stride=stride, dilation=dilation),
        ops.padding.kernel_tap_loops(padded, 1, 2, out_size=out, stride=stride, dilation=dilation),
    )
    close(
        ops.im2col(padded, kernel_size=3, stride=stride, dilation=dilation),
        ops.conv.im2col_loops(padded, kernel_size=3, stride=stride, dilation=dilation),
    )

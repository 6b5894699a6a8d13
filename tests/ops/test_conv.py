"""`npmnv2.ops.conv`: im2col, dense and 1x1 convolution (float and integer).
Each form against PyTorch where it has a twin there, its loop twin and finite differences."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from op_checks import (
    CONV_CASES,
    GEOMETRY,
    SIZES,
    assert_gradient_matches_finite_differences,
    close,
    nchw,
    nhwc,
    torch_pad,
    x4,
)

from npmnv2 import ops
from npmnv2.ops import Pad2D

RNG = np.random.default_rng(988)


# ---------------------------------------------------------------- convolutions
@pytest.mark.parametrize("h,w", SIZES)
@pytest.mark.parametrize("stride,dilation", GEOMETRY)
@pytest.mark.parametrize("tf_padding", [True, False])
def test_conv2d_matches_torch_and_loops(h, w, stride, dilation, tf_padding):
    x = RNG.normal(size=(2, h, w, 3))
    k = RNG.normal(size=(3, 3, 3, 5))
    b = RNG.normal(size=5)
    pad = ops.conv_padding(h, w, kernel_size=3, stride=stride, dilation=dilation, tf_padding=tf_padding)
    ours = ops.conv2d(x, k, b, stride=stride, dilation=dilation, padding=pad)
    theirs = F.conv2d(
        F.pad(nchw(x), torch_pad(pad)),
        torch.from_numpy(k.transpose(3, 2, 0, 1).copy()),
        torch.from_numpy(b),
        stride=stride,
        dilation=dilation,
    )
    np.testing.assert_allclose(ours, nhwc(theirs), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(
        ours, ops.conv.conv2d_loops(x, k, b, stride=stride, dilation=dilation, padding=pad), rtol=1e-12, atol=1e-12
    )


def test_pointwise_conv_is_a_matrix_product():
    x = RNG.normal(size=(2, 5, 7, 6))
    k = RNG.normal(size=(1, 1, 6, 3))
    theirs = F.conv2d(nchw(x), torch.from_numpy(k.transpose(3, 2, 0, 1).copy()))
    np.testing.assert_allclose(ops.pointwise_conv2d(x, k), nhwc(theirs), rtol=1e-12, atol=1e-12)


def test_im2col_columns_follow_hwio_order():
    x = np.arange(2 * 3 * 3 * 2, dtype=float).reshape(1, 3, 3, 4)[..., :2]  # (1, 3, 3, 2)
    cols = ops.im2col(x, kernel_size=2, stride=1)
    assert cols.shape == (4, 8)
    np.testing.assert_array_equal(cols[0], np.concatenate([x[0, 0, 0], x[0, 0, 1], x[0, 1, 0], x[0, 1, 1]]))


def test_conv_errors_name_the_op_and_shapes():
    with pytest.raises(ValueError, match=r"depthwise_conv2d: kernel must be \(KH, KW, C\) with C=4"):
        ops.depthwise_conv2d(np.zeros((1, 5, 5, 4)), np.zeros((3, 3, 2)))
    with pytest.raises(ValueError, match=r"conv2d: kernel expects 2 input channels, input has 3"):
        ops.conv2d(np.zeros((1, 5, 5, 3)), np.zeros((3, 3, 2, 4)))
    with pytest.raises(ValueError, match=r"smaller than the dilated kernel"):
        ops.conv2d(np.zeros((1, 2, 2, 1)), np.zeros((3, 3, 1, 1)), dilation=2)


@pytest.mark.parametrize(("h", "w", "stride", "dilation", "tf_padding"), CONV_CASES)
def test_conv2d_backward_matches_loops_torch_and_finite_differences(h, w, stride, dilation, tf_padding):
    x = RNG.standard_normal((2, h, w, 3))
    kernel = RNG.standard_normal((3, 3, 3, 4))
    padding = ops.conv_padding(h, w, kernel_size=3, stride=stride, dilation=dilation, tf_padding=tf_padding)
    out = ops.conv2d(x, kernel, stride=stride, dilation=dilation, padding=padding)
    grad_out = RNG.standard_normal(out.shape)
    got = ops.conv.conv2d_backward(x, kernel, grad_out, stride=stride, dilation=dilation, padding=padding)
    loops = ops.conv.conv2d_backward_loops(x, kernel, grad_out, stride=stride, dilation=dilation, padding=padding)
    for a, b in zip(got, loops, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)

    tx = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
    tk = torch.tensor(kernel.transpose(3, 2, 0, 1), requires_grad=True)
    top, bottom, left, right = padding
    tout = F.conv2d(F.pad(tx, (left, right, top, bottom)), tk, stride=stride, dilation=dilation)
    tout.backward(torch.tensor(grad_out.transpose(0, 3, 1, 2)))
    np.testing.assert_allclose(got[0], tx.grad.numpy().transpose(0, 2, 3, 1), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got[1], tk.grad.numpy().transpose(2, 3, 1, 0), rtol=1e-10, atol=1e-12)

    def forward(z):
        return ops.conv2d(z, kernel, stride=stride, dilation=dilation, padding=padding)

    assert_gradient_matches_finite_differences(forward, x, grad_out, got[0])


def test_pointwise_backward_equals_the_general_conv_backward():
    x = RNG.standard_normal((2, 4, 5, 6))
    kernel = RNG.standard_normal((1, 1, 6, 3))
    grad_out = RNG.standard_normal((2, 4, 5, 3))
    got = ops.conv.pointwise_conv2d_backward(x, kernel, grad_out)
    general = ops.conv.conv2d_backward(x, kernel, grad_out, stride=1, dilation=1, padding=Pad2D(0, 0, 0, 0))
    for a, b in zip(got, general, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12)


@pytest.mark.parametrize(("stride", "dilation"), [(1, 1), (2, 1), (1, 2)])
def test_col2im_is_the_adjoint_of_im2col(stride, dilation):
    """<im2col(x), c> == <x, col2im(c)> for every x and c: the definition of an adjoint."""
    x = RNG.standard_normal((2, 7, 8, 3))
    cols = ops.im2col(x, kernel_size=3, stride=stride, dilation=dilation)
    c = RNG.standard_normal(cols.shape)
    back = ops.conv.col2im(c, x.shape, kernel_size=3, stride=stride, dilation=dilation)
    assert float((cols * c).sum()) == pytest.approx(float((x * back).sum()), rel=1e-12)
    loops = ops.conv.col2im_loops(c, x.shape, kernel_size=3, stride=stride, dilation=dilation)
    np.testing.assert_allclose(back, loops, rtol=1e-12, atol=1e-12)


def test_pointwise_batch_norm_and_folding_equal_their_loops() -> None:
    x, kernel, bias = x4(2, 3, 4, 5), x4(1, 1, 5, 6), x4(6)
    close(ops.pointwise_conv2d(x, kernel, bias), ops.conv.pointwise_conv2d_loops(x, kernel, bias))
    mean, gamma, beta, var = x4(5), x4(5), x4(5), RNG.uniform(0.5, 2, 5)
    ours = ops.batch_norm(x, mean, var, gamma, beta, eps=1e-3)
    close(ours, ops.batchnorm.batch_norm_loops(x, mean, var, gamma, beta, eps=1e-3))
    for conv_bias in (None, x4(6)):
        args = (kernel, conv_bias, x4(6), x4(6), x4(6), RNG.uniform(0.5, 2, 6))  # kernel, bias, gamma, beta, mean, var
        folded, twin = ops.fold_batch_norm(*args, eps=1e-5), ops.batchnorm.fold_batch_norm_loops(*args, eps=1e-5)
        close(folded[0], twin[0])
        close(folded[1], twin[1])


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

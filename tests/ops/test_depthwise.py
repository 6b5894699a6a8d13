"""`npmnv2.ops.depthwise`: depthwise (and dilated) convolution (float and integer).
Each form against PyTorch where it has a twin there, its loop twin and finite differences."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from op_checks import CONV_CASES, GEOMETRY, SIZES, assert_gradient_matches_finite_differences, nchw, nhwc, torch_pad

from npmnv2 import ops

RNG = np.random.default_rng(310)


@pytest.mark.parametrize("h,w", SIZES)
@pytest.mark.parametrize("stride,dilation", GEOMETRY)
@pytest.mark.parametrize("tf_padding", [True, False])
def test_depthwise_conv2d_matches_torch_groups_and_loops(h, w, stride, dilation, tf_padding):
    x = RNG.normal(size=(2, h, w, 4))
    k = RNG.normal(size=(3, 3, 4))
    pad = ops.conv_padding(h, w, kernel_size=3, stride=stride, dilation=dilation, tf_padding=tf_padding)
    ours = ops.depthwise_conv2d(x, k, stride=stride, dilation=dilation, padding=pad)
    theirs = F.conv2d(
        F.pad(nchw(x), torch_pad(pad)),
        torch.from_numpy(k.transpose(2, 0, 1)[:, None].copy()),
        stride=stride,
        dilation=dilation,
        groups=4,
    )
    np.testing.assert_allclose(ours, nhwc(theirs), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(
        ours,
        ops.depthwise.depthwise_conv2d_loops(x, k, stride=stride, dilation=dilation, padding=pad),
        rtol=1e-12,
        atol=1e-12,
    )


@pytest.mark.parametrize("stride,dilation", [(1, 1), (1, 3), (2, 1), (3, 2)])
def test_depthwise_conv2d_takes_non_square_kernels_and_batches(stride, dilation):
    x = RNG.normal(size=(3, 11, 13, 5))
    k = RNG.normal(size=(2, 3, 5))
    pad = ops.Pad2D(1, 2, 0, 3)
    np.testing.assert_allclose(
        ops.depthwise_conv2d(x, k, stride=stride, dilation=dilation, padding=pad),
        ops.depthwise.depthwise_conv2d_loops(x, k, stride=stride, dilation=dilation, padding=pad),
        rtol=1e-12,
        atol=1e-12,
    )


def test_depthwise_keeps_float32():
    x = RNG.normal(size=(1, 6, 6, 2)).astype(np.float32)
    assert ops.depthwise_conv2d(x, np.ones((3, 3, 2), np.float32)).dtype == np.float32


@pytest.mark.parametrize(("h", "w", "stride", "dilation", "tf_padding"), CONV_CASES)
def test_depthwise_conv2d_backward_matches_loops_torch_and_finite_differences(h, w, stride, dilation, tf_padding):
    x = RNG.standard_normal((2, h, w, 5))
    kernel = RNG.standard_normal((3, 3, 5))
    padding = ops.conv_padding(h, w, kernel_size=3, stride=stride, dilation=dilation, tf_padding=tf_padding)
    out = ops.depthwise_conv2d(x, kernel, stride=stride, dilation=dilation, padding=padding)
    grad_out = RNG.standard_normal(out.shape)
    got = ops.depthwise.depthwise_conv2d_backward(
        x, kernel, grad_out, stride=stride, dilation=dilation, padding=padding
    )
    loops = ops.depthwise.depthwise_conv2d_backward_loops(
        x, kernel, grad_out, stride=stride, dilation=dilation, padding=padding
    )
    for a, b in zip(got, loops, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)

    tx = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
    tk = torch.tensor(kernel.transpose(2, 0, 1)[:, None], requires_grad=True)  # (C, 1, KH, KW)
    top, bottom, left, right = padding
    tout = F.conv2d(F.pad(tx, (left, right, top, bottom)), tk, stride=stride, dilation=dilation, groups=5)
    tout.backward(torch.tensor(grad_out.transpose(0, 3, 1, 2)))
    np.testing.assert_allclose(got[0], tx.grad.numpy().transpose(0, 2, 3, 1), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got[1], tk.grad.numpy()[:, 0].transpose(1, 2, 0), rtol=1e-10, atol=1e-12)

    def forward(z):
        return ops.depthwise_conv2d(z, kernel, stride=stride, dilation=dilation, padding=padding)

    assert_gradient_matches_finite_differences(forward, x, grad_out, got[0])

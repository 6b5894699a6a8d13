"""Each op against torch.nn.functional and against its loop version on its page."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from npmnv2 import ops
from npmnv2.ops import Pad2D

RNG = np.random.default_rng(1234)


def nchw(x):
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def nhwc(t):
    return t.numpy().transpose(0, 2, 3, 1)


def torch_pad(pad: Pad2D):
    return (pad.left, pad.right, pad.top, pad.bottom)


SIZES = [(7, 7), (8, 8), (9, 12), (13, 10)]
GEOMETRY = [(1, 1), (2, 1), (1, 2), (1, 4)]  # (stride, dilation)


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


# ---------------------------------------------------------------- batch norm
def test_batch_norm_matches_torch_eval():
    x = RNG.normal(size=(2, 4, 5, 3))
    mean, var = RNG.normal(size=3), RNG.uniform(0.5, 2, size=3)
    gamma, beta = RNG.normal(size=3), RNG.normal(size=3)
    theirs = F.batch_norm(nchw(x), *(torch.from_numpy(a) for a in (mean, var, gamma, beta)), training=False, eps=1e-3)
    np.testing.assert_allclose(
        ops.batch_norm(x, mean, var, gamma, beta, eps=1e-3), nhwc(theirs), rtol=1e-12, atol=1e-12
    )


@pytest.mark.parametrize("depthwise", [False, True])
def test_folded_batch_norm_equals_conv_then_batch_norm(depthwise):
    x = RNG.normal(size=(1, 7, 7, 4))
    k = RNG.normal(size=(3, 3, 4)) if depthwise else RNG.normal(size=(3, 3, 4, 4))
    conv = ops.depthwise_conv2d if depthwise else ops.conv2d
    mean, var = RNG.normal(size=4), RNG.uniform(0.5, 2, size=4)
    gamma, beta = RNG.normal(size=4), RNG.normal(size=4)
    expected = ops.batch_norm(conv(x, k, stride=2), mean, var, gamma, beta, eps=1e-3)
    k2, b2 = ops.fold_batch_norm(k, None, gamma, beta, mean, var, eps=1e-3)
    np.testing.assert_allclose(conv(x, k2, b2, stride=2), expected, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- activations
@pytest.mark.parametrize(
    "name,torch_fn",
    [
        ("relu6", F.relu6),
        ("relu", F.relu),
        ("gelu", F.gelu),
        ("gelu_new", lambda t: F.gelu(t, approximate="tanh")),
        ("silu", F.silu),
        ("swish", F.silu),
        ("tanh", torch.tanh),
        ("sigmoid", torch.sigmoid),
        ("hardswish", F.hardswish),
        ("leaky_relu", F.leaky_relu),
        ("mish", F.mish),
        ("linear", lambda t: t),
        ("quick_gelu", lambda t: t * torch.sigmoid(1.702 * t)),
    ],
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_activation_matches_torch(name, torch_fn, dtype):
    x = (RNG.normal(size=(3, 50)) * 5).astype(dtype)
    x[0, :4] = [-100, 100, 6, 0]
    ours = ops.activation(name)(x)
    assert ours.dtype == dtype
    tol = 1e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(ours, torch_fn(torch.from_numpy(x)).numpy(), rtol=tol, atol=tol)


def test_unknown_activation_lists_the_supported_ones():
    with pytest.raises(ValueError, match=r"unknown activation 'relu7'; supported: .*relu6"):
        ops.activation("relu7")


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


@pytest.mark.parametrize(
    "in_hw,out_hw", [((5, 7), (11, 3)), ((1, 1), (9, 4)), ((17, 17), (513, 513)), ((4, 6), (4, 6)), ((9, 8), (2, 1))]
)
@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_resize_bilinear_matches_torch_interpolate(in_hw, out_hw, align_corners, dtype):
    x = RNG.normal(size=(2, *in_hw, 3)).astype(dtype)
    ours = ops.resize_bilinear(x, out_hw, align_corners=align_corners)
    theirs = nhwc(F.interpolate(nchw(x), size=out_hw, mode="bilinear", align_corners=align_corners))
    assert ours.dtype == dtype
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(ours, theirs, rtol=tol, atol=tol)
    if out_hw != (513, 513):
        np.testing.assert_allclose(
            ours, ops.resize.resize_bilinear_loops(x, out_hw, align_corners=align_corners), rtol=tol, atol=tol
        )


# ---------------------------------------------------------------- softmax + losses
def test_softmax_and_log_softmax_match_torch_on_large_logits():
    z = RNG.normal(size=(4, 10)) * 100
    np.testing.assert_allclose(ops.softmax(z), torch.softmax(torch.from_numpy(z), -1).numpy(), rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(ops.log_softmax(z), torch.log_softmax(torch.from_numpy(z), -1).numpy(), rtol=1e-12)


def test_cross_entropy_ignores_the_ignore_index_like_torch():
    z = RNG.normal(size=(20, 5))
    y = RNG.integers(0, 5, size=20)
    y[:6] = 255
    theirs = F.cross_entropy(torch.from_numpy(z), torch.from_numpy(y), ignore_index=255).item()
    assert ops.cross_entropy(z, y, ignore_index=255) == pytest.approx(theirs, rel=1e-12)


def test_mse_and_bce_match_torch():
    a, b = RNG.normal(size=(4, 3)), RNG.integers(0, 2, size=(4, 3)).astype(float)
    assert ops.mse_loss(a, b) == pytest.approx(F.mse_loss(torch.from_numpy(a), torch.from_numpy(b)).item(), rel=1e-12)
    assert ops.bce_with_logits(a * 50, b) == pytest.approx(
        F.binary_cross_entropy_with_logits(torch.from_numpy(a * 50), torch.from_numpy(b)).item(), rel=1e-12
    )

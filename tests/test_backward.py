"""Each backward op against its loop twin on its page, against PyTorch autograd and
against central finite differences of the forward op (float64)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from npmnv2 import ops
from npmnv2.ops import Pad2D

RNG = np.random.default_rng(2026)


def directional_derivative(f, x: np.ndarray, direction: np.ndarray, weights: np.ndarray, h: float = 1e-6) -> float:
    """d/dt sum(weights * f(x + t v)) at t = 0, by central differences."""
    return float(((f(x + h * direction) - f(x - h * direction)) * weights).sum() / (2 * h))


def assert_gradient_matches_finite_differences(f, x, grad_out, grad_x, rtol=1e-6):
    """<grad_x, v> must equal the derivative of <grad_out, f(x)> along v, for random directions v."""
    for _ in range(3):
        v = RNG.standard_normal(x.shape)
        expected = directional_derivative(f, x, v, grad_out)
        assert float((grad_x * v).sum()) == pytest.approx(expected, rel=rtol, abs=1e-8)


CONV_CASES = [
    # (h, w, stride, dilation, tf_padding)
    (7, 7, 1, 1, True),
    (8, 9, 2, 1, True),
    (9, 8, 2, 1, False),
    (7, 6, 1, 2, True),
    (6, 7, 1, 2, False),
]


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


def test_pad2d_backward_crops_the_border():
    x = RNG.standard_normal((1, 3, 4, 2))
    padding = Pad2D(1, 2, 0, 1)
    g = RNG.standard_normal(ops.pad2d(x, padding).shape)
    assert float((ops.pad2d(x, padding) * g).sum()) == pytest.approx(
        float((x * ops.padding.pad2d_backward(g, padding)).sum()), rel=1e-12
    )


def test_batch_norm_backward_matches_loops_and_torch():
    x = RNG.standard_normal((2, 3, 4, 5))
    mean, beta = RNG.standard_normal(5), RNG.standard_normal(5)
    var, gamma = RNG.random(5) + 0.5, RNG.random(5) + 0.5
    grad_out = RNG.standard_normal(x.shape)
    got = ops.batchnorm.batch_norm_backward(x, var, gamma, mean, grad_out, eps=1e-3)
    loops = ops.batchnorm.batch_norm_backward_loops(x, var, gamma, mean, grad_out, eps=1e-3)
    for a, b in zip(got, loops, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)

    tx = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
    tg, tb = torch.tensor(gamma, requires_grad=True), torch.tensor(beta, requires_grad=True)
    out = F.batch_norm(tx, torch.tensor(mean), torch.tensor(var), tg, tb, training=False, eps=1e-3)
    out.backward(torch.tensor(grad_out.transpose(0, 3, 1, 2)))
    np.testing.assert_allclose(got[0], tx.grad.numpy().transpose(0, 2, 3, 1), rtol=1e-10)
    np.testing.assert_allclose(got[1], tg.grad.numpy(), rtol=1e-10)
    np.testing.assert_allclose(got[2], tb.grad.numpy(), rtol=1e-10)


def test_training_mode_batch_norm_backward_matches_torch_and_finite_differences():
    x = RNG.standard_normal((3, 4, 2, 5)) * 2 + 1
    gamma, beta = RNG.random(5) + 0.5, RNG.standard_normal(5)
    grad_out = RNG.standard_normal(x.shape)
    y, mu, v = ops.batchnorm.batch_norm_train(x, gamma, beta, eps=1e-5)
    grad_x, grad_gamma, grad_beta = ops.batchnorm.batch_norm_train_backward(x, gamma, grad_out, eps=1e-5)

    tx = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
    tg, tb = torch.tensor(gamma, requires_grad=True), torch.tensor(beta, requires_grad=True)
    out = F.batch_norm(tx, None, None, tg, tb, training=True, eps=1e-5)
    np.testing.assert_allclose(y, out.detach().numpy().transpose(0, 2, 3, 1), rtol=1e-10, atol=1e-12)
    out.backward(torch.tensor(grad_out.transpose(0, 3, 1, 2)))
    np.testing.assert_allclose(grad_x, tx.grad.numpy().transpose(0, 2, 3, 1), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(grad_gamma, tg.grad.numpy(), rtol=1e-10)
    np.testing.assert_allclose(grad_beta, tb.grad.numpy(), rtol=1e-10)

    def forward(z):
        return ops.batchnorm.batch_norm_train(z, gamma, beta, eps=1e-5)[0]

    assert_gradient_matches_finite_differences(forward, x, grad_out, grad_x)


def test_every_activation_has_a_derivative():
    assert set(ops.activations.DERIVATIVES) == set(ops.ACTIVATIONS)


@pytest.mark.parametrize("name", sorted(ops.ACTIVATIONS))
def test_activation_derivative_matches_finite_differences(name):
    # keep away from the kinks (0 and 6) where the derivative is one-sided
    x = RNG.uniform(-8, 8, size=200)
    x = x[(np.abs(x) > 1e-3) & (np.abs(x - 6) > 1e-3) & (np.abs(x + 3) > 1e-3) & (np.abs(x - 3) > 1e-3)]
    f = ops.ACTIVATIONS[name]
    h = 1e-6
    numeric = (f(x + h) - f(x - h)) / (2 * h)
    np.testing.assert_allclose(ops.activations.DERIVATIVES[name](x), numeric, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    ("name", "torch_fn"),
    [("relu6", F.relu6), ("gelu", F.gelu), ("silu", F.silu), ("hardswish", F.hardswish), ("mish", F.mish)],
)
def test_activation_backward_matches_torch(name, torch_fn):
    x = RNG.uniform(-8, 8, size=(4, 50))
    grad_out = RNG.standard_normal(x.shape)
    tx = torch.tensor(x, requires_grad=True)
    torch_fn(tx).backward(torch.tensor(grad_out))
    np.testing.assert_allclose(
        ops.activations.activation_backward(name, x, grad_out), tx.grad.numpy(), rtol=1e-9, atol=1e-12
    )


def test_relu6_passes_gradient_only_inside_zero_to_six():
    grad = ops.activations.activation_backward("relu6", np.array([-2.0, 0.5, 5.9, 6.5]), np.ones(4))
    np.testing.assert_array_equal(grad, [0.0, 1.0, 1.0, 0.0])


def test_linear_backward_matches_torch():
    x, kernel = RNG.standard_normal((3, 7)), RNG.standard_normal((7, 4))
    grad_out = RNG.standard_normal((3, 4))
    got = ops.fully_connected.linear_backward(x, kernel, grad_out)
    tx, tk = torch.tensor(x, requires_grad=True), torch.tensor(kernel, requires_grad=True)
    (tx @ tk).backward(torch.tensor(grad_out))
    np.testing.assert_allclose(got[0], tx.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(got[1], tk.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(got[2], grad_out.sum(axis=0), rtol=1e-12)


def test_concat_backward_splits_and_add_backward_copies():
    parts = ops.merge.concat_channels_backward(np.arange(10.0).reshape(1, 1, 1, 10), [3, 7])
    assert [p.shape[-1] for p in parts] == [3, 7]
    g = np.ones(3)
    assert all(a is g for a in ops.merge.add_backward(g))


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


@pytest.mark.parametrize(("in_hw", "out_hw"), [((4, 5), (9, 11)), ((7, 7), (3, 4)), ((1, 3), (4, 4)), ((5, 5), (5, 5))])
@pytest.mark.parametrize("align_corners", [False, True])
def test_resize_bilinear_backward_matches_loops_and_torch(in_hw, out_hw, align_corners):
    x = RNG.standard_normal((2, *in_hw, 3))
    g = RNG.standard_normal((2, *out_hw, 3))
    back = ops.resize.resize_bilinear_backward(g, x.shape, align_corners=align_corners)
    loops = ops.resize.resize_bilinear_backward_loops(g, x.shape, align_corners=align_corners)
    np.testing.assert_allclose(back, loops, rtol=1e-10, atol=1e-12)
    tx = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
    F.interpolate(tx, size=out_hw, mode="bilinear", align_corners=align_corners).backward(
        torch.tensor(g.transpose(0, 3, 1, 2))
    )
    np.testing.assert_allclose(back, tx.grad.numpy().transpose(0, 2, 3, 1), rtol=1e-10, atol=1e-12)


def test_cross_entropy_backward_matches_loops_torch_and_ignores_ignore_index():
    logits = RNG.standard_normal((6, 5)) * 3
    labels = np.array([0, 4, -100, 2, 2, -100])
    got = ops.losses.cross_entropy_backward(logits, labels)
    np.testing.assert_allclose(got, ops.losses.cross_entropy_backward_loops(logits, labels), rtol=1e-12, atol=1e-15)
    assert not got[2].any() and not got[5].any()
    tl = torch.tensor(logits, requires_grad=True)
    F.cross_entropy(tl, torch.tensor(labels), ignore_index=-100).backward()
    np.testing.assert_allclose(got, tl.grad.numpy(), rtol=1e-10, atol=1e-15)


def test_mse_and_bce_backward_match_torch():
    p, t = RNG.standard_normal((4, 3)), RNG.random((4, 3))
    tp = torch.tensor(p, requires_grad=True)
    F.mse_loss(tp, torch.tensor(t)).backward()
    np.testing.assert_allclose(ops.losses.mse_loss_backward(p, t), tp.grad.numpy(), rtol=1e-12)
    tp = torch.tensor(p, requires_grad=True)
    F.binary_cross_entropy_with_logits(tp, torch.tensor(t)).backward()
    np.testing.assert_allclose(ops.losses.bce_with_logits_backward(p, t), tp.grad.numpy(), rtol=1e-10)


def test_backward_ops_keep_float32():
    x = RNG.standard_normal((1, 6, 6, 4)).astype(np.float32)
    kernel = RNG.standard_normal((3, 3, 4)).astype(np.float32)
    g = RNG.standard_normal((1, 6, 6, 4)).astype(np.float32)
    grads = ops.depthwise.depthwise_conv2d_backward(x, kernel, g, stride=1, dilation=1, padding=Pad2D(1, 1, 1, 1))
    assert all(a.dtype == np.float32 for a in grads)
    assert ops.activations.activation_backward("gelu", x, g).dtype == np.float32
    assert ops.resize.resize_bilinear_backward(g, (1, 3, 3, 4), align_corners=False).dtype == np.float32


def _fd_cases():
    """(name, forward of the differentiated argument, backward giving that argument's gradient, x)."""
    pad = Pad2D(1, 2, 0, 1)
    k_conv = RNG.standard_normal((3, 3, 4, 5))
    k_dw = RNG.standard_normal((3, 3, 4))
    k_pw = RNG.standard_normal((1, 1, 4, 6))
    x = RNG.standard_normal((2, 7, 6, 4))
    mean, var = RNG.standard_normal(4), RNG.random(4) + 0.5
    gamma, beta = RNG.random(4) + 0.5, RNG.standard_normal(4)
    k_lin = RNG.standard_normal((4, 3))
    labels = np.array([0, 2, -100, 1])
    targets = RNG.random((4, 3))
    conv = dict(stride=2, dilation=1, padding=pad)
    dil = dict(stride=1, dilation=2, padding=Pad2D(2, 2, 2, 2))
    return [
        ("pad2d", lambda z: ops.pad2d(z, pad), lambda z, g: ops.padding.pad2d_backward(g, pad), x),
        ("conv2d x", lambda z: ops.conv2d(z, k_conv, **conv),
         lambda z, g: ops.conv.conv2d_backward(z, k_conv, g, **conv)[0], x),
        ("conv2d kernel", lambda k: ops.conv2d(x, k, **dil),
         lambda k, g: ops.conv.conv2d_backward(x, k, g, **dil)[1], k_conv),
        ("depthwise x", lambda z: ops.depthwise_conv2d(z, k_dw, **dil),
         lambda z, g: ops.depthwise.depthwise_conv2d_backward(z, k_dw, g, **dil)[0], x),
        ("depthwise kernel", lambda k: ops.depthwise_conv2d(x, k, **conv),
         lambda k, g: ops.depthwise.depthwise_conv2d_backward(x, k, g, **conv)[1], k_dw),
        ("pointwise x", lambda z: ops.pointwise_conv2d(z, k_pw),
         lambda z, g: ops.conv.pointwise_conv2d_backward(z, k_pw, g)[0], x),
        ("pointwise kernel", lambda k: ops.pointwise_conv2d(x, k),
         lambda k, g: ops.conv.pointwise_conv2d_backward(x, k, g)[1], k_pw),
        ("batch_norm x", lambda z: ops.batch_norm(z, mean, var, gamma, beta, eps=1e-3),
         lambda z, g: ops.batchnorm.batch_norm_backward(z, var, gamma, mean, g, eps=1e-3)[0], x),
        ("batch_norm gamma", lambda c: ops.batch_norm(x, mean, var, c, beta, eps=1e-3),
         lambda c, g: ops.batchnorm.batch_norm_backward(x, var, c, mean, g, eps=1e-3)[1], gamma),
        ("batch_norm_train gamma", lambda c: ops.batchnorm.batch_norm_train(x, c, beta, eps=1e-5)[0],
         lambda c, g: ops.batchnorm.batch_norm_train_backward(x, c, g, eps=1e-5)[1], gamma),
        ("linear x", lambda z: ops.linear(z, k_lin, beta[:3]),
         lambda z, g: ops.fully_connected.linear_backward(z, k_lin, g)[0], RNG.standard_normal((5, 4))),
        ("linear kernel", lambda k: ops.linear(x[0, 0], k, beta[:3]),
         lambda k, g: ops.fully_connected.linear_backward(x[0, 0], k, g)[1], k_lin),
        ("add", lambda z: ops.add(z, x), lambda z, g: ops.merge.add_backward(g)[0], x),
        ("concat", lambda z: ops.concat_channels(z, x),
         lambda z, g: ops.merge.concat_channels_backward(g, [4, 4])[0], x),
        ("global_average_pool", ops.global_average_pool,
         lambda z, g: ops.pooling.global_average_pool_backward(g, z.shape), x),
        ("avg_pool2d", lambda z: ops.avg_pool2d(z, kernel_size=3, stride=2),
         lambda z, g: ops.pooling.avg_pool2d_backward(g, z.shape, kernel_size=3, stride=2), x),
        ("resize_bilinear", lambda z: ops.resize_bilinear(z, (11, 5), align_corners=False),
         lambda z, g: ops.resize.resize_bilinear_backward(g, z.shape, align_corners=False), x),
        ("resize_bilinear align_corners", lambda z: ops.resize_bilinear(z, (3, 13), align_corners=True),
         lambda z, g: ops.resize.resize_bilinear_backward(g, z.shape, align_corners=True), x),
        ("cross_entropy", lambda z: np.asarray(ops.cross_entropy(z, labels)),
         lambda z, g: g * ops.losses.cross_entropy_backward(z, labels), RNG.standard_normal((4, 3))),
        ("mse_loss", lambda z: np.asarray(ops.mse_loss(z, targets)),
         lambda z, g: g * ops.losses.mse_loss_backward(z, targets), RNG.standard_normal((4, 3))),
        ("bce_with_logits", lambda z: np.asarray(ops.bce_with_logits(z, targets)),
         lambda z, g: g * ops.losses.bce_with_logits_backward(z, targets), RNG.standard_normal((4, 3))),
    ]  # fmt: skip


FD_CASES = _fd_cases()


@pytest.mark.parametrize(("name", "forward", "backward_of", "x"), FD_CASES, ids=[c[0] for c in FD_CASES])
def test_every_backward_matches_finite_differences_of_its_forward(name, forward, backward_of, x):
    grad_out = RNG.standard_normal(np.shape(forward(x)))
    assert_gradient_matches_finite_differences(forward, x, grad_out, backward_of(x, grad_out), rtol=1e-6)

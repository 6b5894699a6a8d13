"""The op pages (`npmnv2.ops.PAGE_OF`) and what every one must have: a loop twin or a reason,
its forms on its own page, MACs the loops count, backwards that match finite differences."""

from __future__ import annotations

import inspect
import sys

import numpy as np
import pytest
from op_checks import assert_gradient_matches_finite_differences, twin_of

from npmnv2 import ops
from npmnv2.ops import Pad2D

RNG = np.random.default_rng(363)


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


# The public functions of ops that need no loop twin, and why. Every other one has a twin: the
# `loops` of its page (`ops.PAGE_OF`, tested in test_op_pages.py) or a `<name>_loops` beside it.
NO_TWIN = {
    "symmetric_padding": "one formula, (k - 1) // 2 * d, checked against transformers in test_ops",
    "conv_padding": "picks tf_same_padding or symmetric_padding",
    "activation": "a lookup by name",
    "conv2d_macs": "a formula, checked against the loop twins' multiplication count below",
    "pointwise_conv2d_macs": "likewise",
    "depthwise_conv2d_macs": "likewise",
    "linear_macs": "likewise",
    "bilinear_source": "resize_bilinear's indices and weights; resize_bilinear_loops computes them per pixel",
    "tf_same_padding": "tf_same_padding_search tries every split (below)",
}


def test_every_op_has_a_loop_twin_or_a_reason() -> None:
    functions = inspect.getmembers(ops, inspect.isfunction)
    public = {name: f for name, f in functions if f.__module__.startswith("npmnv2.ops.") and not name.startswith("_")}
    without = {name for name, f in public.items() if twin_of(f) is None} - set(NO_TWIN)
    assert without == set(), "ops without a loop twin (give the page `loops=`, or add `<name>_loops` beside it)"
    assert set(NO_TWIN) <= set(public)


def test_every_loop_twin_lives_on_the_page_of_its_op() -> None:
    """One op, one page: `x_loops` (and `x_backward`, `x_int`) sit in the module that defines `x`."""
    twins = [m for family in ops.FAMILIES for m in inspect.getmembers(family, inspect.isfunction)]
    for name, twin in (m for m in twins if m[0].endswith("_loops")):
        op = getattr(ops, name.removesuffix("_loops"), None)
        if op is not None and inspect.isfunction(op):
            assert twin.__module__ == op.__module__, f"{name} is in {twin.__module__}, {op.__name__} in {op.__module__}"
    for name, f in inspect.getmembers(ops, inspect.isfunction):
        module = sys.modules[f.__module__]
        for form in (f"{name}_backward", f"{name}_int", f"{name}_loops"):
            for family in ops.FAMILIES:
                defined = getattr(family, form, None)
                if family is not module and defined is not None and defined.__module__ == family.__name__:
                    raise AssertionError(f"{form} is in {family.__name__}, but {name} is in {module.__name__}")


def test_mac_formulas_count_what_the_loops_multiply() -> None:
    n, ho, wo, c_in, c_out, k = 2, 3, 4, 5, 6, 3
    assert ops.conv2d_macs((n, ho, wo, c_out), (k, k, c_in, c_out)) == n * ho * wo * c_out * k * k * c_in
    assert ops.depthwise_conv2d_macs((n, ho, wo, c_in), (k, k, c_in)) == n * ho * wo * c_in * k * k
    assert ops.pointwise_conv2d_macs((n, ho, wo, c_out), (1, 1, c_in, c_out)) == n * ho * wo * c_out * c_in
    assert ops.linear_macs((n, 1, 1, c_out), (c_in, c_out)) == n * c_out * c_in

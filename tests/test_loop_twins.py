"""Every op in npmnv2.ops equals its loop twin on its page (`ops.<family>.<name>_loops`), on small float64 arrays."""

from __future__ import annotations

import inspect
import sys

import numpy as np
import pytest

from npmnv2 import ops
from npmnv2.ops import Pad2D

RNG = np.random.default_rng(11)


def close(a, b) -> None:
    np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-12)


def x4(*shape):
    return RNG.normal(size=shape)


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


def twin_of(f):
    """The loop twin of an ops function: its page's, or the `<name>_loops` of its module."""
    page = ops.PAGE_OF.get(f)
    if page is not None and page.loops is not None:
        return page.loops
    return getattr(sys.modules[f.__module__], f"{f.__name__}_loops", None)


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


@pytest.mark.parametrize("op", list(dict.fromkeys(ops.ACTIVATIONS.values())), ids=lambda f: f.__name__)
def test_each_activation_equals_its_scalar_formula(op) -> None:
    """Over a wider range than the traced models reach (test_op_pages), from every activation's page."""
    x = RNG.normal(scale=4, size=(2, 3, 4))
    close(op(x), twin_of(op)(x))


def test_linear_add_concat_pool_equal_their_loops() -> None:
    x, kernel, bias = x4(2, 1, 1, 5), x4(5, 3), x4(3)
    close(ops.linear(x, kernel, bias), ops.fully_connected.linear_loops(x, kernel, bias))
    a, b = x4(1, 3, 3, 2), x4(1, 3, 3, 2)
    close(ops.add(a, b), ops.merge.add_loops(a, b))
    close(ops.concat_channels(a, b, a), ops.merge.concat_channels_loops(a, b, a))
    close(ops.global_average_pool(a), ops.pooling.global_average_pool_loops(a))
    with pytest.raises(ValueError, match="equal shapes"):
        ops.add(a, x4(1, 3, 3, 3))


def test_softmax_and_losses_equal_their_loops() -> None:
    logits, labels = x4(6, 4) * 3, np.array([0, 3, -100, 2, 1, -100])
    close(ops.softmax(logits), ops.probability.softmax_loops(logits))
    close(ops.log_softmax(logits), ops.probability.log_softmax_loops(logits))
    close(ops.cross_entropy(logits, labels), ops.losses.cross_entropy_loops(logits, labels))
    targets = RNG.uniform(size=(6, 4))
    close(ops.mse_loss(logits, targets), ops.losses.mse_loss_loops(logits, targets))
    close(ops.bce_with_logits(logits, targets), ops.losses.bce_with_logits_loops(logits, targets))


def test_layout_conversions_equal_their_loops() -> None:
    x = x4(2, 3, 4, 5)
    close(ops.nchw_to_nhwc(x), ops.layout.nchw_to_nhwc_loops(x))
    close(ops.nhwc_to_nchw(x), ops.layout.nhwc_to_nchw_loops(x))


def test_mac_formulas_count_what_the_loops_multiply() -> None:
    n, ho, wo, c_in, c_out, k = 2, 3, 4, 5, 6, 3
    assert ops.conv2d_macs((n, ho, wo, c_out), (k, k, c_in, c_out)) == n * ho * wo * c_out * k * k * c_in
    assert ops.depthwise_conv2d_macs((n, ho, wo, c_in), (k, k, c_in)) == n * ho * wo * c_in * k * k
    assert ops.pointwise_conv2d_macs((n, ho, wo, c_out), (1, 1, c_in, c_out)) == n * ho * wo * c_out * c_in
    assert ops.linear_macs((n, 1, 1, c_out), (c_in, c_out)) == n * c_out * c_in

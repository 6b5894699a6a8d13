"""`npmnv2.ops.fully_connected`: the linear classifier (float and integer).
Each form against PyTorch where it has a twin there, its loop twin and finite differences."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from op_checks import close, nchw, nhwc, x4

from npmnv2 import ops

RNG = np.random.default_rng(675)


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


def test_linear_backward_matches_torch():
    x, kernel = RNG.standard_normal((3, 7)), RNG.standard_normal((7, 4))
    grad_out = RNG.standard_normal((3, 4))
    got = ops.fully_connected.linear_backward(x, kernel, grad_out)
    tx, tk = torch.tensor(x, requires_grad=True), torch.tensor(kernel, requires_grad=True)
    (tx @ tk).backward(torch.tensor(grad_out))
    np.testing.assert_allclose(got[0], tx.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(got[1], tk.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(got[2], grad_out.sum(axis=0), rtol=1e-12)


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


def test_linear_add_concat_pool_equal_their_loops() -> None:
    x, kernel, bias = x4(2, 1, 1, 5), x4(5, 3), x4(3)
    close(ops.linear(x, kernel, bias), ops.fully_connected.linear_loops(x, kernel, bias))
    a, b = x4(1, 3, 3, 2), x4(1, 3, 3, 2)
    close(ops.add(a, b), ops.merge.add_loops(a, b))
    close(ops.concat_channels(a, b, a), ops.merge.concat_channels_loops(a, b, a))
    close(ops.global_average_pool(a), ops.pooling.global_average_pool_loops(a))
    with pytest.raises(ValueError, match="equal shapes"):
        ops.add(a, x4(1, 3, 3, 3))


def test_the_float64_matmul_refuses_sums_it_could_not_hold_exactly():
    big = np.full((1, 4096), 2**21)
    with pytest.raises(ValueError, match="could exceed 2\\^53"):
        ops.fully_connected.linear_int(big, 0, big, 0, None)

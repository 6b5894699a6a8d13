"""`npmnv2.ops.batchnorm`: batch norm: inference, training, folding.
Each form against PyTorch where it has a twin there, its loop twin and finite differences."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from op_checks import assert_gradient_matches_finite_differences, nchw, nhwc

from npmnv2 import ops

RNG = np.random.default_rng(91)


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

"""`npmnv2.ops.losses`: cross-entropy, MSE, BCE with logits, against PyTorch, its loop twin and finite differences."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from npmnv2 import ops

RNG = np.random.default_rng(293)


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

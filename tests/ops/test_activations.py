"""`npmnv2.ops.activations`: ReLU6 and the activations transformers names.
Each form against PyTorch where it has a twin there, its loop twin and finite differences."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from op_checks import close, twin_of

from npmnv2 import ops

RNG = np.random.default_rng(54)


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


@pytest.mark.parametrize("op", list(dict.fromkeys(ops.ACTIVATIONS.values())), ids=lambda f: f.__name__)
def test_each_activation_equals_its_scalar_formula(op) -> None:
    """Over a wider range than the traced models reach (test_op_pages), from every activation's page."""
    x = RNG.normal(scale=4, size=(2, 3, 4))
    close(op(x), twin_of(op)(x))

"""What the op tests of this folder share: layouts, torch padding, finite differences, and the
loop-twin lookup."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from npmnv2 import ops
from npmnv2.ops import Pad2D

RNG = np.random.default_rng(656)


def nchw(x):
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def nhwc(t):
    return t.numpy().transpose(0, 2, 3, 1)


def torch_pad(pad: Pad2D):
    return (pad.left, pad.right, pad.top, pad.bottom)


SIZES = [(7, 7), (8, 8), (9, 12), (13, 10)]


GEOMETRY = [(1, 1), (2, 1), (1, 2), (1, 4)]  # (stride, dilation)


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


def close(a, b) -> None:
    np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-12)


def x4(*shape):
    return RNG.normal(size=shape)


def twin_of(f):
    """The loop twin of an ops function: its page's, or the `<name>_loops` of its module."""
    page = ops.PAGE_OF.get(f)
    if page is not None and page.loops is not None:
        return page.loops
    return getattr(sys.modules[f.__module__], f"{f.__name__}_loops", None)

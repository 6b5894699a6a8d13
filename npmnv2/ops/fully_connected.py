"""The linear (fully connected) classifier: x @ kernel + bias.

Forms: textbook forward `linear` and its MAC count; backward `linear_backward`; loop twin; the
integer form `linear_int` (TFLite's FULLY_CONNECTED, int32 sums) and its loop twin.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .pages import OpPage
from .quantization import (
    Multiplier,
    describe_integer_op,
    exact_int_matmul,
    multiply_by_quantized_multiplier_single_rounding,
)

# ============================================================================ textbook forward


def linear(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """A fully connected layer on the last axis (transformers' classifier, an nn.Linear).

    Math: out[..., o] = bias[o] + sum_c x[..., c] * kernel[c, o]
    Shapes: x (..., C_in), kernel (C_in, L) (PyTorch's (L, C_in) weight, transposed), bias (L,) -> (..., L).

    >>> linear(np.array([[1.0, 2.0]]), np.array([[1.0], [10.0]]), np.array([0.5]))
    array([[21.5]])
    """
    return x @ kernel + bias  # (..., C_in) @ (C_in, L) -> (..., L)


def linear_macs(output_shape: tuple[int, ...], kernel_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of `linear`: MACs = (number of output vectors) * L * C_in.

    >>> linear_macs((1, 1, 1, 1001), (1280, 1001))
    1281280
    """
    return math.prod(output_shape) * kernel_shape[0]


# ============================================================================ backward


def linear_backward(
    x: np.ndarray, kernel: np.ndarray, grad_out: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of `ops.linear` (out = x @ kernel + bias).

    Shapes: x (..., C_in), kernel (C_in, L), grad_out (..., L) -> like x, like kernel, (L,).
    """
    rows, grads = x.reshape(-1, kernel.shape[0]), grad_out.reshape(-1, kernel.shape[1])
    return (grads @ kernel.T).reshape(x.shape), rows.T @ grads, grads.sum(axis=0)


# ============================================================================ loop twins


def linear_loops(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """out[..., o] = bias[o] + sum_c x[..., c] * kernel[c, o]. The twin of `ops.linear`."""
    out = np.zeros((*x.shape[:-1], kernel.shape[1]), dtype=x.dtype)
    for index in np.ndindex(x.shape[:-1]):
        for o in range(kernel.shape[1]):
            out[(*index, o)] = bias[o] + sum(x[(*index, c)] * kernel[c, o] for c in range(kernel.shape[0]))
    return out


# ============================================================================ integer form


def linear_int(
    x: np.ndarray, x_zero_point: int, weights: np.ndarray, weight_zero_point: int, bias: np.ndarray | None
) -> np.ndarray:
    """acc[n, o] = bias[o] + sum_c (x[n, c] - x_zero_point) * (weights[o, c] - weight_zero_point).

    Shapes: x (N, C) ints, weights (L, C) (TFLite's layout), bias (L,) -> (N, L) int64.
    """
    acc = exact_int_matmul(x.astype(np.int64) - x_zero_point, (weights.astype(np.int64) - weight_zero_point).T)
    return acc if bias is None else acc + bias.astype(np.int64)


# ============================================================================ integer loop twins


def linear_int_requantized(
    x: np.ndarray,
    x_zero_point: int,
    weights: np.ndarray,
    weight_zero_point: int,
    bias: np.ndarray | None,
    m0: int,
    shift: int,
    out_zero_point: int,
    act_range: tuple[int, int],
    *,
    multiply: Multiplier | None = None,
) -> np.ndarray:
    """A whole quantized FULLY_CONNECTED, as TFLite's kernels run it: int32 sums, then requantized
    with the kernel set's rounding rule `multiply`. The reference kernel rounds once (the default,
    `multiply_by_quantized_multiplier_single_rounding`, unlike its convolutions); the optimized one
    rounds twice, the final shift's ties up (`multiply_by_quantized_multiplier_ties_up`).

    Math: acc = bias + (x - x_zero_point) @ (weights - weight_zero_point)^T           (`linear_int`)
          out = clamp(out_zero_point + round(acc * M0 * 2^(shift - 31)), act_min, act_max)
    Shapes: x (N, C), weights (L, C) -> (N, L) int64.
    """
    acc = linear_int(x, x_zero_point, weights, weight_zero_point, bias)
    scaled = (multiply or multiply_by_quantized_multiplier_single_rounding)(acc, m0, shift)
    return np.clip(scaled + out_zero_point, *act_range)


def linear_int_loops(x, x_zero_point, weights, weight_zero_point, bias):
    """acc[n, o] = bias[o] + sum_c (x[n, c] - x_zero_point) * (weights[o, c] - weight_zero_point)."""
    n, c = x.shape
    out = np.zeros((n, weights.shape[0]), np.int64)
    for b in range(n):
        for o in range(weights.shape[0]):
            acc = 0 if bias is None else int(bias[o])
            for k in range(c):
                acc += (int(x[b, k]) - x_zero_point) * (int(weights[o, k]) - weight_zero_point)
            out[b, o] = acc
    return out


# ============================================================================ the page: describe, differentiate, count


def describe_linear(step: Any) -> str:
    return f"linear classifier {step.attrs['c_in']} -> {step.attrs['c_out']}: {step.macs:,} MACs."


def linear_step_backward(step: Any, inputs: list[np.ndarray], grad_out: np.ndarray):
    gx, gk, gb = linear_backward(inputs[0], step.params["kernel"], grad_out)
    return [gx], {"kernel": gk, "bias": gb}


PAGES = (
    OpPage(
        linear,
        describe_linear,
        linear_step_backward,
        linear_backward,
        linear_macs,
        lambda spec, tf_padding: {"c_in": spec.c_in, "c_out": spec.c_out},
        lambda step, inputs: step.op(inputs[0], step.params["kernel"], step.params["bias"]),
        linear_loops,
    ),
)

INTEGER_PAGES = (
    OpPage(
        linear_int_requantized,
        describe_integer_op("int32 sums of (x - x_zero_point) @ (w - w_zero_point) + bias, rounded once"),
    ),
)

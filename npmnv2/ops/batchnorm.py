"""Batch normalization: inference, training statistics, and folding into the convolution before it.

Forms: textbook forward (`batch_norm`, `fold_batch_norm`); backward (`batch_norm_backward` for
inference mode, `batch_norm_train` / `batch_norm_train_backward` with batch statistics); loop
twins. The integer model has no batch norm: TFLite folds it into the conv weights and bias, which
is `fold_batch_norm`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .pages import OpPage

# ============================================================================ textbook forward


def batch_norm(
    x: np.ndarray, mean: np.ndarray, var: np.ndarray, gamma: np.ndarray, beta: np.ndarray, *, eps: float
) -> np.ndarray:
    """Inference-mode batch normalisation with running statistics, per channel (last axis).

    Math: y = (x - mean) / sqrt(var + eps) * gamma + beta
    computed as y = x * scale + shift with scale = gamma / sqrt(var + eps), shift = beta - mean * scale
    (the form PyTorch's CPU kernel uses).

    Shapes: x (..., C); mean, var, gamma, beta (C,) -> (..., C).

    Parameters:
        eps: the layer's own epsilon (transformers: 1e-3 in the backbone, 1e-5 in the DeepLab head).

    >>> batch_norm(np.array([[3.0]]), np.array([1.0]), np.array([4.0]), np.array([2.0]), np.array([0.5]), eps=0.0)
    array([[2.5]])
    """
    scale = (gamma / np.sqrt(var + eps)).astype(x.dtype, copy=False)  # (C,)
    shift = (beta - mean * scale).astype(x.dtype, copy=False)  # (C,)
    return x * scale + shift  # (..., C) * (C,) + (C,)


def fold_batch_norm(
    kernel: np.ndarray,
    bias: np.ndarray | None,
    gamma: np.ndarray,
    beta: np.ndarray,
    mean: np.ndarray,
    var: np.ndarray,
    *,
    eps: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Merge an inference-mode batch norm into the convolution before it.

    Math (per output channel o):
        scale[o]  = gamma[o] / sqrt(var[o] + eps)
        kernel'[..., o] = kernel[..., o] * scale[o]
        bias'[o]  = (bias[o] - mean[o]) * scale[o] + beta[o]        (bias = 0 when the conv has none)
    Why: BN(conv(x)) = (W*x + b - mean) * scale + beta = (scale*W)*x + ((b - mean)*scale + beta):
    conv and BN are both affine, so their composition is one affine map.

    Shapes: kernel (KH, KW, C_in, C_out) or depthwise (KH, KW, C); bias, gamma, beta, mean, var
    (C_out,). Returns (kernel', bias') of the same shapes. Works because the last kernel axis is
    always the output channel.

    >>> k, b = fold_batch_norm(np.ones((1, 1, 1, 1)), None, np.array([2.0]), np.array([1.0]),
    ...                        np.array([0.5]), np.array([4.0]), eps=0.0)
    >>> k.ravel(), b
    (array([1.]), array([0.5]))
    """
    scale = gamma / np.sqrt(var + eps)  # (C_out,)
    conv_bias = np.zeros_like(mean) if bias is None else bias
    return kernel * scale, (conv_bias - mean) * scale + beta


# ============================================================================ backward


def batch_norm_backward(
    x: np.ndarray, var: np.ndarray, gamma: np.ndarray, mean: np.ndarray, grad_out: np.ndarray, *, eps: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of inference-mode `ops.batch_norm`, an affine map per channel.

    Math: y = (x - mean) / sqrt(var + eps) * gamma + beta  =>
        grad_x = grad_out * gamma / sqrt(var + eps)
        grad_gamma = sum grad_out * (x - mean) / sqrt(var + eps),   grad_beta = sum grad_out
    (the running statistics are constants: no gradient flows into them).
    Shapes: x, grad_out (..., C); var, gamma, mean (C,) -> grad_x (..., C), (C,), (C,).
    """
    inv_std = 1 / np.sqrt(var + eps)
    axes = tuple(range(x.ndim - 1))
    grad_x = grad_out * (gamma * inv_std).astype(x.dtype)
    grad_gamma = (grad_out * (x - mean) * inv_std).sum(axis=axes)
    return grad_x, grad_gamma.astype(x.dtype), grad_out.sum(axis=axes)


def batch_norm_train(
    x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, *, eps: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Training-mode batch norm: normalised with the batch's own statistics (for completeness; the
    models run in inference mode). Returns (y, batch mean, batch variance, biased).

    Math: mu = mean over N, H, W; v = mean (x - mu)^2; y = (x - mu) / sqrt(v + eps) * gamma + beta.
    Shapes: x (N, H, W, C), gamma, beta (C,) -> y like x, mu (C,), v (C,).
    """
    axes = tuple(range(x.ndim - 1))
    mu = x.mean(axis=axes)
    v = ((x - mu) ** 2).mean(axis=axes)
    return (x - mu) / np.sqrt(v + eps) * gamma + beta, mu, v


def batch_norm_train_backward(
    x: np.ndarray, gamma: np.ndarray, grad_out: np.ndarray, *, eps: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of `batch_norm_train`: the batch statistics depend on x, so they are differentiated too.

    Math: with x_hat = (x - mu) / sqrt(v + eps) and m = N*H*W values per channel,
        grad_x = gamma / sqrt(v + eps) * (grad_out - mean(grad_out) - x_hat * mean(grad_out * x_hat))
        grad_gamma = sum grad_out * x_hat,   grad_beta = sum grad_out
    """
    axes = tuple(range(x.ndim - 1))
    mu = x.mean(axis=axes)
    inv_std = 1 / np.sqrt(((x - mu) ** 2).mean(axis=axes) + eps)
    x_hat = (x - mu) * inv_std
    grad_x = gamma * inv_std * (grad_out - grad_out.mean(axis=axes) - x_hat * (grad_out * x_hat).mean(axis=axes))
    return grad_x, (grad_out * x_hat).sum(axis=axes), grad_out.sum(axis=axes)


# ============================================================================ loop twins


def batch_norm_loops(
    x: np.ndarray, mean: np.ndarray, var: np.ndarray, gamma: np.ndarray, beta: np.ndarray, *, eps: float
) -> np.ndarray:
    """y = (x - mean) / sqrt(var + eps) * gamma + beta, number by number, as the paper writes it.
    The twin of `ops.batch_norm`."""
    out = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        ch = index[-1]
        out[index] = (x[index] - mean[ch]) / math.sqrt(var[ch] + eps) * gamma[ch] + beta[ch]
    return out


def fold_batch_norm_loops(
    kernel: np.ndarray,
    bias: np.ndarray | None,
    gamma: np.ndarray,
    beta: np.ndarray,
    mean: np.ndarray,
    var: np.ndarray,
    *,
    eps: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Scale each output channel's weights and bias by gamma / sqrt(var + eps), one channel at a time.
    The twin of `ops.fold_batch_norm`."""
    new_kernel = np.zeros_like(kernel)
    new_bias = np.zeros_like(mean)
    for o in range(kernel.shape[-1]):
        scale = gamma[o] / math.sqrt(var[o] + eps)
        new_kernel[..., o] = kernel[..., o] * scale
        new_bias[o] = ((0.0 if bias is None else bias[o]) - mean[o]) * scale + beta[o]
    return new_kernel, new_bias


def batch_norm_backward_loops(x, var, gamma, mean, grad_out, *, eps):
    """Per element: d y / d x = gamma / sqrt(var + eps); d y / d gamma = (x - mean) / sqrt(var + eps)."""
    grad_x = np.zeros_like(x)
    grad_gamma, grad_beta = np.zeros_like(gamma), np.zeros_like(gamma)
    for index in np.ndindex(x.shape):
        ch = index[-1]
        inv_std = 1 / math.sqrt(var[ch] + eps)
        grad_x[index] = grad_out[index] * gamma[ch] * inv_std
        grad_gamma[ch] += grad_out[index] * (x[index] - mean[ch]) * inv_std
        grad_beta[ch] += grad_out[index]
    return grad_x, grad_gamma, grad_beta


# ============================================================================ the page: describe, differentiate


def describe_batch_norm(step: Any) -> str:
    return (
        f"batch norm (inference) over {step.output_shape[1]} channels: (x - running_mean) / "
        f"sqrt(running_var + {step.attrs['eps']:g}) * gamma + beta."
    )


def batch_norm_step_backward(step: Any, inputs: list[np.ndarray], grad_out: np.ndarray):
    p = step.params
    gx, gamma, beta = batch_norm_backward(inputs[0], p["var"], p["gamma"], p["mean"], grad_out, eps=step.attrs["eps"])
    return [gx], {"gamma": gamma, "beta": beta}


PAGES = (
    OpPage(
        batch_norm,
        describe_batch_norm,
        batch_norm_step_backward,
        batch_norm_backward,
        spec_attrs=lambda spec, tf_padding: {"eps": spec.eps},
        forward_step=lambda step, inputs: step.op(
            inputs[0],
            step.params["mean"],
            step.params["var"],
            step.params["gamma"],
            step.params["beta"],
            eps=step.attrs["eps"],
        ),
        loops=batch_norm_loops,
    ),
)

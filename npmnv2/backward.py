"""The backward pass of every op in `npmnv2.ops`: given the gradient of a loss with respect to an
op's output, the gradients with respect to its input and its parameters.

Each function sits in the section of its forward op and has the forward's name with `_backward`.
The math is the chain rule written out: if out = f(x, w), then
    grad_x = (d out / d x)^T grad_out,      grad_w = (d out / d w)^T grad_out
Shapes follow `ops` (NHWC activations, HWIO kernels). Every function has a loop twin in
`npmnv2.reference`, and `tests/test_backward.py` checks both against finite differences in float64.

Sections: padding | im2col + conv | depthwise | batch norm | activations | linear, add, concat |
pooling + resize | losses.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from .ops import Pad2D, bilinear_source, im2col, kernel_tap, pad2d, sigmoid, softmax

# ============================================================================ padding


def pad2d_backward(grad_out: np.ndarray, padding: Pad2D) -> np.ndarray:
    """The gradient of zero padding is a crop: the border's gradient goes nowhere.

    Shapes: grad_out (N, H + top + bottom, W + left + right, C) -> (N, H, W, C).

    >>> pad2d_backward(np.arange(6.0).reshape(1, 2, 3, 1), Pad2D(0, 1, 1, 0))[..., 0]
    array([[[1., 2.]]])
    """
    top, bottom, left, right = padding
    h, w = grad_out.shape[1] - top - bottom, grad_out.shape[2] - left - right
    return grad_out[:, top : top + h, left : left + w]


# ============================================================================ im2col + conv


def col2im(
    cols: np.ndarray, padded_shape: tuple[int, int, int, int], *, kernel_size: int, stride: int, dilation: int = 1
) -> np.ndarray:
    """The adjoint of `ops.im2col`: every column entry is added back to the pixel it was copied from.

    Math: x_pad[n, y*s + i*d, x*s + j*d, c] += cols[(n, y, x), (i, j, c)]   (overlapping windows add up)
    Shapes: cols (N*Ho*Wo, KH*KW*C), padded_shape (N, Hp, Wp, C) -> (N, Hp, Wp, C).

    >>> col2im(np.ones((4, 4)), (1, 3, 3, 1), kernel_size=2, stride=1)[0, :, :, 0]   # how often each pixel is read
    array([[1., 2., 1.],
           [2., 4., 2.],
           [1., 2., 1.]])
    """
    n, hp, wp, c = padded_shape
    k = kernel_size
    ho = (hp - dilation * (k - 1) - 1) // stride + 1
    wo = (wp - dilation * (k - 1) - 1) // stride + 1
    windows = cols.reshape(n, ho, wo, k * k, c)  # (N, Ho, Wo, KH*KW, C)
    x = np.zeros(padded_shape, cols.dtype)
    for i in range(k):
        for j in range(k):
            rows = slice(i * dilation, i * dilation + stride * (ho - 1) + 1, stride)
            columns = slice(j * dilation, j * dilation + stride * (wo - 1) + 1, stride)
            x[:, rows, columns] += windows[:, :, :, i * k + j]  # tap (i, j) back to where it was read
    return x


def conv2d_backward(
    x: np.ndarray, kernel: np.ndarray, grad_out: np.ndarray, *, stride: int, dilation: int, padding: Pad2D
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of `ops.conv2d` (im2col + matrix product).

    Math: with cols = im2col(pad(x)) and out = cols @ K (K the kernel as a (P, C_out) matrix),
        grad_K = cols^T @ grad_out,   grad_cols = grad_out @ K^T,   grad_x = crop(col2im(grad_cols)),
        grad_bias = sum of grad_out over N, Ho, Wo.
    Shapes: x (N, H, W, C_in), kernel (KH, KW, C_in, C_out), grad_out (N, Ho, Wo, C_out)
            -> grad_x (N, H, W, C_in), grad_kernel like kernel, grad_bias (C_out,).
    """
    kh, kw, c_in, c_out = kernel.shape
    padded = pad2d(x, padding)  # (N, Hp, Wp, C_in)
    cols = im2col(padded, kernel_size=(kh, kw), stride=stride, dilation=dilation)  # (N*Ho*Wo, P)
    grads = grad_out.reshape(-1, c_out)  # (N*Ho*Wo, C_out)
    grad_kernel = (cols.T @ grads).reshape(kernel.shape)  # (P, N*Ho*Wo) @ (N*Ho*Wo, C_out)
    grad_cols = grads @ kernel.reshape(-1, c_out).T  # (N*Ho*Wo, C_out) @ (C_out, P)
    grad_x = pad2d_backward(col2im(grad_cols, padded.shape, kernel_size=kh, stride=stride, dilation=dilation), padding)
    return grad_x, grad_kernel, grads.sum(axis=0)


def pointwise_conv2d_backward(
    x: np.ndarray, kernel: np.ndarray, grad_out: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of `ops.pointwise_conv2d` (a 1x1 convolution: one matrix product per pixel).

    Math: out = X @ K  =>  grad_X = grad_out @ K^T,  grad_K = X^T @ grad_out,  grad_bias = sum grad_out.
    Shapes: x (N, H, W, C_in), kernel (1, 1, C_in, C_out), grad_out (N, H, W, C_out).
    """
    c_in, c_out = kernel.shape[2:]
    rows, grads = x.reshape(-1, c_in), grad_out.reshape(-1, c_out)  # (N*H*W, C_in), (N*H*W, C_out)
    grad_x = (grads @ kernel[0, 0].T).reshape(x.shape)  # (N*H*W, C_out) @ (C_out, C_in)
    grad_kernel = (rows.T @ grads)[None, None]  # (C_in, N*H*W) @ (N*H*W, C_out) -> (1, 1, C_in, C_out)
    return grad_x, grad_kernel, grads.sum(axis=0)


# ============================================================================ depthwise


def depthwise_conv2d_backward(
    x: np.ndarray, kernel: np.ndarray, grad_out: np.ndarray, *, stride: int, dilation: int, padding: Pad2D
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of `ops.depthwise_conv2d`, tap by tap: what the forward read, the backward writes.

    Math: out = sum_{i, j} tap_ij(x_pad) * k[i, j]  =>
        grad_k[i, j, c] = sum_{n, y, x} tap_ij(x_pad)[n, y, x, c] * grad_out[n, y, x, c]
        grad_x_pad[n, y*s + i*d, x*s + j*d, c] += grad_out[n, y, x, c] * k[i, j, c]; grad_x = crop(grad_x_pad)
    Shapes: x (N, H, W, C), kernel (KH, KW, C), grad_out (N, Ho, Wo, C) -> like x, like kernel, (C,).
    """
    kh, kw, c = kernel.shape
    padded = pad2d(x, padding)  # (N, Hp, Wp, C)
    ho, wo = grad_out.shape[1:3]
    grad_padded = np.zeros(padded.shape, grad_out.dtype)
    grad_kernel = np.zeros(kernel.shape, grad_out.dtype)
    for i in range(kh):
        for j in range(kw):
            tap = kernel_tap(padded, i, j, out_size=(ho, wo), stride=stride, dilation=dilation)  # (N, Ho, Wo, C)
            grad_kernel[i, j] = (tap * grad_out).sum(axis=(0, 1, 2))
            rows = slice(i * dilation, i * dilation + stride * (ho - 1) + 1, stride)
            columns = slice(j * dilation, j * dilation + stride * (wo - 1) + 1, stride)
            grad_padded[:, rows, columns] += grad_out * kernel[i, j]
    return pad2d_backward(grad_padded, padding), grad_kernel, grad_out.sum(axis=(0, 1, 2))


# ============================================================================ batch norm


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


# ============================================================================ activations

# The derivative of each activation, as a function of its input x (the names of `ops.ACTIVATIONS`).
_SQRT_2_OVER_PI = math.sqrt(2 / math.pi)
_erf = np.frompyfunc(math.erf, 1, 1)


def _gelu_derivative(x: np.ndarray) -> np.ndarray:
    cdf = 0.5 * (1 + _erf(x / math.sqrt(2)).astype(x.dtype))
    return (cdf + x * np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)).astype(x.dtype)


def _gelu_tanh_derivative(x: np.ndarray) -> np.ndarray:
    inner = _SQRT_2_OVER_PI * (x + 0.044715 * x**3)
    t = np.tanh(inner)
    return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * _SQRT_2_OVER_PI * (1 + 3 * 0.044715 * x * x)


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0, x).astype(x.dtype, copy=False)


DERIVATIVES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "relu6": lambda x: ((x > 0) & (x < 6)).astype(x.dtype),  # 0 where ReLU6 clips: no gradient passes
    "relu": lambda x: (x > 0).astype(x.dtype),
    "gelu": _gelu_derivative,
    "gelu_new": _gelu_tanh_derivative,
    "gelu_pytorch_tanh": _gelu_tanh_derivative,
    "gelu_fast": _gelu_tanh_derivative,
    "quick_gelu": lambda x: sigmoid(1.702 * x) * (1 + 1.702 * x * (1 - sigmoid(1.702 * x))),
    "silu": lambda x: sigmoid(x) * (1 + x * (1 - sigmoid(x))),
    "swish": lambda x: sigmoid(x) * (1 + x * (1 - sigmoid(x))),
    "tanh": lambda x: 1 - np.tanh(x) ** 2,
    "sigmoid": lambda x: sigmoid(x) * (1 - sigmoid(x)),
    "hardswish": lambda x: np.where(x < -3, 0, np.where(x > 3, 1, (2 * x + 3) / 6)).astype(x.dtype),
    "leaky_relu": lambda x: np.where(x >= 0, 1, 0.01).astype(x.dtype),
    "mish": lambda x: np.tanh(_softplus(x)) + x * sigmoid(x) * (1 - np.tanh(_softplus(x)) ** 2),
    "linear": lambda x: np.ones_like(x),
}


def activation_backward(name: str, x: np.ndarray, grad_out: np.ndarray) -> np.ndarray:
    """grad_x = grad_out * f'(x) for activation `name` (x is the activation's input).

    For ReLU6 f'(x) is 1 on (0, 6) and 0 outside: where ReLU6 clips, the gradient stops.

    >>> activation_backward("relu6", np.array([-1.0, 3.0, 7.0]), np.ones(3))
    array([0., 1., 0.])
    """
    return (grad_out * DERIVATIVES[name](x)).astype(grad_out.dtype, copy=False)


# ============================================================================ linear, add, concat


def linear_backward(
    x: np.ndarray, kernel: np.ndarray, grad_out: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of `ops.linear` (out = x @ kernel + bias).

    Shapes: x (..., C_in), kernel (C_in, L), grad_out (..., L) -> like x, like kernel, (L,).
    """
    rows, grads = x.reshape(-1, kernel.shape[0]), grad_out.reshape(-1, kernel.shape[1])
    return (grads @ kernel.T).reshape(x.shape), rows.T @ grads, grads.sum(axis=0)


def add_backward(grad_out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The residual add passes its gradient unchanged to both inputs: (grad_out, grad_out)."""
    return grad_out, grad_out


def concat_channels_backward(grad_out: np.ndarray, sizes: list[int]) -> list[np.ndarray]:
    """The gradient of a channel concatenation is split back into the parts' channel counts."""
    return np.split(grad_out, np.cumsum(sizes)[:-1], axis=-1)


# ============================================================================ pooling + resize


def global_average_pool_backward(grad_out: np.ndarray, input_shape: tuple[int, ...]) -> np.ndarray:
    """Each of the H*W pixels receives 1/(H*W) of its channel's gradient.

    Shapes: grad_out (N, C) -> (N, H, W, C).
    """
    n, h, w, c = input_shape
    return np.broadcast_to(grad_out[:, None, None, :] / grad_out.dtype.type(h * w), input_shape).copy()


def avg_pool2d_backward(grad_out: np.ndarray, input_shape: tuple[int, ...], *, kernel_size: int, stride: int = 1):
    """Each output's gradient is shared equally by the KH*KW inputs of its window (VALID pooling).

    Shapes: grad_out (N, Ho, Wo, C) -> input_shape (N, H, W, C).
    """
    k = kernel_size
    ho, wo = grad_out.shape[1:3]
    grad_x = np.zeros(input_shape, grad_out.dtype)
    share = grad_out / grad_out.dtype.type(k * k)
    for i in range(k):
        for j in range(k):
            grad_x[:, i : i + stride * (ho - 1) + 1 : stride, j : j + stride * (wo - 1) + 1 : stride] += share
    return grad_x


def resize_bilinear_backward(grad_out: np.ndarray, input_shape: tuple[int, ...], *, align_corners: bool) -> np.ndarray:
    """The adjoint of `ops.resize_bilinear`: each output's gradient goes back to its four source
    pixels, with the same weights (overlapping contributions add up). Separable: W first, then H.

    Shapes: grad_out (N, Ho, Wo, C) -> input_shape (N, H, W, C).
    """
    n, h, w, c = input_shape
    ho, wo = grad_out.shape[1:3]
    x0, x1, b = bilinear_source(wo, w, align_corners=align_corners, dtype=grad_out.dtype)
    rows = np.zeros((n, ho, w, c), grad_out.dtype)  # the gradient of the H-resized rows
    np.add.at(rows, (slice(None), slice(None), x0), grad_out * (1 - b)[:, None])
    np.add.at(rows, (slice(None), slice(None), x1), grad_out * b[:, None])
    y0, y1, a = bilinear_source(ho, h, align_corners=align_corners, dtype=grad_out.dtype)
    grad_x = np.zeros(input_shape, grad_out.dtype)
    np.add.at(grad_x, (slice(None), y0), rows * (1 - a)[:, None, None])
    np.add.at(grad_x, (slice(None), y1), rows * a[:, None, None])
    return grad_x


# ============================================================================ losses


def cross_entropy_backward(logits: np.ndarray, labels: np.ndarray, *, ignore_index: int = -100) -> np.ndarray:
    """The gradient of `ops.cross_entropy` (the mean over the rows not ignored) with respect to the logits.

    Math: grad[k] = (softmax(logits[k]) - onehot(labels[k])) / |V| for kept rows k, 0 for ignored ones.
    Shapes: logits (K, L), labels (K,) -> (K, L).
    """
    keep = labels != ignore_index
    grad = softmax(logits, axis=-1)
    grad[np.arange(len(labels))[keep], labels[keep].astype(np.int64)] -= 1
    grad[~keep] = 0
    return (grad / logits.dtype.type(max(int(keep.sum()), 1))).astype(logits.dtype)


def mse_loss_backward(predictions: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """d/dp mean((p - t)^2) = 2 (p - t) / size."""
    return (2 * (predictions - targets) / predictions.dtype.type(predictions.size)).astype(predictions.dtype)


def bce_with_logits_backward(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """d/dz mean(BCE(sigmoid(z), t)) = (sigmoid(z) - t) / size."""
    return ((sigmoid(logits) - targets) / logits.dtype.type(logits.size)).astype(logits.dtype)

"""Activation functions (ReLU6 and the others transformers names), their derivatives and loop twins.

Forms: the functions and `activation(name)`; backward (`activation_backward(name, x, g)`, with
the derivative of each in `DERIVATIVES`); loop twins (`activation_loops`, one Python float at a
time). The integer model has no activation op: a fused ReLU6 is the clamp range of the layer's
requantized output (`npmnv2.ops.quantization.activation_range`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

from .pages import OpPage

# ============================================================================ textbook forward


def relu6(x: np.ndarray) -> np.ndarray:
    """min(max(x, 0), 6): ReLU capped at 6, robust under low-precision arithmetic (MobileNetV1/V2)."""
    return np.clip(x, 0, 6)


def relu(x: np.ndarray) -> np.ndarray:
    """max(x, 0)."""
    return np.maximum(x, 0)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)), written to avoid overflow: exp(-|x|) never exceeds 1.

    >>> sigmoid(np.array([0.0]))
    array([0.5])
    """
    z = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + z), z / (1 + z)).astype(x.dtype, copy=False)


def tanh(x: np.ndarray) -> np.ndarray:
    """tanh(x)."""
    return np.tanh(x)


def silu(x: np.ndarray) -> np.ndarray:
    """x * sigmoid(x), a.k.a. swish."""
    return x * sigmoid(x)


_erf = np.frompyfunc(math.erf, 1, 1)


def gelu(x: np.ndarray) -> np.ndarray:
    """Exact GELU: 0.5 * x * (1 + erf(x / sqrt(2))).

    NumPy has no erf ufunc, so this evaluates Python's correctly rounded `math.erf` per
    element: exact, but slow -- fine for experiments with `hidden_act="gelu"`.
    """
    return (0.5 * x * (1 + _erf(x / math.sqrt(2)).astype(x.dtype))).astype(x.dtype, copy=False)


def gelu_tanh(x: np.ndarray) -> np.ndarray:
    """Tanh-approximated GELU: 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x^3)))."""
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


def quick_gelu(x: np.ndarray) -> np.ndarray:
    """x * sigmoid(1.702 * x)."""
    return x * sigmoid(1.702 * x)


def hardswish(x: np.ndarray) -> np.ndarray:
    """x * relu6(x + 3) / 6 (MobileNetV3)."""
    return x * np.clip(x + 3, 0, 6) / 6


def leaky_relu(x: np.ndarray) -> np.ndarray:
    """x if x >= 0 else 0.01 * x (PyTorch's default slope)."""
    return np.where(x >= 0, x, x * x.dtype.type(0.01))


def mish(x: np.ndarray) -> np.ndarray:
    """x * tanh(softplus(x)), softplus(x) = log(1 + exp(x)) computed stably."""
    return x * np.tanh(np.logaddexp(0, x).astype(x.dtype, copy=False))


def identity(x: np.ndarray) -> np.ndarray:
    """x unchanged (transformers' "linear")."""
    return x


ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    # the names transformers' ACT2FN gives these functions
    "relu6": relu6,
    "relu": relu,
    "gelu": gelu,
    "gelu_new": gelu_tanh,
    "gelu_pytorch_tanh": gelu_tanh,
    "gelu_fast": gelu_tanh,
    "quick_gelu": quick_gelu,
    "silu": silu,
    "swish": silu,
    "tanh": tanh,
    "sigmoid": sigmoid,
    "hardswish": hardswish,
    "leaky_relu": leaky_relu,
    "mish": mish,
    "linear": identity,
}


def activation(name: str) -> Callable[[np.ndarray], np.ndarray]:
    """The activation function transformers calls `name` (see ACTIVATIONS for the list)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; supported: {', '.join(sorted(ACTIVATIONS))}.")
    return ACTIVATIONS[name]


# ============================================================================ backward

# The derivative of each activation, as a function of its input x (the names of `ops.ACTIVATIONS`).
_SQRT_2_OVER_PI = math.sqrt(2 / math.pi)


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


# ============================================================================ loop twins

# One formula per activation, on a Python float.
SCALAR_ACTIVATIONS = {
    "relu6": lambda v: min(max(v, 0.0), 6.0),
    "relu": lambda v: max(v, 0.0),
    "sigmoid": lambda v: 1 / (1 + math.exp(-v)) if v >= 0 else math.exp(v) / (1 + math.exp(v)),
    "tanh": math.tanh,
    "silu": lambda v: v * SCALAR_ACTIVATIONS["sigmoid"](v),
    "gelu": lambda v: 0.5 * v * (1 + math.erf(v / math.sqrt(2))),
    "gelu_tanh": lambda v: 0.5 * v * (1 + math.tanh(math.sqrt(2 / math.pi) * (v + 0.044715 * v**3))),
    "quick_gelu": lambda v: v * SCALAR_ACTIVATIONS["sigmoid"](1.702 * v),
    "hardswish": lambda v: v * min(max(v + 3, 0.0), 6.0) / 6,
    "leaky_relu": lambda v: v if v >= 0 else 0.01 * v,
    "mish": lambda v: v * math.tanh(math.log1p(math.exp(-abs(v))) + max(v, 0.0)),
    "identity": lambda v: v,
}


def activation_loops(name: str, x: np.ndarray) -> np.ndarray:
    """Apply the activation (its `ops` function name: "relu6", "gelu_tanh", ...) to one number at a time.
    The twin of every activation in `ops`."""
    f = SCALAR_ACTIVATIONS[name]
    out = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        out[index] = f(float(x[index]))
    return out


# ============================================================================ the pages: describe, differentiate


def describe_activation(step: Any) -> str:
    return f"{step.attrs['function']} applied elementwise to a {step.output_shape} tensor."


def activation_step_backward(step: Any, inputs: list[np.ndarray], grad_out: np.ndarray):
    return [activation_backward(step.attrs["function"], inputs[0], grad_out)], {}


PAGES = tuple(
    OpPage(
        function,
        describe_activation,
        activation_step_backward,
        activation_backward,
        spec_attrs=lambda spec, tf_padding: {"function": spec.activation},
        forward_step=lambda step, inputs: step.op(inputs[0]),
        loops=partial(activation_loops, function.__name__),
    )
    for function in dict.fromkeys(ACTIVATIONS.values())
)

"""The losses transformers' heads use: cross-entropy, mean squared error, BCE with logits.

Forms: textbook forward; backward (the gradient with respect to the logits); loop twins.
"""

from __future__ import annotations

import math

import numpy as np

from .activations import SCALAR_ACTIVATIONS, sigmoid
from .probability import log_softmax, log_softmax_loops, softmax, softmax_loops

# ============================================================================ textbook forward


def cross_entropy(logits: np.ndarray, labels: np.ndarray, *, ignore_index: int = -100) -> np.ndarray:
    """Mean negative log-likelihood of the true class, skipping `ignore_index` (torch's default reduction).

    Math: loss = -1/|V| * sum_{k in V} log_softmax(logits[k])[labels[k]],  V = {k : labels[k] != ignore_index}
    (NaN when every label is ignored, as in PyTorch).

    Shapes: logits (K, L) with classes on the last axis, labels (K,) ints -> scalar.

    >>> float(cross_entropy(np.array([[0.0, 0.0], [5.0, 5.0]]), np.array([1, -100])))
    0.6931471805599453
    """
    keep = labels != ignore_index  # (K,)
    log_p = log_softmax(logits[keep], axis=-1)  # (|V|, L)
    picked = np.take_along_axis(log_p, labels[keep][:, None].astype(np.int64), axis=-1)  # (|V|, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return -picked.sum(dtype=logits.dtype) / logits.dtype.type(keep.sum())


def mse_loss(predictions: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """mean((predictions - targets)^2) (regression, `num_labels == 1`).

    >>> float(mse_loss(np.array([1.0, 3.0]), np.array([0.0, 0.0])))
    5.0
    """
    return np.mean((predictions - targets) ** 2, dtype=predictions.dtype)


def bce_with_logits(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Binary cross-entropy on logits, averaged over every element (multi-label classification).

    Math: mean(max(z, 0) - z*t + log(1 + exp(-|z|)))   -- the overflow-free form of
          -[t log sigmoid(z) + (1 - t) log(1 - sigmoid(z))].

    >>> round(float(bce_with_logits(np.array([0.0]), np.array([1.0]))), 6)
    0.693147
    """
    z = logits
    return np.mean(np.maximum(z, 0) - z * targets + np.log1p(np.exp(-np.abs(z))), dtype=z.dtype)


# ============================================================================ backward


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


# ============================================================================ loop twins


def cross_entropy_loops(logits: np.ndarray, labels: np.ndarray, *, ignore_index: int = -100) -> float:
    """The mean of -log softmax(logits[k])[labels[k]] over the rows not ignored. The twin of
    `ops.cross_entropy`."""
    kept = [k for k in range(len(labels)) if labels[k] != ignore_index]
    losses = [-log_softmax_loops(logits[k : k + 1])[0, int(labels[k])] for k in kept]
    return sum(losses) / len(losses) if losses else math.nan


def mse_loss_loops(predictions: np.ndarray, targets: np.ndarray) -> float:
    """The mean of (p - t)^2 over every element. The twin of `ops.mse_loss`."""
    diffs = [(float(p) - float(t)) ** 2 for p, t in zip(predictions.ravel(), targets.ravel(), strict=True)]
    return sum(diffs) / len(diffs)


def bce_with_logits_loops(logits: np.ndarray, targets: np.ndarray) -> float:
    """The mean of -[t log sigmoid(z) + (1 - t) log(1 - sigmoid(z))]. The twin of `ops.bce_with_logits`."""
    total = 0.0
    for z, t in zip(logits.ravel(), targets.ravel(), strict=True):
        p = SCALAR_ACTIVATIONS["sigmoid"](float(z))
        total += -(t * math.log(p) + (1 - t) * math.log1p(-p))
    return total / logits.size


def cross_entropy_backward_loops(logits, labels, *, ignore_index=-100):
    """Per kept row: softmax minus the one-hot label, divided by the number of kept rows."""
    kept = [k for k in range(len(labels)) if labels[k] != ignore_index]
    grad = np.zeros_like(logits)
    for k in kept:
        row = softmax_loops(logits[k : k + 1])[0]
        row[int(labels[k])] -= 1
        grad[k] = row / len(kept)
    return grad

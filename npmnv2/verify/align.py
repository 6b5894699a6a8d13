"""Matching a peer's tensors to npmnv2's steps by structure: execution order, shapes, op kinds and values.

The peer's tensors and npmnv2's steps are two sequences in execution order. A peer may expose fewer
tensors (conv, batch norm and activation fused into one) or more (padding, reshapes); it may use
NCHW or NHWC. `align` finds the best monotone matching (dynamic programming, as in sequence
alignment): a pair can match only when the peer's tensor has the step's shape in some layout, and
its score is the correlation of the two tensors plus a bonus when the peer names a compatible op
kind. No name is ever read.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ops import nhwc_to_nchw
from ..trace import Step
from .peers import PeerRun, PeerTensor

# Which npmnv2 step kinds a peer's op kind can stand for (fused ops stand for the last op of the fusion).
COMPATIBLE = {
    "conv": {"convolution", "batch_norm", "activation"},
    "depthwise": {"convolution", "batch_norm", "activation"},
    "batch_norm": {"batch_norm", "activation"},
    "activation": {"activation"},
    "add": {"residual_add"},
    "pool": {"pooling"},
    "linear": {"linear"},
    "softmax": {"linear"},
    "resize": {"resize"},
}
MIN_SCORE = 0.3  # a pair whose correlation (+ kind bonus) is below this is never matched
SAMPLE = 4096


@dataclass
class Match:
    """Peer tensor `peer` stands for step `step`; `value` is the peer's tensor in the step's public
    layout (NCHW, (N, L) logits), float64; `layout` how the peer laid it out; `softmax`: the peer's
    tensor is the softmax of the step's output (Keras's predictions layer)."""

    step: Step
    peer: PeerTensor
    value: np.ndarray
    layout: str
    softmax: bool = False
    score: float = 0.0


def in_our_layout(array: np.ndarray, shape: tuple[int, ...], preferred: str) -> tuple[np.ndarray, str] | None:
    """The peer's array in npmnv2's public layout of `shape`, and the layout it was in; None if no
    layout fits."""
    a = np.asarray(array)
    candidates = []
    if a.ndim == 4:
        candidates = [("NCHW", a), ("NHWC", nhwc_to_nchw(a))]
        if preferred == "NHWC":
            candidates.reverse()
    elif a.ndim == 2:
        candidates = [("(N, C)", a.reshape((*a.shape, 1, 1)) if len(shape) == 4 else a)]
    for layout, value in candidates:
        if value.shape == tuple(shape):
            return value.astype(np.float64), layout
    if a.ndim == 4 and len(shape) == 2 and a.shape[2:] == (1, 1) and a.shape[:2] == tuple(shape):
        return a[:, :, 0, 0].astype(np.float64), "NCHW"
    return None


def _corr(a: np.ndarray, b: np.ndarray, index: np.ndarray) -> float:
    x, y = a.ravel()[index], b.ravel()[index]
    x, y = x - x.mean(), y - y.mean()
    norm = np.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / norm) if norm > 0 else (1.0 if np.allclose(a, b) else 0.0)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def execution_order(steps: list[Step], run: PeerRun) -> list[PeerTensor]:
    """The peer's tensors in execution order when their own order is not it (a folder of .npy files,
    read in natural name order): each goes where the step its values fit best runs (the highest
    correlation among steps of its shape); tensors that fit no step keep their place at the end."""
    rng = np.random.default_rng(0)
    placed = []
    for k, t in enumerate(run.tensors):
        best, best_score = None, MIN_SCORE
        for i, step in enumerate(steps):
            if step.output is None:
                continue
            fitted = in_our_layout(t.array, tuple(step.output.shape), run.layout)
            if fitted is None:
                continue
            index = rng.integers(0, fitted[0].size, min(SAMPLE, fitted[0].size))
            score = _corr(step.output.astype(np.float64), fitted[0], index)
            if score > best_score + 1e-9:
                best, best_score = i, score
        placed.append((best if best is not None else len(steps), k, t))
    return [t for _, _, t in sorted(placed, key=lambda p: (p[0], p[1]))]


def align(steps: list[Step], run: PeerRun) -> tuple[list[Match], list[PeerTensor]]:
    """The matched pairs in execution order, and the peer's tensors left unmatched."""
    rng = np.random.default_rng(0)
    tensors = _without_repeats(run.tensors)
    n, m = len(steps), len(tensors)
    kinds = [_allowed_kinds(tensors, j) for j in range(m)]
    score = np.full((n, m), -np.inf)
    cache: dict[tuple[int, int], Match] = {}
    ours_of: dict[int, np.ndarray] = {}
    samples: dict[tuple[int, ...], np.ndarray] = {}  # one fixed sample of positions per shape
    for j, peer in enumerate(tensors):
        fitted_by_shape: dict[tuple[int, ...], tuple[np.ndarray, str] | None] = {}
        for i, step in enumerate(steps):
            if step.output is None:
                continue
            shape = tuple(step.output.shape)
            if shape not in fitted_by_shape:
                fitted_by_shape[shape] = in_our_layout(peer.array, shape, run.layout)
            fitted = fitted_by_shape[shape]
            if fitted is None:
                continue
            value, layout = fitted
            if i not in ours_of:
                ours_of[i] = step.output.astype(np.float64)
            ours = ours_of[i]
            softmax = bool(peer.detail.get("softmax")) and step.kind == "linear"
            if softmax:
                ours = _softmax(ours)
            if shape not in samples:
                samples[shape] = rng.integers(0, value.size, min(SAMPLE, value.size))
            corr = _corr(ours, value, samples[shape])
            if peer.kind is None:  # saved tensors: values decide
                s = corr
            elif peer.kind == "other":
                s = corr - 0.1  # an op of unknown kind matches only when nothing named fits better
            elif step.kind in kinds[j]:  # structure decides, values break ties (they can be far off after a bug)
                s = 1.0 + 0.2 * corr
            else:
                s = -np.inf
            if s >= MIN_SCORE:
                score[i, j] = s
                cache[i, j] = Match(step, peer, value, layout, softmax, s)
    # best monotone matching: total[i][j] = best over the first i steps and first j peer tensors
    total = np.zeros((n + 1, m + 1))
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            take = total[i - 1, j - 1] + score[i - 1, j - 1] if np.isfinite(score[i - 1, j - 1]) else -np.inf
            total[i, j] = max(total[i - 1, j], total[i, j - 1], take)
    matches, used = [], set()
    i, j = n, m
    while i > 0 and j > 0:
        if np.isfinite(score[i - 1, j - 1]) and total[i, j] == total[i - 1, j - 1] + score[i - 1, j - 1]:
            matches.append(cache[i - 1, j - 1])
            used.add(j - 1)
            i, j = i - 1, j - 1
        elif total[i, j] == total[i - 1, j]:
            i -= 1
        else:
            j -= 1
    matches.reverse()
    unmatched = [t for k, t in enumerate(tensors) if k not in used]
    return matches, unmatched


def _allowed_kinds(tensors: list[PeerTensor], j: int) -> set[str]:
    """npmnv2's step kinds peer tensor j may stand for, from what follows it in the peer: a conv
    followed by a batch norm is the bare convolution; one that is not has its batch norm folded in
    (and its activation too, when no activation follows), or, as the port's last weight layer, may
    be a bare conv (DeepLabV3's classifier); likewise a batch norm."""
    kind = tensors[j].kind
    allowed = set(COMPATIBLE.get(kind, set()))
    shape = tensors[j].array.shape
    # what follows it, past tensors of unknown kind (an exporter's Mul half of a batch norm, a Pad)
    following = next((t.kind for t in tensors[j + 1 :] if t.array.shape == shape and t.kind != "other"), None)
    if kind in ("conv", "depthwise"):
        if following == "batch_norm":
            allowed = {"convolution"}
        elif following == "activation":
            allowed = {"batch_norm"}
        else:
            allowed = {"batch_norm", "activation"}
            if not any(t.kind in ("conv", "depthwise", "linear") for t in tensors[j + 1 :]):
                allowed.add("convolution")  # the last weight layer: DeepLabV3's classifier, a bare conv with a bias
    elif kind == "batch_norm":
        allowed = {"batch_norm"} if following == "activation" else {"batch_norm", "activation"}
    return allowed


def _without_repeats(tensors: list[PeerTensor]) -> list[PeerTensor]:
    """The peer's tensors without those of unknown kind that repeat the last tensor of their shape
    (a zero Pad, an Identity, a no-op Reshape): they would compete with the real op for its step."""
    kept: list[PeerTensor] = []
    last_of_shape: dict[tuple[int, ...], np.ndarray] = {}
    for t in tensors:
        previous = last_of_shape.get(t.array.shape)
        if t.kind in (None, "other") and previous is not None and np.array_equal(previous, t.array):
            continue
        kept.append(t)
        last_of_shape[t.array.shape] = t.array
    return kept

"""Are the port's weights the ones it should have? (`check(..., reference=...)`, `--reference`)

`check` reads the port's weights by structure and asks whether the port computes what they say. A
weight-conversion bug (a depthwise kernel stored with H and W swapped, a layer's weights copied
from another, batch-norm statistics swapped) computes faithfully with the wrong weights, so it can
only be seen against the weights the port was converted from: a reference checkpoint.

Every layer is compared folded: the batch norm multiplied into the kernel and bias under the spec's
eps, W' = W * gamma / sqrt(var + eps) and b' = beta + (b - mean) * gamma / sqrt(var + eps), so that a
port that folded its batch norms (ONNX, TFLite) and one that kept them compare alike. A layer
differs when its relative RMS difference exceeds the tolerance: float32 rounding for a float port,
8-bit quantization for a quantized one. At the first layer that differs, each catalogued
conversion bug is applied to the reference; the one that gives the port's weights is the cause.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..layer_kinds import layer_kind

FLOAT_TOLERANCE = 1e-5  # relative RMS: float32 rounding of a conversion
QUANTIZED_TOLERANCE = 0.05  # relative RMS: an 8-bit kernel differs from its float source by a few percent
EPS_CANDIDATES = (1e-5, 1e-3, 1e-4, 1e-6, 0.0)  # PyTorch's, Keras's and TF-Slim's, others seen in ports
EXPLAINED = 0.05  # a cause explains the port when it leaves less than this share of the difference


@dataclass
class WeightRow:
    """One weight layer: npmnv2's name, the port's, the relative RMS difference of its folded
    weights from the reference's, and whether that is within the tolerance."""

    name: str
    peer_name: str
    difference: float
    ok: bool


@dataclass
class WeightCause:
    cause: str
    detail: str
    residual: float


def folded(params: dict[str, np.ndarray], eps: float | None) -> tuple[np.ndarray, np.ndarray]:
    """(kernel, bias) of a layer with its batch norm multiplied in (npmnv2's layouts; the output
    channel is the last axis of every kernel)."""
    kernel = np.asarray(params["kernel"], np.float64)
    bias = np.asarray(params.get("bias", np.zeros(kernel.shape[-1])), np.float64)
    if eps is None or "gamma" not in params:
        return kernel, bias
    scale = np.asarray(params["gamma"], np.float64) / np.sqrt(np.asarray(params["var"], np.float64) + eps)
    return kernel * scale, np.asarray(params["beta"], np.float64) + (bias - np.asarray(params["mean"])) * scale


def _relative(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        return float("inf")
    scale = float(np.sqrt(np.mean(np.square(b)))) or 1.0
    return float(np.sqrt(np.mean(np.square(a - b)))) / scale


def _flat(kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    return np.concatenate([kernel.ravel(), bias.ravel()])


def compare_weights(
    port: Any, reference: Any, *, quantized: bool = False, names: dict[str, str] | None = None
) -> tuple[list[WeightRow], str | None, list[WeightCause]]:
    """Rows for every weight layer of the spec, the first layer that differs from the reference
    (or None), and the catalogued causes that reproduce it, best first. names: npmnv2's layer ->
    the port's, for the layers read from the port; when given, only those are compared (an export
    leaves out a layer its task never computes: DeepLabV3's unused `conv_1x1`)."""
    tolerance = QUANTIZED_TOLERANCE if quantized else FLOAT_TOLERANCE
    specs = [s for s in port.specs if s.name in names] if names else port.specs
    names = names or {}
    ref_specs = {s.name: s for s in reference.specs}
    rows, first = [], None
    for spec in specs:
        if spec.name not in ref_specs:
            rows.append(WeightRow(spec.name, names.get(spec.name, ""), float("inf"), False))
            first = first or spec.name
            continue
        ours = folded(port.params[spec.name], spec.eps)
        theirs = folded(reference.params[spec.name], ref_specs[spec.name].eps)
        difference = _relative(_flat(*ours), _flat(*theirs)) if ours[0].shape == theirs[0].shape else float("inf")
        rows.append(WeightRow(spec.name, names.get(spec.name, ""), difference, difference <= tolerance))
        if difference > tolerance and first is None:
            first = spec.name
    causes = _diagnose(port, reference, first, tolerance) if first else []
    return rows, first, causes


def _diagnose(port: Any, reference: Any, name: str, tolerance: float) -> list[WeightCause]:
    spec = next(s for s in port.specs if s.name == name)
    ref_specs = {s.name: s for s in reference.specs}
    ours_k, ours_b = folded(port.params[name], spec.eps)
    target = _flat(ours_k, ours_b)
    ref = reference.params.get(name)
    ref_spec = ref_specs.get(name)
    base = _relative(target, _flat(*folded(ref, ref_spec.eps))) if ref is not None else 1.0
    found: list[WeightCause] = []

    def consider(cause: str, detail: str, kernel: np.ndarray, bias: np.ndarray) -> None:
        residual = _relative(target, _flat(kernel, bias)) if kernel.shape == ours_k.shape else float("inf")
        if residual <= max(tolerance, EXPLAINED * (base if np.isfinite(base) else 1.0)):
            found.append(WeightCause(cause, f"{name}: {detail}", residual))

    if ref is not None:
        k, b = folded(ref, ref_spec.eps)
        if k.ndim >= 3 and k.shape[0] == k.shape[1]:
            consider("weights.kernel_transposed", "the kernel stored with its height and width swapped",
                     np.swapaxes(k, 0, 1), b)  # fmt: skip
            consider("weights.kernel_flipped", "the kernel rotated by 180 degrees (a correlation read as a "
                     "convolution)", k[::-1, ::-1], b)  # fmt: skip
        if k.ndim == 4 and k.shape[2] == 3:
            consider("weights.input_channels_reversed", "the input channels in BGR order (RGB weights read as BGR)",
                     k[:, :, ::-1], b)  # fmt: skip
        perm = _output_permutation(ours_k, k)
        if perm is not None and not np.array_equal(perm, np.arange(len(perm))):
            consider("weights.output_channels_permuted", "its output channels in another order", k[..., perm], b[perm])
        # batch-norm statistics, unfolded: swapped or missing
        if "gamma" in ref and ref_spec.eps is not None:
            swapped = {**ref, "mean": ref["var"], "var": np.abs(ref["mean"])}
            consider("weights.batch_norm_stats_swapped", "the batch norm's running mean and variance swapped",
                     *folded(swapped, ref_spec.eps))  # fmt: skip
            missing = {**ref, "mean": np.zeros_like(ref["mean"]), "var": np.full_like(ref["var"], 1 - ref_spec.eps)}
            consider("weights.batch_norm_stats_missing", "the batch norm's running statistics not converted (mean "
                     "0, variance 1)", *folded(missing, ref_spec.eps))  # fmt: skip
            identity = {
                **missing, "gamma": np.ones_like(ref["gamma"]), "beta": np.zeros_like(ref["beta"])
            }  # fmt: skip
            consider("weights.batch_norm_missing", "no batch norm at all (the raw convolution)",
                     *folded(identity, ref_spec.eps))  # fmt: skip
            for eps in EPS_CANDIDATES:  # folded under another framework's default eps
                if not np.isclose(eps, ref_spec.eps):
                    consider("weights.batch_norm_eps", f"the batch norm folded with eps {eps:g} where the spec has "
                             f"{ref_spec.eps:g}", *folded(ref, eps))  # fmt: skip
    raw = np.asarray(port.params[name]["kernel"], np.float64)
    for other in reference.specs:  # a layer's weights copied from another layer of the same shape
        if other.name == name:
            continue
        k, b = folded(reference.params[other.name], other.eps)
        if k.shape == ours_k.shape:
            consider("weights.from_another_layer", f"the weights of {other.name}", k, b)
            their_raw = np.asarray(reference.params[other.name]["kernel"], np.float64)
            residual = _relative(raw, their_raw)  # the kernel alone: the layer kept its own batch norm
            if residual <= max(tolerance, EXPLAINED * base):
                found.append(WeightCause("weights.from_another_layer", f"{name}: the kernel of {other.name}", residual))
    if layer_kind(spec).pooled and ref is not None:  # the (linear) classifier's background class
        k, b = folded(ref, ref_spec.eps)
        if k.shape[-1] == ours_k.shape[-1] + 1:
            consider("weights.background_class_dropped", "the reference's class 0 (background) dropped",
                     k[..., 1:], b[1:])  # fmt: skip
            consider("weights.last_class_dropped", "the reference's last class dropped (labels shifted by one)",
                     k[..., :-1], b[:-1])  # fmt: skip
        if k.shape[-1] == ours_k.shape[-1]:
            consider("weights.classes_shifted", "the classes shifted by one", np.roll(k, 1, axis=-1), np.roll(b, 1))
    best: dict[str, WeightCause] = {}
    for cause in found:
        if cause.cause not in best or cause.residual < best[cause.cause].residual:
            best[cause.cause] = cause
    return sorted(best.values(), key=lambda c: c.residual)


def _output_permutation(ours: np.ndarray, theirs: np.ndarray) -> np.ndarray | None:
    """The permutation p with ours[..., i] == theirs[..., p[i]], matched by each channel's values
    (nearest reference channel), or None when the shapes differ."""
    if ours.shape != theirs.shape:
        return None
    a = ours.reshape(-1, ours.shape[-1]).T  # (C_out, fan_in)
    b = theirs.reshape(-1, theirs.shape[-1]).T
    distances = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T  # (C_out, C_out)
    perm = distances.argmin(axis=1)
    return perm if len(set(perm.tolist())) == len(perm) else None

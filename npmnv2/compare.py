"""Layer-by-layer comparison of an npmnv2 Trace with another implementation's tensors.

Two verdicts. Against a float implementation (transformers, your port) a layer diverges when
    max |ours - theirs| > tolerance * max(1, max |theirs|)          (tolerance 1e-4 by default)
Against a quantized peer (the TFLite interpreter: its tensors carry a quantization step, see
`verify.tflite_activations`) exact agreement is impossible: the integer model rounds every
tensor, and the float model does not. There a layer diverges only when its error is larger than
quantization noise ever is (docs/guides/verify.md has the measurements):
    rms(ours - theirs) > QUANT_RELATIVE_RMS * rms(theirs)  and  rms(ours - theirs) > QUANT_RMS_STEPS * step
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .ops import nhwc_to_nchw
from .tables import format_table
from .trace import Trace

# The quantization-noise criterion (see the module docstring and docs/guides/verify.md).
QUANT_RELATIVE_RMS = 0.2
QUANT_RMS_STEPS = 1.5
QUANT_JUMP = 1.5


# Layers whose quantization noise is alike, by step kind: activation outputs, linear outputs, the rest.
NOISE_GROUP = {
    "activation": "activation",
    "batch_norm": "linear",
    "convolution": "linear",
    "residual_add": "linear",
    "block_output": "linear",
}


@dataclass
class LayerComparison:
    """One matched tensor: the differences between ours and theirs."""

    name: str
    reference_name: str
    kind: str
    layout: str
    shape: tuple[int, ...]
    max_abs_diff: float
    max_rel_diff: float
    cosine: float
    ok: bool
    step: float | None = None  # the reference tensor's quantization step (scale), when it has one
    relative_rms: float = 0.0  # rms(ours - theirs) / rms(theirs)
    nonfinite: int = 0  # NaN or inf values in ours or theirs (or a non-finite quantization step)

    @property
    def max_steps(self) -> float | None:
        """max |ours - theirs| in quantization steps of the reference tensor."""
        return None if self.step is None else self.max_abs_diff / self.step

    @property
    def rms_steps(self) -> float | None:
        """rms(ours - theirs) in quantization steps."""
        return None if self.step is None else self.rms_diff / self.step

    rms_diff: float = 0.0


@dataclass
class Comparison:
    """The result of `compare`: rows in execution order, the first divergent layer, unmatched names.

    A layer diverges when max |ours - theirs| > tolerance * max(1, max |theirs|), or when its
    shape cannot be matched.
    """

    rows: list[LayerComparison]
    first_divergence: str | None
    tolerance: float | None  # None: the quantization-noise criterion
    unmatched_reference: list[str] = field(default_factory=list)
    unmatched_ours: list[str] = field(default_factory=list)
    layouts: dict[str, int] = field(default_factory=dict)

    @property
    def quantized(self) -> bool:
        """Was the reference a quantized model (judged against quantization noise)?"""
        return self.tolerance is None

    def _lines(self) -> list[list[str]]:
        lines = []
        for r in self.rows:
            name = r.name + ("" if r.reference_name == r.name else f" ~ {r.reference_name}")
            steps = [f"{r.max_steps:.1f}", f"{r.rms_steps:.2f}"] if r.step is not None else ["-", "-"]
            lines.append(
                [
                    name,
                    r.kind,
                    r.layout,
                    "x".join(map(str, r.shape)),
                    f"{r.max_abs_diff:.3g}",
                    *steps,
                    f"{r.relative_rms:.3g}",
                    f"{r.cosine:.6f}",
                    "ok" if r.ok else (f"DIVERGES ({r.nonfinite:,} non-finite)" if r.nonfinite else "DIVERGES"),
                ]
            )
        return lines

    _HEAD = ("layer", "kind", "layout", "shape", "max |diff|", "max steps", "rms steps", "rel rms", "cosine", "")

    def verdict(self) -> str:
        """One sentence: agreement, quantization noise, or where it diverges."""
        if self.first_divergence:
            if self.quantized:
                return (
                    f"first divergence: {self.first_divergence}, beyond quantization noise (its relative RMS error is "
                    f"above {QUANT_RELATIVE_RMS:g}, above {QUANT_RMS_STEPS:g} quantization steps, and {QUANT_JUMP:g}x "
                    "the largest of the layers before it): a real difference, not rounding."
                )
            return f"first divergence: {self.first_divergence}"
        if self.quantized and self.rows:
            worst = max(self.rows, key=lambda r: r.max_steps or 0.0)
            return (
                f"no divergence: every difference is within the quantization noise of the integer model "
                f"(largest: {worst.max_steps:.0f} quantization steps at {worst.name}; largest relative RMS error "
                f"{max(r.relative_rms for r in self.rows):.3f}, criterion {QUANT_RELATIVE_RMS:g})."
            )
        return "no divergence"

    def summary_line(self) -> str:
        first = self.verdict()

        def listed(names: list[str]) -> str:
            return f"{len(names)} {names[:6]}{' ...' if len(names) > 6 else ''}"

        layouts = ", ".join(f"{k} x{v}" for k, v in self.layouts.items())
        how = "against quantization noise" if self.quantized else f"tolerance {self.tolerance:g}"
        return (
            f"{len(self.rows)} layers compared (reference layouts: {layouts}), {how}; {first} "
            f"Unmatched: reference {listed(self.unmatched_reference)}; ours {listed(self.unmatched_ours)}."
        )

    def __repr__(self) -> str:
        return format_table([list(self._HEAD), *self._lines()]) + "\n" + self.summary_line()

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in self._HEAD)
        body = ""
        for row, line in zip(self.rows, self._lines(), strict=True):
            style = "" if row.ok else ' style="background:#fdd"'
            body += f"<tr{style}>" + "".join(f"<td>{html.escape(c)}</td>" for c in line) + "</tr>"
        table = f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        return f"{table}<p>{html.escape(self.summary_line())}</p>"


def _align(ours: np.ndarray, theirs: np.ndarray) -> tuple[np.ndarray | None, str]:
    """Bring `theirs` to our NCHW shape: as it is, from NHWC, or by dropping unit axes."""
    n_ = ours.shape
    if theirs.shape == n_:
        return theirs, "NCHW"
    if theirs.ndim == 4 and len(n_) == 4 and theirs.shape == (n_[0], n_[2], n_[3], n_[1]):
        return nhwc_to_nchw(theirs), "NHWC"
    if theirs.size == ours.size and [s for s in theirs.shape if s != 1] == [s for s in n_ if s != 1]:
        return theirs.reshape(n_), "squeezed"
    return None, f"shape {theirs.shape}"


def compare(trace: Trace, reference: Mapping[str, Any], tolerance: float | None = None) -> Comparison:
    """Compare every kept tensor of `trace` with the tensor of the same name in `reference`.

    reference: name -> array, NCHW or NHWC (detected per tensor and reported), e.g. from
        `npmnv2.verify.torch_activations`, `npmnv2.verify.tflite_activations` or an .npz file.
        transformers' full-model prefix "mobilenet_v2." is accepted. A reference with a `scales`
        mapping (name -> quantization step) is a quantized model's.
    tolerance: for a float reference, max |diff| / max(1, max |theirs|) (default 1e-4). For a
        quantized reference the default is the quantization-noise criterion (module docstring);
        an explicit tolerance judges it like a float one.
    A conv step with folded batch norm is matched to the reference's `<layer>.normalization`.
    """
    if tolerance is not None and (
        isinstance(tolerance, bool)
        or not isinstance(tolerance, (int, float, np.floating, np.integer))
        or not np.isfinite(tolerance)
        or tolerance < 0
    ):
        raise ValueError(f"compare: tolerance must be a finite number >= 0 such as 1e-4, got {tolerance!r}.")
    if not len(reference):
        raise ValueError("compare: the reference holds no tensors, so there is nothing to compare; give name -> array.")
    scales = {k.removeprefix("mobilenet_v2."): float(v) for k, v in (getattr(reference, "scales", None) or {}).items()}
    if tolerance is None and not scales:
        tolerance = 1e-4
    theirs = {k.removeprefix("mobilenet_v2."): v for k, v in reference.items()}
    noise_so_far: dict[str, float] = {}  # largest relative error seen so far per noise group
    rows: list[LayerComparison] = []
    used: set[str] = set()
    unmatched_ours: list[str] = []
    layouts: dict[str, int] = {}
    for step in trace.steps:
        if step.output is None:
            continue
        ref_name = step.name
        if step.attrs.get("folded_bn") and step.name.endswith(".convolution"):
            ref_name = step.name.removesuffix(".convolution") + ".normalization"
        if ref_name not in theirs:
            unmatched_ours.append(step.name)
            continue
        used.add(ref_name)
        ours = step.output.astype(np.float64)
        aligned, layout = _align(ours, np.asarray(theirs[ref_name]))
        layouts[layout if aligned is not None else "mismatched"] = layouts.get(layout, 0) + 1
        if aligned is None:
            rows.append(
                LayerComparison(
                    step.name, ref_name, step.kind, layout, step.output_shape, np.inf, np.inf, np.nan, False
                )
            )
            continue
        aligned = aligned.astype(np.float64)
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):  # NaN/inf are counted below
            delta = ours - aligned
            diff = float(np.abs(delta).max()) if ours.size else 0.0
            scale = float(np.abs(aligned).max()) if aligned.size else 0.0
            norm = float(np.linalg.norm(ours) * np.linalg.norm(aligned))
            cosine = float((ours * aligned).sum() / norm) if norm > 0 else (1.0 if diff == 0 else 0.0)
            rms_diff = float(np.sqrt(np.mean(delta**2))) if ours.size else 0.0
            rms_theirs = float(np.sqrt(np.mean(aligned**2))) if ours.size else 0.0
            relative_rms = rms_diff / rms_theirs if rms_theirs > 0 else (0.0 if rms_diff == 0 else np.inf)
        step_size = scales.get(ref_name)
        nonfinite = int(np.count_nonzero(~np.isfinite(aligned)) + np.count_nonzero(~np.isfinite(ours)))
        if step_size is not None and not (np.isfinite(step_size) and step_size > 0):
            nonfinite += 1  # a quantization step that is no step: nothing can be judged against it
        if nonfinite:  # NaN or inf anywhere is a divergence, never agreement
            ok = False
        elif tolerance is not None:
            ok = diff <= tolerance * max(1.0, scale)
        else:  # a quantized model's tensor: judged against quantization noise
            group = NOISE_GROUP.get(step.kind, "other")
            jumped = relative_rms > QUANT_JUMP * noise_so_far.get(group, 0.0)
            above_steps = step_size is None or rms_diff > QUANT_RMS_STEPS * step_size
            ok = not (relative_rms > QUANT_RELATIVE_RMS and above_steps and jumped)
            noise_so_far[group] = max(noise_so_far.get(group, 0.0), relative_rms)
        rows.append(
            LayerComparison(
                step.name,
                ref_name,
                step.kind,
                layout,
                step.output_shape,
                diff,
                diff / scale if scale > 0 else diff,
                cosine,
                ok,
                step=step_size,
                relative_rms=relative_rms,
                rms_diff=rms_diff,
                nonfinite=nonfinite,
            )
        )
    first = next((r.name for r in rows if not r.ok), None)
    unmatched_reference = [k for k in theirs if k not in used]
    return Comparison(rows, first, tolerance, unmatched_reference, unmatched_ours, layouts)

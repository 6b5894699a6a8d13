"""Layer-by-layer comparison of an npmnv2 Trace with another implementation's tensors."""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .trace import Trace


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


@dataclass
class Comparison:
    """The result of `compare`: rows in execution order, the first divergent layer, unmatched names.

    A layer diverges when max |ours - theirs| > tolerance * max(1, max |theirs|), or when its
    shape cannot be matched.
    """

    rows: list[LayerComparison]
    first_divergence: str | None
    tolerance: float
    unmatched_reference: list[str] = field(default_factory=list)
    unmatched_ours: list[str] = field(default_factory=list)
    layouts: dict[str, int] = field(default_factory=dict)

    def _lines(self) -> list[list[str]]:
        return [
            [r.name + ("" if r.reference_name == r.name else f" ~ {r.reference_name}"), r.kind, r.layout,
             "x".join(map(str, r.shape)), f"{r.max_abs_diff:.3g}", f"{r.max_rel_diff:.3g}", f"{r.cosine:.6f}",
             "ok" if r.ok else "DIVERGES"]
            for r in self.rows
        ]  # fmt: skip

    _HEAD = ("layer", "kind", "layout", "shape", "max |diff|", "max rel", "cosine", "")

    def summary_line(self) -> str:
        first = f"first divergence: {self.first_divergence}" if self.first_divergence else "no divergence"

        def listed(names: list[str]) -> str:
            return f"{len(names)} {names[:6]}{' ...' if len(names) > 6 else ''}"

        layouts = ", ".join(f"{k} x{v}" for k, v in self.layouts.items())
        return (
            f"{len(self.rows)} layers compared (reference layouts: {layouts}), tolerance {self.tolerance:g}; {first}. "
            f"Unmatched: reference {listed(self.unmatched_reference)}; ours {listed(self.unmatched_ours)}."
        )

    def __repr__(self) -> str:
        rows = [list(self._HEAD), *self._lines()]
        widths = [max(len(r[i]) for r in rows) for i in range(len(self._HEAD))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
        return "\n".join([*lines, self.summary_line()])

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
        return theirs.transpose(0, 3, 1, 2), "NHWC"
    if theirs.size == ours.size and [s for s in theirs.shape if s != 1] == [s for s in n_ if s != 1]:
        return theirs.reshape(n_), "squeezed"
    return None, f"shape {theirs.shape}"


def compare(trace: Trace, reference: Mapping[str, Any], tolerance: float = 1e-4) -> Comparison:
    """Compare every kept tensor of `trace` with the tensor of the same name in `reference`.

    reference: name -> array, NCHW or NHWC (detected per tensor and reported), e.g. from
        `npmnv2.verify.torch_activations`, `npmnv2.verify.tflite_activations` or an .npz file.
        transformers' full-model prefix "mobilenet_v2." is accepted.
    A conv step with folded batch norm is matched to the reference's `<layer>.normalization`.
    """
    theirs = {k.removeprefix("mobilenet_v2."): v for k, v in reference.items()}
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
        diff = float(np.abs(ours - aligned).max()) if ours.size else 0.0
        scale = float(np.abs(aligned).max()) if aligned.size else 0.0
        norm = float(np.linalg.norm(ours) * np.linalg.norm(aligned))
        cosine = float((ours * aligned).sum() / norm) if norm > 0 else (1.0 if diff == 0 else 0.0)
        ok = diff <= tolerance * max(1.0, scale)
        rows.append(LayerComparison(step.name, ref_name, step.kind, layout, step.output_shape, diff,
                                    diff / scale if scale > 0 else diff, cosine, ok))  # fmt: skip
    first = next((r.name for r in rows if not r.ok), None)
    unmatched_reference = [k for k in theirs if k not in used]
    return Comparison(rows, first, tolerance, unmatched_reference, unmatched_ours, layouts)

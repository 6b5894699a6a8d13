"""`VerifyReport`: what `npmnv2.verify.check` found, as a table, a paragraph, a figure and an overlay
for Google's AI Edge Model Explorer."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..formats.atomic import write_file_atomically
from ..tables import format_table, html_table
from ..trace import Step


@dataclass
class Row:
    """One matched op: npmnv2's step and the peer's tensor, their total error (npmnv2's own output)
    and local error (npmnv2's op on the peer's own inputs), both relative RMS, the op's float32
    rounding noise at that scale, and whether the op is right on its own. fused: npmnv2's steps the
    peer computed inside this tensor without showing them."""

    name: str
    peer_name: str
    kind: str
    peer_kind: str | None
    layout: str
    shape: tuple[int, ...]
    total: float
    local: float
    noise: float
    local_ok: bool
    fused: list[str] = field(default_factory=list)


@dataclass
class CauseEvidence:
    """A catalogued cause that reproduces the peer: its id, what it changed, the relative residual
    of its re-run against the peer's tensor, the original local error, and the op it changed."""

    cause: str
    detail: str
    residual: float
    original: float
    target: str | None = None


def _shown(name: str) -> str:
    """A port's tensor name as a verdict shows it: the first of the names TFLite's converter joins
    with ';' for a fused op (the full name stays in the rows and the Model Explorer overlay)."""
    first = name.split(";")[0]
    return first if len(first) <= 80 else first[:77] + "..."


@dataclass
class VerifyReport:
    """The verdict on a port. rows: every matched op in execution order; first_divergence: the
    first op whose total error shows; first_local_divergence: the first op wrong on its own (a step
    name, or "pixel_values" for the input pipeline); cause / causes: the catalogue ids that explain
    it, best first, with evidence (`npmnv2.verify.causes`)."""

    rows: list[Row]
    unmatched_peer: list[str]
    unmatched_ours: list[str]
    framework: str
    warnings: list[str] = field(default_factory=list)
    config: Any = None
    first_divergence: str | None = None
    first_local_divergence: str | None = None
    cause: str | None = None
    causes: list[CauseEvidence] = field(default_factory=list)
    explained_step: Step | None = None
    criterion: float = 16.0  # an op is wrong on its own above this many times its rounding noise
    gaps: list[str] = field(default_factory=list)  # what could not be checked, each with what to do
    quantized: bool = False  # the peer's tensors are quantized: judged against their quantization steps
    weight_rows: list[Any] = field(default_factory=list)  # against a reference (`verify.weights`), when given
    weight_divergence: str | None = None  # the first weight layer that differs from the reference's
    weight_causes: list[Any] = field(default_factory=list)
    weights_read: list[tuple[str, str, str]] = field(default_factory=list)  # (npmnv2 layer, port's layer, what)

    @property
    def status(self) -> str:
        """ "diverges" (an op is wrong on its own), "inconclusive" (nothing wrong was found, but part of
        the port could not be checked: see `gaps`; or the op that differs sits behind a batch norm that
        was not read: see `unread_batch_norm`), or "faithful" (every op and weight was checked)."""
        if self.weight_divergence is not None:
            return "diverges"
        if self.first_local_divergence is not None and self.unread_batch_norm is None:
            return "diverges"
        return "inconclusive" if self.gaps or self.first_local_divergence else "faithful"

    @property
    def unread_batch_norm(self) -> str | None:
        """The layer of the first op wrong on its own (or of a step the port did not show, judged with
        it), when that layer's batch norm was not read from the port and no catalogued cause reproduces
        the difference: npmnv2 stood in an identity for a batch norm it could not see, so the
        difference may be npmnv2's, not the port's."""
        where = self.first_local_divergence
        if where is None or self.cause is not None:
            return None
        row = next((r for r in self.rows if r.name == where), None)
        steps = [where, *(row.fused if row is not None else [])]  # with the unshown steps judged inside it
        for ours, _, what in self.weights_read:
            if what.endswith("batch norm NOT READ") and any(s == ours or s.startswith(ours + ".") for s in steps):
                return ours
        return None

    @property
    def faithful(self) -> bool:
        """True only when every op of the port was checked and none is wrong on its own."""
        return self.status == "faithful"

    @property
    def ops_judged(self) -> int:
        return sum(r.kind != "input" for r in self.rows)

    _HEAD = ("op", "peer tensor", "layout", "shape", "total rel", "local rel", "noise", "verdict")

    def _lines(self) -> list[list[str]]:
        return [
            [
                r.name,
                r.peer_name[:40],
                r.layout,
                "x".join(map(str, r.shape)),
                f"{r.total:.2e}",
                f"{r.local:.2e}",
                f"{r.noise:.1e}",
                "ok" if r.local_ok else "WRONG ON ITS OWN",
            ]
            for r in self.rows
        ]

    def _port_name(self, step: str | None) -> str:
        """ " (your NAME)" for the port's tensor matched to `step`, when it has a name of its own."""
        row = next((r for r in self.rows if r.name == step), None)
        if row is None:  # an op with no tensor of its own in the port: the first of its tensors that shows it
            row = next((r for r in self.rows if step in r.fused), None)
            if row is None or not row.peer_name or row.peer_name.startswith("("):
                return ""
            inside = row.peer_kind in ("conv", "depthwise", "batch_norm") and step.endswith(
                (".convolution", ".normalization", ".activation")
            )
            shown = _shown(row.peer_name)
            return f" (your {shown})" if inside else f" (seen first in your {shown})"
        if not row.peer_name or row.peer_name == step or row.peer_name.startswith("("):
            return ""
        return f" (your {_shown(row.peer_name)})"

    def verdict(self) -> str:
        """One line: faithful, inconclusive (and the first reason), or the first op wrong on its own
        and its cause, with the port's own name for it."""
        if self.first_local_divergence is None and self.weight_divergence is not None:
            where = self.weight_divergence
            theirs = next((r.peer_name for r in self.weight_rows if r.name == where and r.peer_name), "")
            yours = f" (your {_shown(theirs)})" if theirs else ""
            cause = f"; cause: {self.weight_causes[0].cause}" if self.weight_causes else "; no catalogued cause"
            return f"DIVERGES: the weights of {where}{yours} are not the reference's{cause}."
        if self.status == "inconclusive" and self.first_local_divergence is not None:
            where = self.first_local_divergence
            return (
                f"inconclusive: {where}{self._port_name(where)} differs from npmnv2's, but the batch norm of "
                f"{self.unread_batch_norm} was not read from the port, so npmnv2 judged it without one; "
                "see explain() for what was not read."
            )
        if self.status == "inconclusive":
            more = f" (and {len(self.gaps) - 1} more: see explain())" if len(self.gaps) > 1 else ""
            return f"inconclusive: {self.ops_judged} ops agree, but {self.gaps[0]}{more}"
        if self.faithful and self.framework == "integer":
            return f"faithful: all {len(self.rows)} ops equal npmnv2's integer model exactly, each on its own inputs."
        if self.faithful:
            noise = "quantization" if self.quantized else "float32"
            return (
                f"faithful: all {len(self.rows)} matched ops agree with npmnv2's within {noise} rounding, each on its "
                "own inputs."
            )
        cause = f"; cause: {self.cause}" if self.cause else "; no catalogued cause reproduces it"
        where = self.first_local_divergence
        if self.declared_only:
            return (
                f"DIVERGES: {where}{self._port_name(where)} is declared as another op than the spec's{cause} "
                "(its values on this input agree: see explain())."
            )
        return f"DIVERGES: {where}{self._port_name(where)} is wrong on its own{cause}."

    @property
    def declared_only(self) -> bool:
        """The divergence is in what the port declares (its op), not in values this input showed."""
        row = next((r for r in self.rows if r.name == self.first_local_divergence), None)
        return bool(self.causes) and row is not None and row.local_ok and self.causes[0].original == 0.0

    def explain(self) -> str:
        """A paragraph a porter can act on: where, what reproduces it, with the numbers."""
        lines = [self.verdict()]
        if self.status == "inconclusive":
            lines.extend(f"Not checked: {gap}" for gap in self.gaps[1 if self.first_local_divergence is None else 0 :])
        if self.status != "diverges":
            lines.append(
                f"Matched {len(self.rows)} of the {self.framework} peer's tensors to npmnv2's steps by structure; "
                f"{len(self.unmatched_peer)} of its tensors and {len(self.unmatched_ours)} npmnv2 steps have no "
                "counterpart (fused or extra ops)."
            )
        elif self.declared_only:
            where = self.first_local_divergence
            lines.append(f"{where}: {self.causes[0].detail.removeprefix(f'{where}: ')} ({self.causes[0].cause}).")
        elif self.causes:
            best = self.causes[0]
            where = best.target or self.first_local_divergence
            detail = best.detail.removeprefix(f"{where}: ")
            lines.append(
                f"{where}: your output equals npmnv2's under {best.cause} ({detail}): residual {best.residual:.2g} "
                f"vs {best.original:.2g} as the spec says."
            )
            for other in self.causes[1:3]:
                lines.append(f"Also consistent: {other.cause} ({other.detail}, residual {other.residual:.2g}).")
        else:
            row = next((r for r in self.rows if r.name == self.first_local_divergence), None)
            if row is not None:
                lines.append(
                    f"Its local error is {row.local:.2g} (relative RMS), {row.local / max(row.noise, 1e-300):.0f}x its "
                    "float32 rounding noise; none of the catalogued porting bugs reproduces it."
                )
            if self.explained_step is not None:
                lines.append(f"What the spec computes there: {self.explained_step.explain()}")
        if self.weight_causes:
            best = self.weight_causes[0]
            lines.append(f"Weights: {best.detail} reproduces the port's weights (residual {best.residual:.2g}).")
        elif self.weight_divergence is not None:
            row = next(r for r in self.weight_rows if r.name == self.weight_divergence)
            lines.append(
                f"Weights: {row.name} differs from the reference by {row.difference:.2g} (relative RMS, folded); "
                "none of the catalogued conversion bugs reproduces it."
            )
        elif self.weight_rows:
            lines.append(f"Weights: all {len(self.weight_rows)} weight layers equal the reference's.")
        lines.extend(w for w in self.warnings if w not in self.gaps)
        if self.weights_read:
            read = sum(1 for *_, what in self.weights_read if "not read" not in what.lower())
            lines.append(f"Weights: {read} of the spec's {len(self.weights_read)} weight layers read from the port.")
            folded = sum(1 for *_, what in self.weights_read if "folded" in what)
            if folded and not self.weight_rows:
                lines.append(
                    f"Weights: {folded} batch norms came folded into their convolutions, so their eps and statistics "
                    "are part of the weights: the port computes what its weights say; whether those are the "
                    "checkpoint's, a wrong eps included, shows only against a reference (reference= / --reference)."
                )
        return "\n".join(lines)

    def coverage(self) -> str:
        """What was checked: every weight layer of the spec with the port's layer read into it (and
        what of it), every op judged with the port's tensor, and what could not be checked."""
        lines = ["weights (npmnv2 layer <- the port's layer: what was read):"]
        lines += [f"  {ours} <- {theirs}: {what}" for ours, theirs, what in self.weights_read] or ["  (none)"]
        lines.append(f"ops judged ({self.ops_judged}):")
        lines += [
            f"  {r.name} <- {r.peer_name}" + (f" (with {', '.join(r.fused)})" if r.fused else "") for r in self.rows
        ]
        lines.append("not checked:")
        lines += [f"  {gap}" for gap in self.gaps] or ["  (nothing)"]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return format_table([list(self._HEAD), *self._lines()]) + "\n" + self.explain()

    def _repr_html_(self) -> str:
        return html_table([list(self._HEAD), *self._lines()], foot=self.explain())

    def figure(self) -> Any:
        """Total and local error per op (log scale), with the rounding-noise criterion drawn."""
        from ..viz import error_per_layer_figure

        return error_per_layer_figure(self)

    def to_model_explorer(self, path: str | os.PathLike) -> Path:
        """Write a node-data JSON overlay for Google's AI Edge Model Explorer: each of the peer's
        tensors (by its own name) gets its local error, so the error shows on the peer's graph.
        The format is Model Explorer's node data (`node_data_builder.py`): per graph, results keyed
        by node id, each with a numeric value, plus a gradient color scale."""
        results = {}
        for r in self.rows:
            result: dict[str, Any] = {"value": r.local}
            if not r.local_ok:  # an op wrong on its own stands out whatever the scale
                result["bgColor"] = "#d62728"
            results[r.peer_name] = result
        data = {"results": results, "gradient": [{"stop": 0, "bgColor": "#ffffff"}, {"stop": 1, "bgColor": "#ff9896"}]}
        path = Path(path)
        write_file_atomically(path, json.dumps(data, indent=1).encode())
        return path

"""`check(peer, image, config=...)`: verify another implementation of MobileNetV2, op by op.

1. Run the peer as it is (`peers`), on the pixels the spec's preprocessing makes.
2. Build npmnv2's model of the spec with the peer's own weights, read by structure (`spec`), or take
   `model=`; trace it in float64 on the same pixels, every tensor kept.
3. Match the peer's tensors to npmnv2's steps by structure (`align`).
4. For every matched op, two errors against the peer's tensor:
   - total: npmnv2's own output (everything before it computed by npmnv2);
   - local ("shadow"): the op (with any unmatched ops the peer fused into it, its *group*)
     computed by npmnv2 from the peer's own inputs to it. An op is wrong on its own when its local
     error is above its float32 rounding noise: LOCAL_NOISE x eps32 x rms(magnitude), where the
     magnitude is the same group run on absolute values (|x|, |W|): the size of the sums the peer
     rounded, not the size of the output (after ReLU6 that shrinks).
5. At the first op wrong on its own, re-run its group under every hypothesis of the catalogue
   (`causes`); the one whose output reproduces the peer's is the cause, with its evidence.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import numpy as np

from .. import ops
from ..ops import nchw_to_nhwc, nhwc_to_nchw, softmax
from ..ops.quantization import round_half_away
from ..trace import Step, internal_layout
from ..warnings import NpMnV2Warning
from .align import Match, align, execution_order, in_our_layout
from .causes import CATALOGUE, Context, Proposal
from .peers import PeerRun
from .report import CauseEvidence, Row, VerifyReport

EPS32 = float(np.finfo(np.float32).eps)
# An op is wrong on its own when rms(local error) > LOCAL_NOISE * eps32 * rms(its magnitude).
# Measured on faithful peers (docs/guides/verify.md): at most about 0.6 at He scale; bugs start at 1e3.
LOCAL_NOISE = 16.0
# A cause is accepted when it explains the port at least this well: its residual below this share
# of the original local error, and within LOCAL_NOISE rounding noise... or CAUSE_SHARE of the error.
CAUSE_SHARE = 0.05
QUANT_LOCAL = 1.5  # a quantized peer's op is wrong on its own when rms(local error) > 1.5 quantization steps
VANISHING = 1e-3  # a reference whose block outputs stay below this in magnitude cannot show a bug
# A hybrid op (float op, int8 weights: TFLite's dynamic-range kernels) quantizes its float input to int8
# per batch item before an integer matmul, then scales back in float: its replay does the same.
# A hybrid replay equals the interpreter within float32 rounding but for the few inputs a rounding puts
# on the other side of a tie (measured: at most 3e-4 relative RMS on one op of 38): 1e-3 is allowed.
HYBRID_SLACK = 1e-3


def _hybrid_input(x: np.ndarray, rule: str) -> np.ndarray:
    """x (N, ...) as a hybrid kernel sees it (rule from `npmnv2.verify.tensors._hybrid_rule`):
    "asymmetric": AsymmetricQuantizeFloats over [min(0, x), max(0, x)] to -128..127 with a nudged
    zero point; "symmetric": scale max|x| / 127; "/batch" per batch item, "/pixel" per pixel.
    Returned dequantized: the values its integer matmul multiplies."""
    rule, _, per = rule.partition("/")
    if per == "pixel" and x.ndim == 4:  # each pixel (the im2col row of a 1x1 convolution) on its own
        n, h, w, c = x.shape
        return _hybrid_input(x.reshape(n * h * w, 1, c), rule).reshape(x.shape)
    out = np.empty_like(x, dtype=np.float64)
    for b in range(x.shape[0]):
        v = x[b].astype(np.float32)
        if rule == "symmetric":
            scale = float(np.max(np.abs(v))) / 127.0
            if scale == 0:
                out[b] = 0.0
                continue
            q = np.clip(round_half_away(v.astype(np.float64) * np.float32(1.0 / scale)), -127, 127)
            out[b] = q * scale
            continue
        rmin, rmax = min(0.0, float(v.min())), max(0.0, float(v.max()))
        if rmin == rmax:
            out[b] = 0.0
            continue
        scale = (rmax - rmin) / 255.0
        from_min, from_max = -128 - rmin / scale, 127 - rmax / scale
        zp_real = from_min if 128 + abs(rmin / scale) < 127 + abs(rmax / scale) else from_max
        zp = -128 if zp_real <= -128 else 127 if zp_real >= 127 else int(round_half_away(np.float64(zp_real)))
        inverse = np.float32(1.0 / scale)
        q = np.clip(round_half_away(np.float32(zp) + v * inverse), -128, 127)
        out[b] = (q - zp) * scale
    return out


def _public(step: Step, a: np.ndarray) -> np.ndarray:
    return nhwc_to_nchw(a) if len(step.output_shape) == 4 else a.reshape(step.output_shape)


def _rms(a: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(a, dtype=np.float64)))) if a.size else 0.0


class _Replay:
    """npmnv2's ops re-run over a group of steps, starting from given tensors."""

    def __init__(self, steps: list[Step]) -> None:
        self.by_name = {s.name: s for s in steps}

    def group(self, step: Step, matched: set[str]) -> tuple[list[Step], set[str]]:
        """The unmatched steps between the matched ones (or the pixels) and `step`, in order, with
        `step` last; and the frontier: the matched steps and "pixel_values" they read."""
        members, frontier, todo = {step.name}, set(), list(step.sources)
        while todo:
            name = todo.pop()
            if name == "pixel_values" or name in matched:
                frontier.add(name)
            elif name not in members:
                members.add(name)
                todo.extend(self.by_name[name].sources)
        order = [s for s in self.by_name.values() if s.name in members]
        return order, frontier

    def run(
        self,
        group: list[Step],
        start: dict[str, np.ndarray],
        changes: dict[str, Any] | None = None,
        absolute: bool = False,
        inputs_seen: dict[str, list[np.ndarray]] | None = None,
    ) -> np.ndarray:
        """The last step's output (NHWC), computed step by step from `start` (name -> NHWC). changes:
        a Proposal's steps; absolute: every input and parameter as its absolute value (the magnitude
        of the sums the op adds up)."""
        values = dict(start)
        if absolute:
            values = {k: np.abs(v) for k, v in values.items()}
        for s in group:
            xs = [values[src] for src in s.sources]
            if inputs_seen is not None:
                inputs_seen[s.name] = xs
            change = (changes or {}).get(s.name)
            values[s.name] = self._one(s, xs, change, absolute)
        return values[group[-1].name]

    def _one(self, s: Step, xs: list[np.ndarray], change: Any, absolute: bool) -> np.ndarray:
        if callable(change):
            return change(xs)
        if isinstance(change, tuple) and change[0] == "strided":
            xs = [xs[0][:, :: change[1], :: change[1]]]
            change = None
        then = change[1] if isinstance(change, tuple) and change[0] == "then" else None
        step = change if isinstance(change, Step) else s
        if step.op is None:  # a block output: the projection passed on
            return xs[0]
        if absolute:
            step = _absolute(step)
        out = ops.PAGE_OF[step.op].forward_step(step, xs)
        if then is not None:
            out = then(out)
        return np.abs(out) if absolute else out


def _absolute(step: Step) -> Step:
    """The step with absolute parameters and a batch norm that adds magnitudes (mean 0)."""
    import dataclasses

    params = {k: np.abs(v) for k, v in step.params.items()}
    if "mean" in params:
        params["mean"] = np.zeros_like(params["mean"])
    return dataclasses.replace(step, params=params)


def _start(frontier: set[str], peer_values: dict[str, np.ndarray], pixels: np.ndarray) -> dict[str, np.ndarray]:
    return {name: (pixels if name == "pixel_values" else peer_values[name]) for name in frontier}


def run_check(
    run: PeerRun, model: Any, pixel_values: np.ndarray, *, config: Any, peer_pixels: np.ndarray | None = None
) -> VerifyReport:
    """The comparison itself, given the peer's tensors and npmnv2's model (see the module docstring)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NpMnV2Warning)
        trace = model.trace(np.asarray(pixel_values, np.float64))
    steps = trace.steps
    if getattr(model, "task", None) == "segmentation":
        steps = [*steps, _upsample_step(steps[-1], np.asarray(pixel_values).shape[2:])]
    report_warnings = _vanishing(trace)
    if not run.ordered:  # a folder of .npy: put its tensors in execution order first
        run = dataclasses.replace(run, tensors=execution_order(steps, run), ordered=True)
    matches, unmatched = align(steps, run)
    gaps = _unchecked_ours(steps, matches, trace.steps[-1].name)
    tail_row, tail_cause = None, None
    if matches:
        tail_row, tail_cause, tail_gaps = _after_last_match(run, matches[-1], unmatched)
        gaps += tail_gaps
    matched = {m.step.name for m in matches}
    peer_values = {m.step.name: internal_layout(m.value) if not m.softmax else None for m in matches}
    pixels = nchw_to_nhwc(np.asarray(pixel_values, np.float64))
    replay = _Replay(steps)
    rows: list[Row] = []
    first_local: tuple[Match, list[Step], set[str]] | None = None
    input_row = _input_row(run, pixels)
    if input_row is not None:
        rows.append(input_row)
    port_pixels = _port_pixels(run, pixels)  # each op is judged on what the port fed it
    port_pixels = pixels if port_pixels is None else port_pixels
    for m in matches:
        group, frontier = replay.group(m.step, matched)
        if any(peer_values.get(f) is None and f != "pixel_values" for f in frontier):
            continue  # starts from a softmax: not an input of anything
        start = _start(frontier, peer_values, port_pixels)
        local = _public(m.step, replay.run(group, start))
        magnitude = _public(m.step, replay.run(group, start, absolute=True))
        ours = m.step.output.astype(np.float64)
        if m.softmax:
            local, ours, magnitude = softmax(local), softmax(ours), np.ones_like(local)
        noise = EPS32 * _rms(magnitude)
        hybrid = m.peer.detail.get("hybrid")
        if hybrid:  # the kernel quantized its input to int8 first: replay that too (the weights are exact)
            local = _public(m.step, replay.run(group, {k: _hybrid_input(v, hybrid) for k, v in start.items()}))
            noise = noise + HYBRID_SLACK * _rms(local) / LOCAL_NOISE
        held = m.peer.detail.get("range")
        if held is not None:  # a quantized peer saturates at what its integers hold: so does its spec
            local, ours = np.clip(local, *held), np.clip(ours, *held)
        local_err, total_err, scale = _rms(local - m.value), _rms(ours - m.value), _rms(m.value)
        step_size = m.peer.detail.get("scale")
        if step_size:  # a quantized peer: its own rounding is half a step; judged against QUANT_LOCAL steps
            noise = step_size * QUANT_LOCAL / LOCAL_NOISE
        row = Row(
            name=m.step.name,
            peer_name=m.peer.name,
            kind=m.step.kind,
            peer_kind=m.peer.kind,
            layout=m.layout,
            shape=tuple(m.value.shape),
            total=total_err / scale if scale else total_err,
            local=local_err / scale if scale else local_err,
            noise=noise / scale if scale else noise,
            local_ok=local_err <= LOCAL_NOISE * noise + 1e-300,
            fused=[s.name for s in group[:-1]],
        )
        rows.append(row)
        if not row.local_ok and first_local is None:
            first_local = (m, group, frontier)
    report = VerifyReport(
        rows=rows,
        unmatched_peer=[t.name for t in unmatched],
        unmatched_ours=[s.name for s in steps if s.name not in matched],
        framework=run.framework,
        warnings=report_warnings,
        config=config,
        criterion=LOCAL_NOISE,
        gaps=[*gaps, *report_warnings],
        quantized=any(t.detail.get("scale") for t in run.tensors),
    )
    report.first_divergence = next((r.name for r in rows if r.total > _total_tolerance(r)), None)
    if input_row is not None and not input_row.local_ok:
        report.first_local_divergence = "pixel_values"
        report.causes = _diagnose_input(run, pixels)
    elif first_local is not None:
        m, group, frontier = first_local
        report.first_local_divergence = m.step.name
        start = _start(frontier, peer_values, port_pixels)
        if m.peer.detail.get("hybrid"):  # the causes are replayed on what the hybrid kernel read
            start = {k: _hybrid_input(v, m.peer.detail["hybrid"]) for k, v in start.items()}
        report.causes = _diagnose(replay, m, group, start, frontier, config)
        report.explained_step = m.step
    elif tail_row is not None:  # every matched op right, but the port changes its output after the last one
        report.rows.append(tail_row)
        report.first_local_divergence = tail_row.name
        report.causes = [tail_cause]
    elif (declared := declared_activation_mismatch(matches)) is not None:
        report.first_local_divergence = declared.target
        report.causes = [declared]
    if report.causes:
        report.cause = report.causes[0].cause
        report.first_local_divergence = report.causes[0].target or report.first_local_divergence
    return report


def declared_activation_mismatch(matches: list[Match]) -> CauseEvidence | None:
    """The first activation the port itself declares as ReLU (its module, layer or node: `nn.ReLU`,
    Keras `ReLU()` without `max_value=6`, ONNX `Relu`) where the spec has ReLU6, when its values
    agree with the spec's on this input because no value reached 6 there: the bug is in the port's
    graph even though this image cannot show it."""
    for m in matches:
        declared = m.peer.detail.get("activation")
        if m.step.kind == "activation" and declared == "relu" and m.step.attrs.get("function") == "relu6":
            peak = float(np.max(m.value)) if m.value.size else 0.0
            detail = (
                f"{m.step.name}: the port declares ReLU (no cap at 6) where the spec has ReLU6; on this input its "
                f"values never reached 6 (max {peak:.3g}), so they agree, but any larger value will not be capped"
            )
            return CauseEvidence("activation.relu", detail, 0.0, 0.0, m.step.name)
    return None


UPSAMPLE = "segmentation_head.upsample"
PASS_THROUGH = 1e-5  # a tensor after the last match that equals it (or its softmax) to this relative RMS


def _unchecked_ours(steps: list[Step], matches: list[Match], output: str) -> list[str]:
    """What of npmnv2's network no matched op covers: everything, or the steps after the last match
    up to the network's output (the optional upsampling of segmentation logits aside)."""
    if not matches:
        return [
            "no tensor of the port matched any of npmnv2's steps (by shape and value), so nothing was checked: "
            "give tensors of the network's own layers (NCHW or NHWC, float), and the config the port implements"
        ]
    names = [s.name for s in steps]
    last = max(names.index(m.step.name) for m in matches)
    if output in names[: last + 1]:
        return []
    tail = [n for n in names[last + 1 :] if n != UPSAMPLE]
    return [
        f"the port's output was not checked: npmnv2's last {len(tail)} steps ({tail[0]} ... {tail[-1]}) have no "
        "counterpart in the port; give the port's tensors up to its output (the logits)"
    ]


def _after_last_match(
    run: PeerRun, last: Match, unmatched: list[Any]
) -> tuple[Row | None, CauseEvidence | None, list[str]]:
    """The port's tensors computed after its last matched one: each must be that tensor passed on
    (reshaped, flattened), its softmax, or its argmax; one of its shape that is none of these is an op
    wrong on its own (a row and its evidence); one that cannot be compared is a gap."""
    order = {id(t): k for k, t in enumerate(run.tensors)}
    after = [t for t in unmatched if order.get(id(t), -1) > order.get(id(last.peer), len(run.tensors))]
    ref = last.value if not last.softmax else None
    if ref is None:
        return None, None, []
    step_size = last.peer.detail.get("scale") or 0.0
    gaps = []
    for t in after:
        fitted = in_our_layout(t.array, ref.shape, run.layout) if t.array.dtype.kind in "fiu" else None
        if fitted is None:
            flat = np.asarray(t.array).reshape(-1)
            if (
                flat.dtype.kind in "iu"
                and flat.size == ref.shape[0]
                and np.array_equal(flat, ref.reshape(len(ref), -1).argmax(1))
            ):
                continue  # the predicted class
            gaps.append(
                f"the port's tensor {t.name!r} (shape {tuple(t.array.shape)}), computed after its last matched op "
                f"{last.peer.name!r}, could not be compared with anything of npmnv2's"
            )
            continue
        value, layout = fitted
        scale = _rms(ref) or 1.0
        tolerance = max(PASS_THROUGH, 1.5 * step_size / scale)
        candidates = {"passed on": ref}
        if ref.ndim == 2:
            candidates["softmax"] = softmax(ref)
        errors = {k: _rms(value - c) / (_rms(c) or 1.0) for k, c in candidates.items()}
        if any(e <= tolerance for e in errors.values()):
            continue
        base = min(errors.values()) if all(np.isfinite(list(errors.values()))) else float("inf")
        name = f"after {last.step.name}"
        row = Row(
            name=name,
            peer_name=t.name,
            kind="output",
            peer_kind=t.kind,
            layout=layout,
            shape=tuple(value.shape),
            total=base,
            local=base,
            noise=tolerance / LOCAL_NOISE,
            local_ok=False,
            fused=[],
        )
        detail = f"{name}: the port's {t.name!r} is its own {last.peer.name!r} {_how_changed(value, ref)}"
        return row, CauseEvidence("output.changed_after_last_op", detail, 0.0, base, name), gaps
    return None, None, gaps


def _how_changed(value: np.ndarray, ref: np.ndarray) -> str:
    """What an op after the network's output did to it, in words."""
    if not np.all(np.isfinite(value)):
        return f"with {int(np.sum(~np.isfinite(value)))} non-finite values (NaN or inf)"
    if not np.any(value):
        return "zeroed"
    if _rms(value + ref) <= PASS_THROUGH * (_rms(ref) or 1.0):
        return "negated"
    if np.allclose(np.sort(value, axis=-1), np.sort(ref, axis=-1), rtol=1e-5, atol=1e-6 * (_rms(ref) or 1.0)):
        return "with its classes permuted"
    ratio = _rms(value) / (_rms(ref) or 1.0)
    for factor in (ratio, -ratio):
        if _rms(value - factor * ref) <= 1e-4 * _rms(value):
            return f"scaled by {factor:.4g}"
    return "changed by an op npmnv2 has no step for"


def _upsample_step(logits: Step, size: tuple[int, int]) -> Step:
    """transformers' post-processing as a step: the logits resized bilinearly to the input size
    (align_corners=False), for ports whose model ends with that resize."""
    from ..ops import resize_bilinear

    internal = internal_layout(logits.output)
    up = resize_bilinear(internal, tuple(size), align_corners=False)
    public = nhwc_to_nchw(up)
    return Step(
        name=UPSAMPLE,
        kind="resize",
        op=resize_bilinear,
        output_shape=tuple(public.shape),
        output=public,
        input_shapes=(logits.output_shape,),
        inputs=(logits.output,),
        attrs={"align_corners": False},
        sources=(logits.name,),
        index=logits.index + 1,
    )


def _total_tolerance(row: Row) -> float:
    """Total error is informational: it flags where differences become visible (1e-4 relative RMS
    for float, a few rounding steps' worth)."""
    return max(1e-4, 100 * LOCAL_NOISE * row.noise)


def _vanishing(trace: Any) -> list[str]:
    notes = []
    for s in trace.steps:
        if s.kind in ("residual_add", "block_output") and s.output is not None and np.abs(s.output).max() < VANISHING:
            notes.append(
                f"the reference's activations vanish at {s.name} (max |x| = {np.abs(s.output).max():.2g} < "
                f"{VANISHING:g}): no bug can show there. Use npmnv2.verify.random_weights or trained weights."
            )
            warnings.warn(notes[-1], NpMnV2Warning, stacklevel=3)
            break
    return notes


def _port_pixels(run: PeerRun, pixels: np.ndarray) -> np.ndarray | None:
    """The pixels the port's network read (NHWC, float64), when the port tells and they fit."""
    if run.input is None or run.input.ndim != 4:
        return None
    for value in (run.input, nchw_to_nhwc(run.input)):
        if value.shape == pixels.shape:
            return value.astype(np.float64)
    return None


def _input_row(run: PeerRun, pixels: np.ndarray) -> Row | None:
    """The pixels the port's network read, against the spec's pixels."""
    theirs = _port_pixels(run, pixels)
    if theirs is None:
        return None
    err, scale = _rms(theirs - pixels), _rms(pixels)
    noise = EPS32 * scale
    return Row(
        name="pixel_values",
        peer_name="(the input of its first op)",
        kind="input",
        peer_kind=None,
        layout=run.layout,
        shape=tuple(pixels.shape),
        total=err / scale,
        local=err / scale,
        noise=noise / scale,
        local_ok=err <= LOCAL_NOISE * noise,
        fused=[],
    )


def _diagnose_input(run: PeerRun, pixels: np.ndarray) -> list[CauseEvidence]:
    theirs = _port_pixels(run, pixels)
    base = _rms(theirs - pixels)
    found = []
    for cause_id in ("input.channel_order", "input.normalization"):
        ctx = Context(None, True, {}, theirs, "pixel_values")
        for proposal in CATALOGUE[cause_id]([], ctx):
            residual = _rms(proposal.pixels(pixels) - theirs)
            found.append(
                CauseEvidence(cause_id, proposal.detail, residual / _rms(theirs), base / _rms(theirs), "pixel_values")
            )
    return _ranked(found)


def _diagnose(
    replay: _Replay, m: Match, group: list[Step], start: dict[str, np.ndarray], frontier: set[str], config: Any
) -> list[CauseEvidence]:
    target = m.value
    seen: dict[str, list[np.ndarray]] = {}
    baseline = _public(m.step, replay.run(group, start, inputs_seen=seen))
    if m.softmax:
        baseline = softmax(baseline)
    scale = _rms(target) or 1.0
    base = _rms(baseline - target) / scale
    ctx = Context(
        config, "pixel_values" in frontier, seen, internal_layout(target) if not m.softmax else target, m.step.name
    )
    found = []
    for cause_id, hypothesis in CATALOGUE.items():
        for proposal in hypothesis(group, ctx):
            try:
                candidate = _propose(replay, group, start, proposal)
            except (ValueError, IndexError):
                continue  # a proposal that cannot run here (shapes) explains nothing
            candidate = (
                _public(m.step, candidate)
                if candidate.ndim == 4 and len(m.step.output_shape) == 4
                else (candidate.reshape(target.shape) if candidate.size == target.size else None)
            )
            if candidate is None or candidate.shape != target.shape:
                continue
            if m.softmax:
                candidate = softmax(candidate)
            residual = _rms(candidate - target) / scale
            target_step = proposal.target or next(iter(proposal.steps), m.step.name)
            found.append(CauseEvidence(cause_id, proposal.detail, residual, base, target_step))
    return _ranked(found)


def _propose(replay: _Replay, group: list[Step], start: dict[str, np.ndarray], proposal: Proposal) -> np.ndarray:
    begin = dict(start)
    if proposal.pixels is not None:
        if "pixel_values" not in begin:
            raise ValueError("not from the pixels")
        begin["pixel_values"] = proposal.pixels(begin["pixel_values"])
    return replay.run(group, begin, proposal.steps)


def _ranked(found: list[CauseEvidence]) -> list[CauseEvidence]:
    """The hypotheses that explain the port, best first: each id once, by its best proposal."""
    best: dict[str, CauseEvidence] = {}
    for evidence in found:
        if evidence.residual < CAUSE_SHARE * evidence.original:
            if evidence.cause not in best or evidence.residual < best[evidence.cause].residual:
                best[evidence.cause] = evidence
    return sorted(best.values(), key=lambda e: e.residual)


def dump_input(run: PeerRun, pixel_values: np.ndarray, channels: int) -> tuple[np.ndarray, list[str]]:
    """A dump's own input tensor (the first float image tensor with the model's channels, NCHW or
    NHWC): when it differs from the spec's preprocessing of the image in a way a catalogued input
    bug reproduces (channel order, [0, 1] range), it stays the port's input and is judged; otherwise
    npmnv2 runs on it (the port's own resize or crop is not what is being checked), and says so."""
    found = None
    for t in run.tensors:
        a = t.array
        if a.ndim == 4 and a.dtype.kind == "f" and channels in (a.shape[1], a.shape[3]):
            found = (t, a if a.shape[1] == channels else nhwc_to_nchw(a))
            break
        if a.ndim == 4:
            break  # the first 4-D tensor is the network's input or none is
    if found is None:
        return pixel_values, []
    tensor, theirs = found
    theirs = np.asarray(theirs, np.float32)
    run.input = theirs
    if theirs.shape == pixel_values.shape:
        err = _rms(theirs.astype(np.float64) - pixel_values) / (_rms(pixel_values) or 1.0)
        if err <= 1e-5:
            return pixel_values, []
        nhwc = nchw_to_nhwc(pixel_values).astype(np.float64)
        if _diagnose_input(run, nhwc):  # a catalogued input-pipeline bug: judged at pixel_values
            return pixel_values, []
        how = f"differs from npmnv2's preprocessing of the image (relative RMS {err:.2g})"
    else:
        shapes = ["x".join(map(str, a.shape)) for a in (theirs, pixel_values)]
        how = f"is {shapes[0]}, npmnv2's preprocessing gives {shapes[1]}"
    note = f"npmnv2 ran on the port's own input tensor {tensor.name!r}, which {how}: its preprocessing was not checked."
    return theirs, [note]

"""Verify an integer implementation (a C++ runtime, a microcontroller, an NPU) against npmnv2's
integer model, which is bit-exact with TFLite's reference kernels (or, loaded with kernels=, with its
optimized kernels or the XNNPACK delegate).

`check_integer(peer, model, pixels)`: the peer's integer tensors, under the integer model's step
names (`tflite_integer_tensors` gives the interpreter's this way); every op is re-run by npmnv2 on
the peer's own integer inputs and must give the peer's output exactly. At the first op that does
not, the integer hypotheses of the catalogue are tried:
    rounding.single        the requantization rounded once where the reference kernels round twice
    rounding.ties_up       the final shift rounded ties up (the optimized kernels' rule)
    rounding.float32       requantized by one float32 multiply, ties to even (XNNPACK's rule)
    zero_point.off_by_one  the input's zero point off by one in the sums
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..ops import Pad2D, nchw_to_nhwc, nhwc_to_nchw
from ..ops.conv import conv2d_int
from ..ops.depthwise import depthwise_conv2d_int
from ..ops.quantization import (
    multiply_by_float32_scale,
    multiply_by_quantized_multiplier_single_rounding,
    multiply_by_quantized_multiplier_ties_up,
    requantize_output,
)
from ..tflite.ops import has
from .report import CauseEvidence, Row, VerifyReport

IntegerHypothesis = Callable[[Any, int, np.ndarray, Any], list[tuple[str, np.ndarray]]]
INTEGER_CATALOGUE: dict[str, IntegerHypothesis] = {}


def integer_hypothesis(cause_id: str) -> Callable[[IntegerHypothesis], IntegerHypothesis]:
    def register(function: IntegerHypothesis) -> IntegerHypothesis:
        INTEGER_CATALOGUE[cause_id] = function
        return function

    return register


def _sums(model: Any, index: int, x: np.ndarray, step: Any, x_zero_point: int) -> np.ndarray | None:
    """The int32 sums of a CONV_2D / DEPTHWISE_CONV_2D op from input x (NHWC)."""
    op = model.graph.ops[index]
    if not has(op, "convolution"):
        return None
    p = model.op_parameters(index)
    sums = depthwise_conv2d_int if has(op, "depthwise") else conv2d_int
    a = step.attrs
    return sums(
        x,
        x_zero_point,
        p["weights"],
        p["weight_zero_point"],
        p["bias"],
        stride=a["stride"],
        dilation=a["dilation"],
        padding=Pad2D(*a["padding"]),
    )


def _requantized(model: Any, index: int, p: dict[str, Any], acc: np.ndarray, multiply: Any) -> np.ndarray:
    """Op `index`'s int32 sums requantized to its output integers with the rounding rule `multiply`, on
    the multiplier that rule takes (`QuantizedMobileNetV2.requantization`)."""
    weights = model.quantization_of(model.graph.ops[index]["inputs"][1])
    m0, shift = model.requantization(p["input_scale"], weights, p["output_scale"], multiply)
    return requantize_output(acc, m0, shift, p["output_zero_point"], p["output_range"], multiply=multiply)


def _under_other_rule(model: Any, index: int, x: np.ndarray, step: Any, rule: Any) -> np.ndarray | None:
    """Conv op `index` on input x requantized with the rounding rule `rule` instead of the kernel set's;
    None when the op is not a convolution or `rule` is already the kernel set's own."""
    p = model.op_parameters(index)
    acc = _sums(model, index, x, step, p.get("input_zero_point", 0))
    if acc is None or model.kernels.rule_for(model.graph.ops[index]) is rule:
        return None
    return _requantized(model, index, p, acc, rule)


@integer_hypothesis("rounding.single")
def rounding_single(model: Any, index: int, x: np.ndarray, step: Any) -> list[tuple[str, np.ndarray]]:
    out = _under_other_rule(model, index, x, step, multiply_by_quantized_multiplier_single_rounding)
    if out is None:
        return []
    return [
        (
            f"{step.name}: the requantization rounded once ((acc * M0 + 2^(30 - shift)) >> (31 - shift)) where "
            "the reference kernels round twice",
            out,
        )
    ]


@integer_hypothesis("rounding.ties_up")
def rounding_ties_up(model: Any, index: int, x: np.ndarray, step: Any) -> list[tuple[str, np.ndarray]]:
    """The port rounds the final shift's ties up: what the interpreter's optimized kernels do (a port
    that matches them, checked against the reference kernels' rules)."""
    out = _under_other_rule(model, index, x, step, multiply_by_quantized_multiplier_ties_up)
    if out is None:
        return []
    return [
        (
            f"{step.name}: the requantization's final shift rounded ties up (toward +infinity), as the "
            f"interpreter's optimized kernels do, where the {model.kernels.name} kernels round ties away from zero "
            "(check against kernels='optimized' if the port targets them)",
            out,
        )
    ]


@integer_hypothesis("rounding.float32")
def rounding_float32(model: Any, index: int, x: np.ndarray, step: Any) -> list[tuple[str, np.ndarray]]:
    """The port requantizes in float32 (float32(acc) times the scales' float32 quotient, ties to even):
    what the XNNPACK delegate does (a port that matches it, checked against TFLite's own kernels)."""
    out = _under_other_rule(model, index, x, step, multiply_by_float32_scale)
    if out is None:
        return []
    return [
        (
            f"{step.name}: the requantization was one float32 multiply rounded to even, as the XNNPACK delegate "
            f"does, where the {model.kernels.name} kernels use a fixed-point multiplier and round twice (check "
            "against kernels='xnnpack' if the port targets it)",
            out,
        )
    ]


@integer_hypothesis("zero_point.off_by_one")
def zero_point_off_by_one(model: Any, index: int, x: np.ndarray, step: Any) -> list[tuple[str, np.ndarray]]:
    p = model.op_parameters(index)
    out = []
    for delta in (-1, 1):
        zp = p.get("input_zero_point", 0) + delta
        acc = _sums(model, index, x, step, zp)
        if acc is None:
            return []
        candidate = _requantized(model, index, p, acc, model.kernels.rule_for(model.graph.ops[index]))  # own rule
        out.append((f"{step.name}: the input zero point {zp} where the file says {zp - delta}", candidate))
    return out


def _internal(value: np.ndarray) -> np.ndarray:
    return nchw_to_nhwc(np.asarray(value)).astype(np.int64) if np.ndim(value) == 4 else np.asarray(value)


def _like(value: np.ndarray, want: np.ndarray) -> np.ndarray:
    """`value` in `want`'s shape when it holds as many values ((1, 1, 1, L) and (1, L)), else as it is."""
    value = np.asarray(value)
    return value.reshape(want.shape) if value.shape != want.shape and value.size == want.size else value


def runtime_names(peer: Mapping[Any, np.ndarray], model: Any, trace: Any) -> tuple[dict[str, np.ndarray], dict]:
    """The peer's tensors under the integer model's step names (NCHW when 4-D), and step -> the peer's
    own name. A runtime's dump is keyed by its own names: npmnv2's step names; the .tflite file's
    tensor names (what TFLite-based runtimes and the interpreter use) or tensor indices (`t12`, 12);
    or anything else, matched by structure: in the dump's order, each tensor to the next step whose
    output has its shape (NCHW or NHWC) and agrees with it best, exactly in most values."""
    graph = model.graph
    steps = trace.steps
    by_tensor = {graph.name(op["outputs"][0]): i for i, op in enumerate(graph.ops)}
    by_index = {op["outputs"][0]: i for i, op in enumerate(graph.ops)}
    step_names = {s.name: i for i, s in enumerate(steps)}

    def index_of(key: Any) -> int | None:
        if isinstance(key, (int, np.integer)):
            return by_index.get(int(key))
        text = str(key)
        if text in step_names:
            return step_names[text]
        if text in by_tensor:
            return by_tensor[text]
        if text[:1] == "t" and text[1:].isdigit():
            return by_index.get(int(text[1:]))
        return None

    def public(value: np.ndarray, step: Any) -> np.ndarray | None:
        a = np.asarray(value)
        want = tuple(step.output.shape)
        if a.shape == want:
            return a
        if a.ndim == 4 and nhwc_to_nchw(a).shape == want:
            return nhwc_to_nchw(a)
        if [d for d in a.shape if d != 1] == [d for d in want if d != 1]:  # (1, 1, 1, L) for (1, L)
            return a.reshape(want)
        return None

    named, theirs_of = {}, {}
    rest = []
    for key, value in peer.items():
        i = index_of(key)
        fitted = public(value, steps[i]) if i is not None else None
        if fitted is not None:
            named[steps[i].name], theirs_of[steps[i].name] = fitted, str(key)
        else:
            rest.append((key, value))
    start = 0
    for key, value in rest:  # by structure, in the dump's order
        best, best_score = None, 0.5
        for i in range(start, len(steps)):
            if steps[i].name in named:
                continue
            fitted = public(value, steps[i])
            if fitted is None or fitted.dtype.kind not in "iu":
                continue
            score = float(np.mean(fitted.astype(np.int64) == np.asarray(steps[i].output, np.int64)))
            if score > best_score:
                best, best_score = i, score
                if score == 1.0:
                    break
        if best is not None:
            named[steps[best].name], theirs_of[steps[best].name] = public(value, steps[best]), str(key)
            start = best + 1
    return named, theirs_of


def _explains(cause: str, model: Any, divergent: list[tuple[int, dict, np.ndarray, Any]]) -> int:
    """How many of the other ops that are wrong on their own the hypothesis `cause` reproduces exactly:
    what tells apart two rules that agree at the first one (XNNPACK's float32 requantization and a
    single rounding differ only where a value sits on a tie: on XNNPACK's own tensors of the Coral
    classifier both explain its first op, and single rounding then fails one of the 50 others)."""
    count = 0
    for index, tensors, want, step in divergent:
        x = tensors[model.graph.ops[index]["inputs"][0]]
        for _, candidate in INTEGER_CATALOGUE[cause](model, index, x, step):
            candidate = _like(candidate, want)
            if candidate.shape == want.shape and np.array_equal(candidate, want):
                count += 1
                break
    return count


def check_integer(peer: Mapping[Any, np.ndarray], model: Any, pixels: np.ndarray) -> VerifyReport:
    """Every op of `model` (a `QuantizedMobileNetV2`) re-run on the peer's integer inputs against the
    peer's integer output, exactly; the first op that differs, and the integer cause that reproduces it.

    peer: the peer's integer tensors under npmnv2's step names (as `tflite_integer_tensors` gives),
    the .tflite's own tensor names or indices, or any names (matched by structure: `runtime_names`);
    NCHW or NHWC. pixels: the quantized input both ran on (N, C, H, W).
    """
    trace = model.trace(pixels)
    peer, theirs_of = runtime_names(peer, model, trace)
    graph = model.graph
    producer = {t: i for i, op in enumerate(graph.ops) for t in op["outputs"]}
    rows, first, explained = [], None, None
    divergent = []  # (op, its inputs, the peer's output, step) of every op that is wrong on its own
    for index, op in enumerate(graph.ops):
        step = trace.steps[index]
        theirs = peer.get(step.name)
        if theirs is None:
            continue
        tensors, complete = {}, True
        for t in op["inputs"]:
            if t == model.input_index:
                tensors[t] = _internal(pixels)
            elif t in producer:
                source = peer.get(model.step_name(producer[t]))
                if source is None:
                    complete = False
                    break
                tensors[t] = _internal(source)
        if not complete:
            continue
        want = _internal(theirs)
        local = _like(model.run_op(index, tensors), want)
        ours = _like(_internal(step.output), want)
        differ = int(np.count_nonzero(local != want)) if local.shape == want.shape else want.size
        total = int(np.count_nonzero(ours != want)) if ours.shape == want.shape else want.size
        rows.append(
            Row(
                step.name,
                theirs_of.get(step.name, step.name),
                step.kind,
                step.attrs.get("tflite_op"),
                "NCHW",
                tuple(np.shape(theirs)),
                total / want.size,
                differ / want.size,
                0.0,
                differ == 0,
                [],
            )
        )
        if differ:
            divergent.append((index, tensors, want, step))
            if first is None:
                first, explained = (index, tensors, want), step
    names = model.step_names()
    report = VerifyReport(
        rows=rows,
        unmatched_peer=sorted(set(peer) - set(names)),
        unmatched_ours=[n for n in names if n not in peer],
        framework="integer",
    )
    report.first_divergence = next((r.name for r in rows if r.total > 0), None)
    if not rows:
        report.gaps.append(
            "no tensor of the runtime could be judged: none matched an op of the file by name or by shape and "
            "value, or their inputs were missing; give every op's output (integers, NCHW or NHWC)"
        )
    elif trace.steps[-1].name not in {r.name for r in rows}:
        report.gaps.append(f"the runtime's output ({trace.steps[-1].name}) was not checked; give its tensor too")
    if first is not None:
        index, tensors, want = first
        report.first_local_divergence = explained.name
        report.explained_step = explained
        x = tensors[graph.ops[index]["inputs"][0]]
        base = float(np.count_nonzero(_like(model.run_op(index, tensors), want) != want)) / want.size
        found = []
        for cause, hypothesis in INTEGER_CATALOGUE.items():
            for detail, candidate in hypothesis(model, index, x, explained):
                candidate = _like(candidate, want)
                if candidate.shape != want.shape:
                    continue
                residual = float(np.count_nonzero(candidate != want)) / want.size
                found.append(CauseEvidence(cause, detail, residual, base, explained.name))
        exact = [e for e in found if e.residual == 0]
        if len({e.cause for e in exact}) > 1:  # two rules give the same numbers here: the later ops decide
            later = {e.cause: _explains(e.cause, model, divergent[1:]) for e in exact}
            order = list(INTEGER_CATALOGUE)
            exact.sort(key=lambda e: (-later[e.cause], order.index(e.cause)))
        report.causes = exact
        report.cause = report.causes[0].cause if report.causes else None
    return report

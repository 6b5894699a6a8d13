"""One validator for every TFLite graph npmnv2 reads, run before any computation and before any
call into the TFLite interpreter.

The rule: whatever the interpreter refuses, npmnv2 refuses, with a message naming the op, the
tensor and the field; whatever npmnv2 accepts, its integer model computes exactly as the
interpreter's reference kernels do. Where the interpreter's int32 arithmetic could overflow
(an accumulator, a left shift before a requantization), the file is refused: the checks below
bound every such value from the stored weights and the input's integer range.

`validate(graph)` checks, in order:
1. the model: schema version 3, one subgraph, one input, its lists (indices in range);
2. the op codes: builtin ops npmnv2 implements, no custom ops;
3. every tensor: a type npmnv2 reads, a positive shape under MAX_ELEMENTS, constant data of
   exactly the declared size or none, not both constant and variable, and its quantization
   (scales finite and > 0, zero points in the type's range, per-channel arrays as long as the
   quantized dimension, one scale on activations, no quantization on float tensors);
4. the graph: op indices in range, one writer per tensor, no op writing a constant or the
   input, every op reading only constants, the input or outputs of earlier ops (no cycles);
5. each op: its options table of the right type, its inputs' and output's types per role,
   strides and dilations in 1..MAX_STRIDE and equal in both directions, the output shape it
   would compute equal to the declared one, bias scale = input scale x weight scale, the
   requantization multipliers within what TFLite's integer kernels compute without overflow,
   resize sizes bounded.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..formats.errors import WeightFileError
from .ops import TFLITE_OPS
from .structure import ACTIVATION_NAMES, FUSED_ACTIVATIONS
from .validate_ops import CHECKS, ZERO_POINT_RANGE, Op

SCHEMA_VERSION = 3


MAX_ELEMENTS = 1 << 25  # elements of any one tensor (33.5M; DeepLabV3 at 513 needs 5.5M)


def validate(graph: Any) -> None:
    """Refuse `graph` (a `TFLiteGraph`) with a WeightFileError naming the op, tensor and field of
    the first problem; see the module docstring for what is checked."""
    _check_model(graph)
    constants = _check_tensors(graph)
    _check_wiring(graph, constants)
    graph.constants = constants  # what the per-op checks follow (a DEQUANTIZE of a float16 constant)
    graph.producers = {op["outputs"][0]: i for i, op in enumerate(graph.ops)}
    for index in range(len(graph.ops)):
        op = Op(graph, index)
        _check_options_and_types(op)
        CHECKS[op.row.handler](op)


def _fail(graph: Any, message: str) -> None:
    raise WeightFileError(f"{graph.where}: {message}.")


def _check_model(graph: Any) -> None:
    model = graph.model
    if model.Version() != SCHEMA_VERSION:
        _fail(graph, f"schema version {model.Version()}; TFLite reads version {SCHEMA_VERSION} only")
    if model.SubgraphsLength() != 1:
        _fail(graph, f"{model.SubgraphsLength()} subgraphs; a MobileNetV2 file has exactly one")
    sub = graph.graph
    n = sub.TensorsLength()
    if sub.InputsLength() != 1:
        _fail(graph, f"{sub.InputsLength()} graph inputs; npmnv2 runs models with one input (the image)")
    if sub.OutputsLength() < 1:
        _fail(graph, "no graph outputs")
    for kind, count, get in (("input", sub.InputsLength(), sub.Inputs), ("output", sub.OutputsLength(), sub.Outputs)):
        for i in range(count):
            if not 0 <= get(i) < n:
                _fail(graph, f"graph {kind} {i} is tensor index {get(i)}, outside the {n} tensors")
    for i in range(model.OperatorCodesLength()):  # every code, used or not: the interpreter resolves them all
        code = model.OperatorCodes(i)
        if code.CustomCode() is not None:
            name = code.CustomCode().decode("utf-8", "replace")
            _fail(graph, f"operator code {i} is the custom op {name!r}; npmnv2 runs builtin ops only")
        op, version = graph.codes[i]  # as the interpreter resolves it (`npmnv2.tflite.structure.operator_codes`)
        users = [j for j in range(graph.graph.OperatorsLength()) if graph.graph.Operators(j).OpcodeIndex() == i]
        who = f"op {users[0]} {op} (operator code {i})" if users else f"operator code {i}, {op}, used by no op,"
        if op not in TFLITE_OPS:
            _fail(graph, f"{who}: npmnv2 does not implement this op; it runs {', '.join(TFLITE_OPS)}")
        versions = TFLITE_OPS[op].versions
        if version not in versions:
            _fail(
                graph,
                f"{who} is version {version}; the interpreter's reference kernels run {op} versions "
                f"{versions.start}..{versions.stop - 1}",
            )


def _check_tensors(graph: Any) -> set[int]:
    """Check every tensor on its own; returns the indices of the constant ones."""
    constants = set()
    n_buffers = graph.model.BuffersLength()
    for t in range(graph.graph.TensorsLength()):
        tensor = graph.graph.Tensors(t)
        name = graph.name(t)
        where = f"tensor {t} {name!r}"
        dtype = graph.type_of(t)
        if dtype is None:
            _fail(
                graph,
                f"{where} has type code {tensor.Type()}, which npmnv2 does not read (it reads "
                "float32, float16, int32, int64, uint8 and int8)",
            )
        shape = tuple(int(s) for s in tensor.ShapeAsNumpy()) if tensor.ShapeLength() else ()
        if any(s < 1 for s in shape):
            _fail(graph, f"{where} has shape {shape}; every dimension must be at least 1")
        if math.prod(shape) > MAX_ELEMENTS:
            _fail(
                graph,
                f"{where} has shape {shape}, {math.prod(shape):,} elements; npmnv2 reads at most "
                f"{MAX_ELEMENTS:,} per tensor",
            )
        if not 0 <= tensor.Buffer() < n_buffers:
            _fail(graph, f"{where} uses buffer {tensor.Buffer()}, outside the file's {n_buffers} buffers")
        size = graph.model.Buffers(tensor.Buffer()).DataLength()
        if size:
            if size != math.prod(shape) * dtype.itemsize:
                _fail(
                    graph,
                    f"{where} holds {size} bytes of data; shape {shape} of {dtype} needs "
                    f"{math.prod(shape) * dtype.itemsize}",
                )
            if tensor.IsVariable():
                _fail(graph, f"{where} is both constant (it holds data) and variable")
            constants.add(t)
        _check_quantization(graph, t, where, dtype, shape)
    return constants


def _check_quantization(graph: Any, t: int, where: str, dtype: np.dtype, shape: tuple[int, ...]) -> None:
    q = graph.graph.Tensors(t).Quantization()
    if q is None or q.ScaleLength() == 0:
        if q is not None and q.ZeroPointLength():
            _fail(graph, f"{where} has {q.ZeroPointLength()} zero points but no scale")
        return
    if dtype.kind == "f":
        _fail(
            graph,
            f"{where} is {dtype} but carries quantization parameters; a float tensor has none "
            "(npmnv2 does not guess whether its values are real numbers or integers)",
        )
    scale, zero_point = q.ScaleAsNumpy(), q.ZeroPointAsNumpy() if q.ZeroPointLength() else np.zeros(0, np.int64)
    if len(zero_point) != len(scale):
        _fail(graph, f"{where} has {len(scale)} scales and {len(zero_point)} zero points; the counts must match")
    bad = ~(np.isfinite(scale) & (scale > 0))
    if bad.any():
        _fail(graph, f"{where} has scale {float(scale[bad][0]):.6g}; every scale must be finite and > 0")
    low, high = ZERO_POINT_RANGE.get(dtype, (0, 0))  # int32 (bias), int64: zero point 0
    out = (zero_point < low) | (zero_point > high)
    if out.any():
        _fail(graph, f"{where} ({dtype}) has zero point {int(zero_point[out][0])}; it must lie in [{low}, {high}]")
    axis = q.QuantizedDimension()
    if axis < 0 or (shape and axis >= len(shape)):  # the interpreter checks it whatever the number of scales
        _fail(graph, f"{where} has quantized_dimension {axis}, outside its {len(shape)} dimensions")
    if len(scale) > 1:
        if not 0 <= axis < len(shape) or shape[axis] != len(scale):
            _fail(
                graph,
                f"{where} has {len(scale)} per-channel scales on dimension {axis} of shape {shape}; "
                "there must be one per entry of that dimension",
            )


def _check_wiring(graph: Any, constants: set[int]) -> None:
    """Indices in range; one writer per tensor; each op reads constants, the graph input or
    outputs of earlier ops (so there is no cycle and no op reads its own output)."""
    n = graph.graph.TensorsLength()
    n_codes = graph.model.OperatorCodesLength()
    graph_input = graph.graph.Inputs(0)
    if graph_input in constants:
        _fail(graph, f"the graph input, tensor {graph.name(graph_input)!r}, holds constant data")
    available = set(constants) | {graph_input}
    written: dict[int, int] = {}
    for index in range(len(graph.ops)):
        op = Op(graph, index)
        code = graph.graph.Operators(index).OpcodeIndex()
        if not 0 <= code < n_codes:
            op.fail(f"opcode_index {code} is outside the file's {n_codes} operator codes", tensor=-1)
        if op.row is None:
            op.fail(f"npmnv2 does not implement this op; it runs {', '.join(TFLITE_OPS)}", tensor=-1)
        for position, t in enumerate(op.inputs):  # a bias of -1 (none) is refused: the interpreter's
            if not 0 <= t < n:  # reference conv kernels expect one
                op.fail(f"input {position} is tensor index {t}, outside the {n} tensors", tensor=-1)
            if t not in available:
                op.fail(
                    f"input {position}, tensor {graph.name(t)!r}, is neither a constant, the graph input nor "
                    "the output of an earlier op (a cycle, or ops out of order)",
                    tensor=-1,
                )
        if len(op.outputs) != 1:
            op.fail(f"{len(op.outputs)} outputs; it has exactly one", tensor=-1)
        out = op.outputs[0]
        if not 0 <= out < n:
            op.fail(f"output is tensor index {out}, outside the {n} tensors", tensor=-1)
        if out in constants or out == graph_input:
            op.fail("writes a tensor that is a constant or the graph input")
        if out in written:
            op.fail(f"writes the same tensor as op {written[out]}; each tensor has one writer")
        written[out] = index
        available.add(out)
    for i in range(graph.graph.OutputsLength()):
        t = graph.graph.Outputs(i)
        if t not in written:
            _fail(graph, f"graph output {i}, tensor {graph.name(t)!r}, is written by no op")


def _check_options_and_types(op: Op) -> None:
    options_type = op.record["options_type"]
    if options_type not in op.row.options:
        op.fail(
            f"builtin_options_type is {options_type}; a {op.type} carries options type "
            f"{' or '.join(map(str, op.row.options))}"
        )
    if len(op.inputs) not in op.row.inputs:
        op.fail(f"{len(op.inputs)} inputs; a {op.type} has {' or '.join(map(str, op.row.inputs))}")
    activation = op.record.get("activation", 0)
    if activation not in FUSED_ACTIVATIONS:
        computed = ", ".join(f"{ACTIVATION_NAMES[c]} ({c})" for c in FUSED_ACTIVATIONS)
        op.fail(f"fused activation code {activation}; npmnv2 computes {computed}")

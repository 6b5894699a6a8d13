"""One op of a real .tflite file as a graph of its own: the op, its constants, its activations as the
graph's inputs and its output as the graph's output. What lets a test feed one op of a delegate
(XNNPACK, which exposes no intermediates) inputs no photo makes: random values over the full range."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import flatbuffers
import numpy as np
from ai_edge_litert import interpreter as litert
from ai_edge_litert import schema_py_generated as schema


def single_op_model(path: Path, index: int, edit: Callable[[Any, Any], None] | None = None) -> tuple[bytes, list[int]]:
    """(the one-op file's bytes, the tensor indices of its inputs): op `index` of `path` alone.
    edit(tree, op): changes made to the one-op model's object tree first (an option, a size)."""
    tree = schema.ModelT.InitFromPackedBuf(bytearray(Path(path).read_bytes()), 0)
    subgraph = tree.subgraphs[0]
    op = subgraph.operators[index]
    if edit is not None:
        edit(tree, op)
    constant = {
        i
        for i, t in enumerate(subgraph.tensors)
        if tree.buffers[t.buffer].data is not None and len(tree.buffers[t.buffer].data)
    }
    subgraph.inputs = [int(t) for t in op.inputs if t >= 0 and int(t) not in constant]
    subgraph.outputs = [int(op.outputs[0])]
    subgraph.operators = [op]
    builder = flatbuffers.Builder(1 << 20)
    builder.Finish(tree.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output()), subgraph.inputs


def run_single_op(model: bytes, inputs: list[np.ndarray], resolver: str) -> np.ndarray:
    """The one-op file run by the interpreter with OpResolverType `resolver` on `inputs` (NHWC)."""
    interpreter = litert.Interpreter(
        model_content=model, experimental_op_resolver_type=getattr(litert.OpResolverType, resolver), num_threads=1
    )
    interpreter.allocate_tensors()
    for detail, x in zip(interpreter.get_input_details(), inputs, strict=True):
        interpreter.set_tensor(detail["index"], x.astype(detail["dtype"]).reshape(detail["shape"]))
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def resize_edit(align_corners: bool, half_pixel_centers: bool, size: tuple[int, int]) -> Callable[[Any, Any], None]:
    """An `edit` for a RESIZE_BILINEAR: its two flags and its output size (the size constant and the
    output tensor's declared shape)."""

    def edit(tree: Any, op: Any) -> None:
        op.builtinOptions.alignCorners, op.builtinOptions.halfPixelCenters = align_corners, half_pixel_centers
        tensors = tree.subgraphs[0].tensors
        tree.buffers[tensors[op.inputs[1]].buffer].data = np.array(size, np.int32).view(np.uint8)
        out = tensors[op.outputs[0]]
        out.shape = np.array([out.shape[0], *size, out.shape[3]], np.int32)

    return edit

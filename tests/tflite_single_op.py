"""One op of a real .tflite file as a graph of its own: the op, its constants, its activations as the
graph's inputs and its output as the graph's output. What lets a test feed one op of a delegate
(XNNPACK, which exposes no intermediates) inputs no photo makes: random values over the full range."""

from __future__ import annotations

from pathlib import Path

import flatbuffers
import numpy as np
from ai_edge_litert import interpreter as litert
from ai_edge_litert import schema_py_generated as schema


def single_op_model(path: Path, index: int) -> tuple[bytes, list[int]]:
    """(the one-op file's bytes, the tensor indices of its inputs): op `index` of `path` alone."""
    tree = schema.ModelT.InitFromPackedBuf(bytearray(Path(path).read_bytes()), 0)
    subgraph = tree.subgraphs[0]
    op = subgraph.operators[index]
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

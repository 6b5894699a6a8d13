"""An `.onnx` file as a peer (`onnx_peer`): checked before ONNX Runtime opens it (size, a child process
with a memory limit and a timeout), run node by node, every tensor matched to npmnv2's vocabulary
(conv, depthwise, batch norm, activation, ...) by the node's op type, and its weights read by structure.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .peers import PeerLayer, PeerRun, PeerTensor, attach_batch_norm, oihw_conv_kind, torch_kernel

_ONNX_KINDS = {
    "Conv": "conv",
    "BatchNormalization": "batch_norm",
    "Relu": "activation",
    "Clip": "activation",
    "Add": "add",
    "GlobalAveragePool": "pool",
    "AveragePool": "pool",
    "ReduceMean": "pool",
    "Gemm": "linear",
    "MatMul": "linear",
    "Softmax": "softmax",
    "Resize": "resize",
}


@dataclass
class _OnnxNode:
    """One node of an ONNX graph as the child process describes it (no protobuf in this process)."""

    op_type: str
    input: list[str]
    output: list[str]
    attrs: dict[str, Any]


ONNX_MEMORY_LIMIT = 4 << 30  # bytes of address space ONNX Runtime's child may map


ONNX_TIMEOUT = 300.0


MAX_ONNX_BYTES = 1 << 29  # 512 MiB: a float32 MobileNetV2 1.4 is 25 MB


def _checked_onnx_path(path: str | os.PathLike) -> Path:
    from ..formats.errors import WeightFileError, regular_file

    path = regular_file(Path(path).resolve(), "ONNX file")
    if path.stat().st_size > MAX_ONNX_BYTES:
        raise WeightFileError(
            f"ONNX file {str(path)!r} is {path.stat().st_size:,} bytes; npmnv2 reads MobileNetV2 exports of at most "
            f"{MAX_ONNX_BYTES:,}."
        )
    return path


def onnx_input_shape(path: str | os.PathLike) -> list[int | None]:
    """The declared shape of an ONNX graph's input, read in the isolated child (after its checks)."""
    import json
    import tempfile

    from .child import Limits, run_child

    path = _checked_onnx_path(path)
    with tempfile.TemporaryDirectory(prefix="npmnv2-onnx-") as folder:
        run = run_child(
            "onnx_input", [str(path)], file=path, what="ONNX Runtime", limits=Limits(ONNX_MEMORY_LIMIT, ONNX_TIMEOUT),
            workdir=Path(folder),
        )  # fmt: skip
    return json.loads(run.stdout.strip().splitlines()[-1])


def onnx_peer(path: str | os.PathLike, pixel_values: np.ndarray) -> PeerRun:
    """An `.onnx` file run by ONNX Runtime with every node's output added to the graph's outputs, in
    an isolated child process with a memory limit and a timeout (`npmnv2.verify.child`): the file is
    refused there, naming what is wrong, when it keeps data in other files or holds an op a
    MobileNetV2 export does not contain (control flow, custom domains). Conv weights come from the
    initializers and Constant nodes (a batch norm the exporter folded shows as a bias)."""
    import json
    import tempfile

    from .child import Limits, run_child

    path = _checked_onnx_path(path)
    with tempfile.TemporaryDirectory(prefix="npmnv2-onnx-") as folder:
        work = Path(folder)
        np.save(work / "pixels.npy", np.ascontiguousarray(pixel_values, np.float32), allow_pickle=False)
        args = [str(path), str(work / "pixels.npy"), str(work / "out.npz"), str(work / "graph.json")]
        limits = Limits(ONNX_MEMORY_LIMIT, ONNX_TIMEOUT)
        run_child("onnx", args, file=path, what="ONNX Runtime", limits=limits, workdir=work)
        described = json.loads((work / "graph.json").read_text())
        with np.load(work / "out.npz", allow_pickle=False) as stored:
            arrays = {k: stored[k] for k in stored.files}
    inits = {name: arrays[key] for name, key in described["constants"].items()}
    values = {name: arrays[key] for name, key in described["values"].items()}
    feed_name, fed = described["feed"], arrays["fed"]
    values[feed_name] = fed
    nodes = [
        _OnnxNode(n["op"], n["inputs"], n["outputs"], n["attrs"]) for n in described["nodes"] if n["op"] != "Constant"
    ]
    tensors, layers = [], []
    consumers: dict[str, list[Any]] = {}
    for node in nodes:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    affine = _affine_after_conv(nodes, consumers, inits)  # Mul / Add tensors of an exported batch norm
    biased: dict[str, np.ndarray] = {}  # an Add that gives a MatMul its bias -> that bias (MatMul + Add = Linear)
    for node in nodes:
        if node.op_type == "MatMul" and node.input[1] in inits and len(consumers.get(node.output[0], [])) == 1:
            after = consumers[node.output[0]][0]
            other = [n for n in after.input if n != node.output[0]]
            if after.op_type == "Add" and len(other) == 1 and other[0] in inits and inits[other[0]].ndim == 1:
                biased[after.output[0]] = inits[other[0]]
                biased[node.output[0]] = None
    for node in nodes:
        out = node.output[0]
        if out not in values:
            continue
        kind = _ONNX_KINDS.get(node.op_type, "other")
        if out in affine:  # x * scale (kind other), then + shift: the batch norm's output
            role, values_of = affine[out]
            if role == "shift" and layers:
                layers[-1].affine = values_of
            kind = "batch_norm" if role == "shift" else "other"
            tensors.append(PeerTensor(out, kind, values[out], values.get(node.input[0])))
            continue
        if out in biased:  # the two halves of a Linear: the MatMul's tensor is not the layer's output
            if biased[out] is None:
                tensors.append(PeerTensor(out, "other", values[out], values.get(node.input[0])))
                w = inits[node.input[1]]
                pending_linear = PeerLayer(out, "linear", w.astype(np.float64), None)
                continue
            pending_linear.bias = np.asarray(biased[out], np.float64)
            pending_linear.name = out
            layers.append(pending_linear)
            tensors.append(PeerTensor(out, "linear", values[out], tensors[-1].input))
            continue
        attrs = node.attrs
        detail: dict[str, Any] = {}
        if node.op_type == "Conv":
            w = inits.get(node.input[1])
            group = int(attrs.get("group", 1))
            if w is not None:
                kind = oihw_conv_kind(group, w.shape)
                bias = inits.get(node.input[2]) if len(node.input) > 2 else None
                layers.append(PeerLayer(out, kind, torch_kernel(kind, w), bias))
        elif node.op_type == "BatchNormalization":
            gamma, beta, mean, var = (inits[n] for n in node.input[1:5])
            attach_batch_norm(layers, gamma, beta, mean, var, float(attrs.get("epsilon", 1e-5)))
        elif node.op_type == "MatMul" and node.input[1] in inits:  # a Linear without bias
            layers.append(PeerLayer(out, "linear", inits[node.input[1]].astype(np.float64), None))
        elif node.op_type == "Gemm" and node.input[1] in inits:
            w = inits[node.input[1]]
            kernel = w.T if attrs.get("transB", 0) else w
            bias = inits.get(node.input[2]) if len(node.input) > 2 else None
            layers.append(PeerLayer(out, "linear", kernel.astype(np.float64), bias))
        elif node.op_type in ("Relu", "Clip"):
            detail["activation"] = "relu" if node.op_type == "Relu" else "relu6"
        first = values.get(node.input[0]) if node.input else None
        tensors.append(PeerTensor(out, kind, values[out], first, detail))
    first_conv = next((t for t in tensors if t.kind in ("conv", "depthwise")), None)
    first_input = None if first_conv is None else first_conv.input
    return PeerRun("onnx", tensors, layers, "NCHW", first_input)  # ONNX's Conv is NCHW, whatever the input


def _affine_after_conv(nodes: list[Any], consumers: dict[str, list[Any]], inits: dict[str, np.ndarray]) -> dict:
    """{tensor: (role, values)} for a Conv followed by Mul(per-channel constant) and Add(per-channel
    constant), each the only reader of the one before: a batch norm TensorFlow's exporter left
    unfolded. The Mul's tensor gets ("scale", None), the Add's ("shift", (scale, shift))."""

    def per_channel(name: str, c: int) -> np.ndarray | None:
        a = inits.get(name)
        if a is None or a.size not in (1, c) or (a.ndim == 4 and a.shape[0] != 1):
            return None
        return np.broadcast_to(np.asarray(a, np.float64).reshape(-1), (c,)).copy()

    found: dict[str, tuple[str, Any]] = {}
    for node in nodes:
        if node.op_type != "Conv" or len(consumers.get(node.output[0], [])) != 1 or node.input[1] not in inits:
            continue
        c = inits[node.input[1]].shape[0]
        mul = consumers[node.output[0]][0]
        if mul.op_type != "Mul" or len(consumers.get(mul.output[0], [])) != 1:
            continue
        scale = per_channel(next((n for n in mul.input if n != node.output[0]), ""), c)
        add = consumers[mul.output[0]][0]
        shift = per_channel(next((n for n in add.input if n != mul.output[0]), ""), c) if add.op_type == "Add" else None
        if scale is not None and shift is not None:
            found[mul.output[0]] = ("scale", None)
            found[add.output[0]] = ("shift", (scale, shift))
    return found

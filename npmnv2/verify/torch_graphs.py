"""PyTorch ports that are graphs, not module trees: `torch.fx` GraphModules (also what
`torch.export` makes: `ExportedProgram.module()`) and TorchScript modules.

Forward hooks see only modules that are called. A `torch.fx.symbolic_trace` of a port inlines every
module that is not one of torch's own (timm's `BatchNormAct2d` becomes `F.batch_norm` on attributes
of a plain module) and writes the residual add as `operator.add`; a TorchScript module
(`torch.jit.script`, `torch.jit.trace`) refuses Python hooks altogether. Both are read here by what
each node of the graph computes:

- a GraphModule runs node by node (`torch.fx.Interpreter`); every tensor a node makes is kept, with
  the tensor it read, before an in-place op can change it;
- a TorchScript module is frozen (its parameters kept as attribute reads; `if self.has_skip` becomes the
  branch it takes), its in-place ops are made out-of-place, and every tensor of the graph becomes an
  output of one run.

An op is read by its ATen or functional name (convolution, batch norm, hardtanh/ReLU6/ReLU/clamp,
add, average pooling or mean, linear, softmax, resize; anything else is "other"), and its weights
from the parameters it reads — the parameter itself, before any op the port applies to it, so a
port that transposes its kernel on the fly is judged on the kernel it stores. Weight layers are
listed in the order the graph runs them.
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np

from .peers import (
    PeerLayer,
    PeerRun,
    PeerTensor,
    attach_batch_norm,
    need_peer_framework,
    oihw_conv_kind,
    torch_kernel,
)

# ATen / functional op names -> peer kind (the part after "aten::" or the function's __name__)
_KINDS = {
    "conv2d": "conv",
    "_convolution": "conv",
    "convolution": "conv",
    "batch_norm": "batch_norm",
    "hardtanh": "activation",
    "relu6": "activation",
    "relu": "activation",
    "clamp": "activation",
    "add": "add",
    "adaptive_avg_pool2d": "pool",
    "avg_pool2d": "pool",
    "mean": "pool",
    "linear": "linear",
    "softmax": "softmax",
    "upsample_bilinear2d": "resize",
    "interpolate": "resize",
}


def _op_name(name: str) -> str:
    """ "aten::hardtanh_" -> "hardtanh": the op, without its namespace or in-place mark."""
    return name.split("::")[-1].rstrip("_")


def _activation(op: str, low: Any, high: Any) -> str:
    if op == "relu6" or (op in ("hardtanh", "clamp") and (low, high) == (0.0, 6.0)):
        return "relu6"
    if op == "relu" or (op == "clamp" and low == 0.0 and high is None):
        return "relu"
    return f"{op}({low}, {high})"


def _numpy(value: Any) -> np.ndarray:
    return value.detach().cpu().numpy().copy()


class _Graph:
    """What the graph computed, op by op: PeerTensors and the weight layers they read."""

    def __init__(self) -> None:
        self.tensors: list[PeerTensor] = []
        self.layers: list[PeerLayer] = []

    def add(self, op: str, name: str, out: Any, inp: Any, args: list[Any], weights: dict[str, Any]) -> None:
        """One node: `op` its ATen/functional name, `args` its non-tensor arguments by position as the
        op takes them, `weights` the parameters it read ({"weight": tensor, "bias": ..., ...})."""
        kind = _KINDS.get(op, "other")
        detail: dict[str, Any] = {}
        if kind == "conv":
            weight = weights["weight"]
            groups = int(args[0])
            kind = oihw_conv_kind(groups, tuple(weight.shape))
            bias = None if weights.get("bias") is None else _numpy(weights["bias"]).astype(np.float64)
            self.layers.append(PeerLayer(name, kind, torch_kernel(kind, _numpy(weight)), bias))
        elif kind == "batch_norm":
            c = int(out.shape[1])
            gamma = weights.get("weight")
            beta = weights.get("bias")
            params = [
                np.ones(c) if gamma is None else _numpy(gamma),
                np.zeros(c) if beta is None else _numpy(beta),
                _numpy(weights["running_mean"]),
                _numpy(weights["running_var"]),
            ]
            attach_batch_norm(self.layers, *params, eps=float(args[0]))
        elif kind == "linear":
            bias = None if weights.get("bias") is None else _numpy(weights["bias"]).astype(np.float64)
            self.layers.append(PeerLayer(name, "linear", torch_kernel("linear", _numpy(weights["weight"])), bias))
        elif kind == "activation":
            detail["activation"] = _activation(op, *[*args, None, None][:2])
        elif kind == "add" and not (inp is not None and tuple(inp.shape) == tuple(out.shape)):
            kind = "other"
        elif kind == "pool" and out.dim() not in (2, 4):
            kind = "other"
        array = _numpy(out)
        self.tensors.append(PeerTensor(name, kind, array, None if inp is None else _numpy(inp), detail))

    def run(self, framework: str, first_input: np.ndarray) -> PeerRun:
        return PeerRun(framework, self.tensors, self.layers, "NCHW", first_input)


# ============================================================================ torch.fx


def fx_peer(module: Any, pixel_values: np.ndarray) -> PeerRun:
    """A `torch.fx.GraphModule`, run node by node on pixel_values (NCHW). Modules the graph calls are
    read by what they are (isinstance, as `torch_peer` does); functions and methods by name."""
    torch = need_peer_framework("torch", "torch==2.13.0")
    from .peers import torch_kind, torch_primitives, torch_weight_kind

    primitives = torch_primitives(torch)
    graph = _Graph()
    functions = {
        torch.nn.functional.conv2d: "conv2d",
        torch.conv2d: "conv2d",
        torch.nn.functional.batch_norm: "batch_norm",
        torch.batch_norm: "batch_norm",
        torch.nn.functional.hardtanh: "hardtanh",
        torch.nn.functional.relu6: "relu6",
        torch.nn.functional.relu: "relu",
        torch.relu: "relu",
        torch.clamp: "clamp",
        operator.add: "add",
        operator.iadd: "add",
        torch.add: "add",
        torch.nn.functional.adaptive_avg_pool2d: "adaptive_avg_pool2d",
        torch.nn.functional.avg_pool2d: "avg_pool2d",
        torch.mean: "mean",
        torch.nn.functional.linear: "linear",
        torch.nn.functional.softmax: "softmax",
        torch.softmax: "softmax",
        torch.nn.functional.interpolate: "interpolate",
    }
    # where the functional ops take their parameters and non-tensor arguments, by position (an ATen
    # overload, as `torch.export` writes, says it in its schema)
    functional = {
        "conv2d": ["input", "weight", "bias", "stride", "padding", "dilation", "groups"],
        "batch_norm": ["input", "running_mean", "running_var", "weight", "bias", "training", "momentum", "eps"],
        "linear": ["input", "weight", "bias"],
        "hardtanh": ["input", "min_val", "max_val"],
        "clamp": ["input", "min", "max"],
    }
    defaults = {"groups": 1, "eps": 1e-5, "min_val": -1.0, "max_val": 1.0, "min": None, "max": None}
    others = {"conv2d": ["groups"], "batch_norm": ["eps"], "hardtanh": ["min_val", "max_val"], "clamp": ["min", "max"]}

    def parameter(node: Any) -> tuple[Any, str | None]:
        """The parameter a weight argument comes from (followed back through the ops the port applies
        to it), and its qualified name."""
        seen = 0
        while isinstance(node, torch.fx.Node) and node.op != "get_attr" and seen < 8:
            node = next((a for a in node.all_input_nodes), None)
            seen += 1
        if isinstance(node, torch.fx.Node) and node.op == "get_attr":
            owner, _, attr = node.target.rpartition(".")
            return interpreter.fetch_attr(node.target), owner or attr
        return None, None

    class Recorder(torch.fx.Interpreter):
        def run_node(self, n: Any) -> Any:
            if n.op not in ("call_module", "call_function", "call_method"):
                return super().run_node(n)
            args, kwargs = self.fetch_args_kwargs_from_env(n)
            first = next((a for a in args if isinstance(a, torch.Tensor)), None)
            inp = None if first is None else first.detach().clone()  # before an in-place op changes it
            out = super().run_node(n)
            value = out
            if isinstance(out, tuple) and out and isinstance(n.target, torch._ops.OpOverload):
                value = out[0]  # a decomposed batch norm: (output, saved mean, saved invstd)
            if n.target is operator.getitem and isinstance(args[0], (tuple, list)):
                return out  # an element of a tuple an op made: already read with that op
            if isinstance(value, torch.Tensor) and value.is_floating_point():
                record(n, args, kwargs, inp, value)
            return out

    def record(n: Any, args: tuple, kwargs: dict, inp: Any, out: Any) -> None:
        if n.op == "call_module":
            mod = interpreter.fetch_attr(n.target)
            kind = torch_kind(mod, primitives)
            if kind in ("conv", "batch_norm", "linear"):
                weight_kind = torch_weight_kind(mod)
                op = {"conv": "conv2d", "depthwise": "conv2d", "batch_norm": "batch_norm"}.get(weight_kind, "linear")
                weights = {k: getattr(mod, k, None) for k in ("weight", "bias", "running_mean", "running_var")}
                extra = [mod.groups] if op == "conv2d" else [mod.eps] if op == "batch_norm" else []
                graph.add(op, n.target, out, inp, extra, weights)
            elif kind == "activation":
                graph.add(_activation_op(mod), n.target, out, inp, _activation_args(mod), {})
            elif kind in ("pool", "softmax"):
                graph.add("mean" if kind == "pool" else "softmax", n.target, out, inp, [], {})
            elif kind != "skip":
                graph.add("other", n.target, out, inp, [], {})
            return
        if isinstance(n.target, torch._ops.OpOverload):  # torch.export: aten.conv2d.default, ...
            op = _op_name(n.target._schema.name)
            op = {"_native_batch_norm_legit_no_training": "batch_norm", "convolution": "conv2d"}.get(op, op)
            names = [argument.name for argument in n.target._schema.arguments]
        else:
            op = functions.get(n.target) if n.op == "call_function" else _op_name(str(n.target))
            names = functional.get(op or "", [])
        op = op or "other"
        positions = {name: i for i, name in enumerate(names)}
        stack = list((n.meta.get("nn_module_stack") or {}).values())  # torch.export: the module it ran in
        weights, extra, name = {}, [], (stack[-1][0] if stack and stack[-1][0] else n.name)
        if op == "addmm":  # a decomposed linear: addmm(bias, input, weight.T)
            op, positions, inp = "linear", {"bias": 0, "weight": 2}, args[1]
        if op in functional:
            for key in ("weight", "bias", "running_mean", "running_var"):
                if key not in positions:
                    continue
                i = positions[key]
                value, owner = parameter(n.kwargs.get(key, n.args[i] if i < len(n.args) else None))
                if value is not None:
                    weights[key] = value
                    name = owner if key == "weight" or name == n.name else name
            given = [(k, positions[k]) for k in others.get(op, [])]
            extra = [kwargs.get(k, args[i] if i < len(args) else defaults[k]) for k, i in given]
        if op in ("conv2d", "linear") and "weight" not in weights:
            op = "other"  # a weight npmnv2 cannot trace to a parameter: not read as a weight layer
        if op == "batch_norm" and not {"running_mean", "running_var"} <= set(weights):
            op = "other"
        graph.add(op, name, out, inp, extra, weights)

    interpreter = Recorder(module)
    with torch.no_grad():
        try:
            module.eval()
        except NotImplementedError:  # a torch.export graph runs as it was exported: it refuses eval()
            pass
        x = torch.from_numpy(np.ascontiguousarray(pixel_values))
        interpreter.run(x)
    return graph.run("torch.fx", np.asarray(pixel_values))


def _activation_op(mod: Any) -> str:
    name = type(mod).__name__.lower()
    return "relu6" if "relu6" in name else "relu" if "relu" in name else "hardtanh"


def _activation_args(mod: Any) -> list[Any]:
    return [getattr(mod, "min_val", 0.0), getattr(mod, "max_val", 6.0)] if hasattr(mod, "min_val") else []


# ============================================================================ TorchScript

# ATen ops: where their non-tensor arguments and parameters sit, by input position
_ATEN_ARGS = {
    "conv2d": ({"weight": 1, "bias": 2}, [6]),
    "_convolution": ({"weight": 1, "bias": 2}, [8]),
    "convolution": ({"weight": 1, "bias": 2}, [8]),
    "batch_norm": ({"weight": 1, "bias": 2, "running_mean": 3, "running_var": 4}, [7]),
    "linear": ({"weight": 1, "bias": 2}, []),
    "hardtanh": ({}, [1, 2]),
    "clamp": ({}, [1, 2]),
}


def script_peer(module: Any, pixel_values: np.ndarray) -> PeerRun:
    """A TorchScript module (`torch.jit.script` or `torch.jit.trace`; a file is never loaded here:
    TorchScript archives hold pickles, so load your own with `torch.jit.load` and hand over the
    module). Frozen (a copy: the module is not changed), then run once with every tensor of the
    graph as an output."""
    torch = need_peer_framework("torch", "torch==2.13.0")
    try:
        # parameters stay attribute reads: a kernel the port transposes on the fly is not folded away
        frozen = torch.jit._recursive.wrap_cpp_module(torch._C._freeze_module(module.eval()._c, [], True, True))
        graph = frozen.graph
        torch._C._jit_pass_constant_propagation_immutable_types(graph)  # `if self.has_skip`: the branch taken
        torch._C._jit_pass_remove_mutation(graph)  # hardtanh_ -> hardtanh: every tensor keeps its value
    except (AttributeError, RuntimeError) as error:
        raise ValueError(
            f"verify: this TorchScript module could not be read with torch {torch.__version__} ({error}); "
            "hand over the Python module it was made from instead."
        ) from None
    nodes = [n for n in graph.nodes() if n.kind().startswith("aten::") and n.outputsSize() == 1]
    values = [list(graph.inputs())[1]] + [n.output() for n in nodes if n.output().type().kind() == "TensorType"]
    if any(_op_name(n.kind()) != n.kind().split("::")[-1] for n in nodes if _op_name(n.kind()) in _KINDS):
        raise ValueError("verify: this TorchScript module keeps in-place ops npmnv2 cannot undo; hand over the module.")
    outputs = graph.create("prim::TupleConstruct", values)
    graph.appendNode(outputs)
    outputs.moveBefore(graph.return_node())
    outputs.output().setType(torch._C.TupleType([v.type() for v in values]))
    graph.eraseOutput(0)
    graph.registerOutput(outputs.output())
    everything = torch._C._create_function_from_graph("every_tensor", graph)
    with torch.no_grad():
        arrays = everything(frozen._c, torch.from_numpy(np.ascontiguousarray(pixel_values)))
    by_value = {v.unique(): a for v, a in zip(values, arrays, strict=True)}
    result, last_owner = _Graph(), "input"
    for n in nodes:
        out = by_value.get(n.output().unique())
        if out is None or not out.is_floating_point():
            continue
        op = _op_name(n.kind())
        inputs = list(n.inputs())
        inp = by_value.get(inputs[0].unique()) if inputs else None
        weights, args = {}, []
        if op in _ATEN_ARGS:
            positions, arg_positions = _ATEN_ARGS[op]
            read = {k: _parameter(inputs[i], frozen._c) for k, i in positions.items() if i < len(inputs)}
            weights = {k: tensor for k, (tensor, _) in read.items()}
            owner = next((name for _, name in read.values() if name), None)
            args = [inputs[i].toIValue() for i in arg_positions if i < len(inputs)]
        else:
            owner = None
        scope = n.scopeName().split("/")[-1].replace("__module.", "")
        if owner:
            last_owner = owner
        name = scope or owner or f"{last_owner}:{op}"
        needed = {"batch_norm": ("running_mean", "running_var")}.get(op, ("weight",))
        if _KINDS.get(op) in ("conv", "linear", "batch_norm") and not all(
            isinstance(weights.get(k), torch.Tensor) for k in needed
        ):
            op = "other"  # a weight computed at run time, not a parameter: not read as a weight layer
        result.add(op, name, out, inp, args, weights)
    return result.run("torchscript", np.asarray(pixel_values))


def _parameter(value: Any, root: Any) -> tuple[Any, str | None]:
    """The parameter or buffer a graph value reads, and the module it belongs to: the value is
    followed back through the ops the port applies to it (a kernel transposed on the fly is read as
    the port stores it) to a chain of attribute reads from the module itself
    (`self.blocks.1.0.conv_pw.weight` -> (that tensor, "blocks.1.0.conv_pw"))."""
    for _ in range(8):
        node = value.node()
        if node.kind() == "prim::GetAttr":
            break
        if node.kind() == "prim::Constant":
            return value.toIValue(), None
        tensors = [i for i in node.inputs() if i.type().kind() == "TensorType"]
        if not tensors:
            return None, None
        value = tensors[0]
    else:
        return None, None
    path = []
    while node.kind() == "prim::GetAttr":
        path.append(node.s("name"))
        node = next(iter(node.inputs())).node()
    target = root
    for name in reversed(path):
        target = target.getattr(name)
    return target, ".".join(reversed(path[1:])) or None

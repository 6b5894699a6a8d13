"""The package layout: imports flow one way, no module calls another's private names, the step
path stays textbook, and every step of a trace says which op made it."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import numpy as np
from conftest import tiny_config

import npmnv2
from npmnv2 import MobileNetV2ForImageClassification as Cls
from npmnv2 import MobileNetV2ForSemanticSegmentation as Seg
from npmnv2 import ops

PACKAGE = Path(npmnv2.__file__).parent


def _module_name(path: Path) -> str:
    """ "cli", "ops.conv", "ops" (a package's __init__) for a file of the package."""
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py") if _module_name(p)}


def _imports(path: Path) -> dict[str, set[str]]:
    """{imported npmnv2 module: names taken from it}, counting imports inside functions too."""
    here = _module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    found: dict[str, set[str]] = {}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level >= 1:
            base = package[: len(package) - (node.level - 1)]
            if node.module:  # from .x import a, b
                target = ".".join([*base, node.module])
                if target not in MODULES:
                    continue
                found.setdefault(target, set()).update(a.name for a in node.names)
                for alias in node.names:  # from .ops import conv: a module, not a name
                    sub = f"{target}.{alias.name}"
                    if sub in MODULES:
                        found.setdefault(sub, set())
            else:  # from . import x
                for alias in node.names:
                    found.setdefault(".".join([*base, alias.name]), set())
    return {k: v for k, v in found.items() if k in MODULES and k != _module_name(path)}


# a NamedTuple's public methods start with an underscore
NAMEDTUPLE_API = {"_replace", "_asdict", "_fields", "_make", "_field_defaults"}


def _is_super(node: ast.AST) -> bool:
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "super"


# The one exception, and only in verify.torch_graphs: PyTorch's TorchScript and torch.export graph
# internals, for which torch has no public API (freezing a module while keeping its parameters as
# attribute reads, graph passes, a function from a graph, an ATen overload's schema). The TorchScript ones
# are wrapped there so that a torch that changes them gives a clear error, not a wrong verdict.
TORCH_INTERNALS = {"_C", "_ops", "_recursive", "_c", "_schema"} | {
    "_freeze_module",
    "_jit_pass_constant_propagation_immutable_types",
    "_jit_pass_remove_mutation",
    "_create_function_from_graph",
}


def test_no_module_reads_or_sets_another_objects_private_attributes() -> None:
    """obj._name is only for self and cls: a private attribute read or set from outside its class
    (another module's object, a model's hidden cache) is the coupling this rules out."""
    offenders = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and node.attr not in NAMEDTUPLE_API
                and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
                and not _is_super(node.value)  # super()._x is the object's own parent method
                and not (name == "verify.torch_graphs" and node.attr in TORCH_INTERNALS)
            ):
                offenders.append(f"{name}:{node.lineno} {ast.unparse(node)}")
    assert offenders == []


def test_no_hidden_state_in_a_models_dict() -> None:
    for name, path in MODULES.items():
        assert "__dict__[" not in path.read_text() and "__dict__.get(" not in path.read_text(), name


def test_npmnv2_modules_import_each_other_without_cycles() -> None:
    graph = {name: set(_imports(path)) for name, path in MODULES.items()}
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        assert name not in path, f"import cycle: {' -> '.join([*path, name])}"
        if name in done:
            return
        for dep in graph[name]:
            visit(dep, [*path, name])
        done.add(name)

    for name in graph:
        visit(name, [])


def test_no_module_uses_another_modules_private_names() -> None:
    offenders = []
    for name, path in MODULES.items():
        for module, names in _imports(path).items():
            offenders += [f"{name} imports {module}.{n}" for n in names if n.startswith("_")]
        tree = ast.parse(path.read_text())
        modules = set(_imports(path))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and isinstance(node.value, ast.Name)
                and node.value.id in modules
            ):
                offenders.append(f"{name} uses {node.value.id}.{node.attr}")
    assert offenders == []


def test_the_weight_readers_never_import_the_model_classes() -> None:
    for reader in ("tflite.graph", "tflite.layers", "tflite.float_import", "state_dict", "weights", "architecture"):
        assert "modeling_mobilenet_v2" not in _imports(MODULES[reader]), reader


def test_speed_tricks_stay_in_the_fast_path_module() -> None:
    tricks = r"as_strided|along_rows|homogeneous|INPLACE_|\bout=|einsum|writeable"
    step_path = [n for n in MODULES if n.startswith("ops")]
    step_path += ["modeling_mobilenet_v2", "network", "layer_kinds", "architecture", "trace", "tflite.integer_model"]
    for name in step_path:
        assert re.findall(tricks, MODULES[name].read_text()) == [], f"{name} holds fast-path code"


def test_every_traced_step_names_the_op_that_computed_it() -> None:
    model = Seg(tiny_config(num_labels=3, output_stride=16))
    trace = model.trace(np.zeros((1, 3, 65, 65), np.float32))
    for step in trace.steps:
        if step.kind == "block_output":  # the projection passed on: nothing computed
            assert step.op is None
            continue
        assert callable(step.op), step.name
        if step.kind in ("convolution", "batch_norm", "linear", "pooling", "resize", "concat", "residual_add"):
            assert step.op.__module__.startswith("npmnv2.ops."), step.name
            assert getattr(ops, step.op.__name__) is step.op, step.name  # public, re-exported by npmnv2.ops
            assert step.op.__name__ in step.explain(), step.name
        if step.kind == "convolution":
            assert "Math:" in inspect.getsource(step.op)  # one hop from the step to its formula
    pool = trace.step("segmentation_head.avg_pool")
    assert pool.op is ops.global_average_pool


def test_a_stride_2_depthwise_step_keeps_its_unpadded_input_and_the_padding() -> None:
    model = Cls(tiny_config())
    step = model.trace(np.zeros((1, 3, 224, 224), np.float32)).step("layer.12.conv_3x3.convolution")
    assert step.op is ops.depthwise_conv2d
    assert step.inputs[0].shape[2:] == (14, 14) and step.output.shape[2:] == (7, 7)
    assert step.attrs["padding"] == (0, 1, 0, 1)


def test_step_names_come_from_the_forward_itself() -> None:
    model = Cls(tiny_config(num_labels=4))
    names = model.step_names()
    assert names == [s.name for s in model.trace(np.zeros((1, 3, 64, 64), np.float32), layers=[]).steps]
    folded = model.fold_batchnorm()
    assert not [n for n in folded.step_names() if n.endswith(".normalization")]
    assert len(folded.step_names()) == len(names) - sum(n.endswith(".normalization") for n in names)


def test_running_a_model_leaves_no_state_on_it_and_its_arrays_cannot_be_edited_in_place() -> None:
    """Issue 30: `last_traced_input` and an in-place edit the fold cache could not see were state
    that went stale. After every way of running a model, its attributes are the same objects, and
    every parameter array is read-only (replace one to change it)."""
    for model in (
        Cls(tiny_config(num_labels=5)),
        Seg(tiny_config(num_labels=3, output_stride=16)),
    ):
        x = np.random.default_rng(0).normal(size=(1, 3, 65, 65)).astype(np.float32)
        before = {k: (type(v), id(v)) for k, v in vars(model).items() if k != "_fold_cache"}
        trace = model.trace(x)
        model(x)
        list(model.steps(x))
        name = trace.steps[5].name
        trace.run_from(name, trace[name])
        model.run_from(name, trace[name], pixel_values=x)
        model.summary(65)
        after = {k: (type(v), id(v)) for k, v in vars(model).items() if k != "_fold_cache"}
        assert after == before
        assert not any(a.flags.writeable for p in model.params.values() for a in p.values())

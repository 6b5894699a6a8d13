"""`verify.check` on ONNX files from the real exporters, as they come (issue 27): TensorFlow's tf2onnx
(NHWC input, batch norms of depthwise convolutions left as Mul + Add, explicit Pad nodes) and PyTorch's
TorchScript and dynamo exporters (batch norms folded into the convolutions). The files are made by
tests/ports/make_onnx_ports.py; the bugs are planted here by editing the exported graphs."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from onnx import helper, numpy_helper

from npmnv2 import verify

PORTS = Path(__file__).with_name("ports")
KERAS_SPEC = {"depth_multiplier": 0.35, "image_size": 96, "num_labels": 10, "tf_padding": True, "layer_norm_eps": 1e-3}
TIMM_SPEC = {**KERAS_SPEC, "tf_padding": False, "layer_norm_eps": 1e-5}
FILES = {"keras_tf2onnx.onnx": KERAS_SPEC, "timm_torchscript.onnx": TIMM_SPEC, "timm_dynamo.onnx": TIMM_SPEC}


@pytest.fixture(scope="module")
def cat(coral_dir):
    return coral_dir / "cat.bmp"


@pytest.mark.parametrize("name", list(FILES))
def test_an_onnx_export_as_it_comes_is_faithful_with_every_weight_read(name, cat):
    report = verify.check(PORTS / name, cat, config=FILES[name])
    assert report.faithful, report.explain()
    assert len(report.weights_read) == 53 and report.ops_judged > 95
    assert all("NOT READ" not in what for *_, what in report.weights_read)


def test_tf2onnx_depthwise_batch_norms_are_read_from_their_mul_and_add(cat):
    report = verify.check(PORTS / "keras_tf2onnx.onnx", cat, config=KERAS_SPEC)
    exported = [w for w in report.weights_read if "exported as scale and shift" in w[2]]
    assert len(exported) == 17 and all(ours.endswith("conv_3x3") for ours, _, _ in exported)


# ============================================================================ planted bugs


def _convs(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    return [n for n in model.graph.node if n.op_type == "Conv"]


def _consumer(model: onnx.ModelProto, tensor: str) -> onnx.NodeProto:
    return next(n for n in model.graph.node if tensor in n.input)


def _relu_for_relu6(model: onnx.ModelProto, conv_index: int) -> None:
    """The Clip after the conv_index-th Conv (past a Mul/Add batch norm) loses its upper bound."""
    node = _consumer(model, _convs(model)[conv_index].output[0])
    while node.op_type != "Clip":
        node = _consumer(model, node.output[0])
    del node.input[2:]  # Clip(x, min): no maximum


def _no_skip(model: onnx.ModelProto, add_index: int) -> None:
    """The add_index-th residual Add passes its projection on without the block's input."""
    adds = [n for n in model.graph.node if n.op_type == "Add" and not any(i in _inits(model) for i in n.input)]
    node = adds[add_index]
    projection = node.input[0] if _producer(model, node.input[0]).op_type == "Conv" else node.input[1]
    node.op_type, node.input[:] = "Identity", [projection]


def _symmetric_stem(model: onnx.ModelProto) -> None:
    stem = _convs(model)[0]
    for a in stem.attribute:
        if a.name == "pads":
            a.ints[:] = [1, 1, 1, 1]


def _negated_logits(model: onnx.ModelProto) -> None:
    out = model.graph.output[0]
    last = next(n for n in model.graph.node if out.name in n.output)
    last.output[:] = [out.name + "_before_neg"]
    model.graph.node.append(helper.make_node("Neg", [out.name + "_before_neg"], [out.name], name="planted_neg"))


def _inits(model: onnx.ModelProto) -> set[str]:
    return {i.name for i in model.graph.initializer}


def _producer(model: onnx.ModelProto, tensor: str) -> onnx.NodeProto:
    return next(n for n in model.graph.node if tensor in n.output)


def _planted(name: str, plant, tmp_path: Path) -> Path:
    model = onnx.load(str(PORTS / name))
    plant(model)
    path = tmp_path / f"planted_{name}"
    onnx.save(model, str(path))
    return path


PLANTED = [
    ("relu", lambda m: _relu_for_relu6(m, 4), "layer.0.conv_3x3.activation", "activation.relu"),
    ("no_skip", lambda m: _no_skip(m, 2), "layer.4", "residual.missing"),
    ("negated_logits", _negated_logits, "after classifier", "output.changed_after_last_op"),
]


@pytest.mark.parametrize("name", list(FILES))
@pytest.mark.parametrize("bug,plant,where,cause", PLANTED, ids=[p[0] for p in PLANTED])
def test_a_bug_planted_in_an_onnx_export_is_located_and_named(name, bug, plant, where, cause, cat, tmp_path):
    report = verify.check(_planted(name, plant, tmp_path), cat, config=FILES[name])
    assert report.first_local_divergence == where and report.cause == cause, report.explain()


def test_the_stem_padded_symmetrically_in_a_tf_same_export_is_named(cat, tmp_path):
    report = verify.check(_planted("keras_tf2onnx.onnx", _symmetric_stem, tmp_path), cat, config=KERAS_SPEC)
    assert report.first_local_divergence == "conv_stem.first_conv.convolution"
    assert report.cause == "padding.symmetric", report.explain()


def test_weights_held_in_constant_nodes_are_read(cat, tmp_path):
    model = onnx.load(str(PORTS / "timm_torchscript.onnx"))
    for conv in _convs(model)[:3]:
        init = next(i for i in model.graph.initializer if i.name == conv.input[1])
        constant = helper.make_node(
            "Constant", [], [init.name], value=numpy_helper.from_array(numpy_helper.to_array(init))
        )
        model.graph.initializer.remove(init)
        model.graph.node.insert(0, constant)
    path = tmp_path / "constant_weights.onnx"
    onnx.save(model, str(path))
    report = verify.check(path, cat, config=TIMM_SPEC)
    assert report.faithful and len(report.weights_read) == 53, report.explain()

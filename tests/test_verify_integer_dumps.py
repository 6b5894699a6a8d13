"""Integer runtime dumps as runtimes write them (issue 27, point 5): keyed by the .tflite file's own
tensor names or indices, or by any names at all, NCHW or NHWC, checked op by op against the integer
model with the integer causes named; junk is never faithful."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import CORAL_CLASSIFIER

import npmnv2
from npmnv2 import verify
from npmnv2.tflite.graph import TFLiteGraph
from npmnv2.verify.interpreter import interpreter_tensors


@pytest.fixture(scope="module")
def setup(coral_dir):
    path = coral_dir / CORAL_CLASSIFIER
    model = npmnv2.QuantizedMobileNetV2.from_pretrained(path)
    pixels, _ = verify.tflite_input(path, coral_dir / "cat.bmp")
    return path, model, pixels


def _interpreter_dump(path, pixels, key):
    graph = TFLiteGraph(path)
    computed = interpreter_tensors(path, pixels)  # the reference kernels, every tensor, NHWC
    outputs = [op["outputs"][0] for op in graph.ops]
    return {key(graph, t): computed[t] for t in outputs}


@pytest.mark.parametrize(
    "key", [lambda g, t: g.name(t), lambda g, t: t, lambda g, t: f"t{t}"], ids=["tensor-names", "indices", "t-index"]
)
def test_the_interpreters_own_dump_is_faithful_under_its_own_names(setup, key):
    path, model, pixels = setup
    report = verify.check_integer(_interpreter_dump(path, pixels, key), model, pixels.transpose(0, 3, 1, 2))
    assert report.faithful and len(report.rows) == len(model.graph.ops), report.explain()


def test_a_runtime_dump_with_names_of_its_own_is_matched_by_structure_and_its_bug_named(setup):
    path, model, pixels = setup
    index = model.step_names().index("layer.4.expand_1x1.convolution")
    p = model.op_parameters(index)
    tensors = {model.input_index: pixels.astype(np.int64)}
    dump = {}
    for i, op in enumerate(model.graph.ops):
        value = model.run_op(i, tensors)
        if i == index:  # the runtime's requantization rounds once
            acc = npmnv2.ops.conv.conv2d_int(tensors[op["inputs"][0]], p["input_zero_point"], p["weights"],
                                             p["weight_zero_point"], p["bias"], stride=1, dilation=1,
                                             padding=npmnv2.ops.Pad2D(0, 0, 0, 0))  # fmt: skip
            shift = 31 - p["shift"]
            scaled = (acc.astype(object) * p["m0"] + (1 << (shift - 1))) >> shift
            value = np.clip(scaled.astype(np.int64) + p["output_zero_point"], *p["output_range"])
        tensors[op["outputs"][0]] = value
        dump[f"node_{i:03d}_out"] = value.astype(np.uint8) if value.dtype != np.int64 or value.max() < 256 else value
    report = verify.check_integer(dump, model, pixels.transpose(0, 3, 1, 2))
    assert report.first_local_divergence == "layer.4.expand_1x1.convolution", report.explain()
    assert report.cause == "rounding.single"
    assert "your node_" in report.verdict()


def test_an_integer_dump_that_matches_nothing_is_inconclusive(setup):
    path, model, pixels = setup
    report = verify.check_integer({"x": np.zeros((3, 5), np.uint8)}, model, pixels.transpose(0, 3, 1, 2))
    assert report.status == "inconclusive" and not report.faithful

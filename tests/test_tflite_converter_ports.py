"""TFLite files from TensorFlow's own converter, in every form it writes (issue 27): read by the float
importer, run bit-exact by the integer model, and checked faithful by `verify`, as they are handed over.

The files in tests/ports/ are made by tests/ports/make_tflite_ports.py (a Keras 3 MobileNetV2, width
0.35 at 96 pixels, 10 classes, verification-grade random weights): float32; float16 weights behind
DEQUANTIZE ops; dynamic-range int8 weights (hybrid ops); full integer with float, uint8 and int8 input
and output. TensorFlow writes MEAN without keep_dims for the global average pool, a FULLY_CONNECTED
classifier after it, and one 1x1 convolution with VALID padding.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

import npmnv2
from npmnv2 import verify
from npmnv2.tflite.graph import TFLiteGraph
from npmnv2.tflite.layers import match_layers
from npmnv2.verify.interpreter import interpreter_tensors
from tests.tflite_edit import TFLiteEdit

PORTS = Path(__file__).with_name("ports")
FLOAT_FORMS = ["float32", "float16", "dynamic_range"]
INTEGER_FORMS = ["int8_float", "int8_uint8", "int8_int8"]
NPMNV2 = Path(sys.executable).with_name("npmnv2")


def port(form: str) -> Path:
    return PORTS / f"keras_tfconverter_{form}.tflite"


def test_the_converter_writes_what_these_tests_are_about():
    graph = TFLiteGraph(port("float32"))
    mean = next(op for op in graph.ops if op["type"] == "MEAN")
    assert mean["keep_dims"] is False
    assert any(op["type"] == "CONV_2D" and op["padding"] == "VALID" for op in graph.ops)
    assert graph.ops[-2]["type"] == "FULLY_CONNECTED"
    assert sum(op["type"] == "DEQUANTIZE" for op in TFLiteGraph(port("float16")).ops) > 100
    for form, dtype in [("int8_float", np.float32), ("int8_uint8", np.uint8), ("int8_int8", np.int8)]:
        g = TFLiteGraph(port(form))
        assert g.type_of(g.graph.Inputs(0)) == np.dtype(dtype) == g.type_of(g.graph.Outputs(0))


@pytest.mark.parametrize("form", FLOAT_FORMS + INTEGER_FORMS)
def test_every_form_is_read_by_the_float_importer(form):
    model = npmnv2.MobileNetV2ForImageClassification.from_pretrained(port(form))
    c = model.config
    assert (c.depth_multiplier, c.num_labels, c.image_size, c.tf_padding) == (0.35, 10, 96, True)


@pytest.mark.parametrize("form", ["float32", "float16"])
def test_the_float_model_of_a_float_file_gives_the_interpreters_probabilities(form, coral_dir):
    model = npmnv2.MobileNetV2ForImageClassification.from_pretrained(port(form))
    pixels, pixel_values = verify.tflite_input(port(form), coral_dir / "cat.bmp")
    interpreter = Interpreter(model_path=str(port(form)))
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], pixels)
    interpreter.invoke()
    theirs = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    ours = npmnv2.ops.softmax(model(pixel_values).logits)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


@pytest.mark.parametrize("form", INTEGER_FORMS)
def test_every_tensor_of_the_integer_model_equals_the_reference_kernels(form, coral_dir):
    model = npmnv2.QuantizedMobileNetV2.from_pretrained(port(form))
    graph = TFLiteGraph(port(form))
    rng = np.random.default_rng(1)
    inputs = [verify.tflite_input(port(form), coral_dir / f"{n}.bmp")[0] for n in ("cat", "sunflower")]
    if model.input_dtype.kind == "f":
        inputs.append(rng.uniform(-1.2, 1.2, (1, 96, 96, 3)).astype(np.float32))
    else:
        info = np.iinfo(model.input_dtype)
        inputs.append(rng.integers(info.min, info.max + 1, (1, 96, 96, 3)).astype(model.input_dtype))
    for x in inputs:
        theirs = interpreter_tensors(port(form), x)
        trace = model.trace(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
        assert len(trace.steps) == len(graph.ops)
        for op, step in zip(graph.ops, trace.steps, strict=True):
            ours = step.output.transpose(0, 2, 3, 1) if step.output.ndim == 4 else step.output
            expected = theirs[op["outputs"][0]]
            assert ours.shape == expected.shape, step.name
            np.testing.assert_array_equal(ours.astype(expected.dtype), expected, err_msg=f"{form} {step.name}")


@pytest.mark.parametrize("form", FLOAT_FORMS + INTEGER_FORMS)
def test_verify_calls_each_faithful_converter_file_faithful(form, coral_dir):
    report = verify.check(port(form), coral_dir / "cat.bmp")
    assert report.faithful, report.explain()
    assert report.ops_judged == 64
    assert ("quantization" in report.verdict()) == form.startswith("int8")


def test_classify_runs_the_converters_int8_file_with_the_integer_model(coral_dir):
    run = subprocess.run(
        [str(NPMNV2), "classify", str(coral_dir / "cat.bmp"), "--weights", str(port("int8_int8")), "--integer"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert "LABEL_" in run.stdout or len(run.stdout.splitlines()) >= 2


def test_a_dynamic_range_file_is_judged_on_what_its_hybrid_kernels_read(coral_dir):
    """Its hybrid ops quantize their float input to int8 on the fly; npmnv2 replays that (per batch
    item, per pixel for the optimized kernels' 1x1 convolutions), so the criterion stays tight."""
    report = verify.check(port("dynamic_range"), coral_dir / "grace_hopper.bmp")
    hybrid = [r for r in report.rows if r.noise > 1e-5]
    assert report.faithful and len(hybrid) > 30, report.explain()
    assert max(r.local / (r.noise * report.criterion) for r in report.rows) < 0.5


PLANTED = [  # (layer, fused activation code written into its op, where it shows, cause)
    ("layer.5.expand_1x1", 1, "layer.5.expand_1x1.activation", "activation.relu"),
    ("layer.3.conv_3x3", 0, "layer.3.conv_3x3.activation", "activation.missing"),
    ("layer.7.reduce_1x1", 3, "layer.7.reduce_1x1.normalization", "activation.on_projection"),
]


@pytest.mark.parametrize("form", FLOAT_FORMS)
@pytest.mark.parametrize("layer,code,where,cause", PLANTED, ids=[c for *_, c in PLANTED])
def test_a_bug_planted_in_a_converter_file_is_located_named_and_given_the_files_name(
    form, layer, code, where, cause, coral_dir, tmp_path
):
    index = {v: k for k, v in match_layers(TFLiteGraph(port(form))).items()}
    edit = TFLiteEdit(port(form))
    edit.set_options(index[layer], activation=code)
    report = verify.check(edit.save(tmp_path / "planted.tflite"), coral_dir / "cat.bmp")
    assert report.first_local_divergence == where and report.cause == cause, report.explain()
    assert "mobilenetv2_0.35_96_1/block_" in report.verdict()  # the file's own tensor name


def test_config_is_honoured_for_a_tflite_peer(coral_dir):
    """Issue 27: config= was ignored for .tflite peers. A preset gives its hyperparameters (here
    torchvision's symmetric padding) and the file its architecture."""
    report = verify.check(port("float32"), coral_dir / "cat.bmp", config="torchvision")
    assert report.first_local_divergence == "conv_stem.first_conv.convolution"
    assert report.cause == "padding.tf_same"
    assert verify.check(port("float32"), coral_dir / "cat.bmp", config="keras").faithful

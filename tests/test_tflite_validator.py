"""Hostile input, round 2 (issue 20), points 1, 3, 4, 5 and 6: each crafted TFLite file the
second round found, built here from the real Coral files, is refused by the validator or the
float importer with a message naming the op, the tensor and the field, before anything computes
on it or hands it to the TFLite interpreter. Before, each of these loaded, and most computed.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import tflite

import npmnv2
from npmnv2.tflite.float_import import read_tflite
from npmnv2.tflite.graph import TFLiteGraph
from npmnv2.tflite.integer_model import QuantizedMobileNetV2
from npmnv2.weights import WeightFileError
from tests.tflite_edit import TFLiteEdit

CLASSIFIER = "mobilenet_v2_1.0_224_quant.tflite"
TF2 = "tf2_mobilenet_v2_1.0_224_ptq.tflite"
DEEPLAB = "deeplabv3_mnv2_dm05_pascal_quant.tflite"
EMBEDDED = Path(npmnv2.__file__).parent / "data" / CLASSIFIER


def refused(path, *words: str) -> str:
    """Both readers refuse `path` with a WeightFileError whose message holds every word."""
    with pytest.raises(WeightFileError) as info:
        QuantizedMobileNetV2.from_pretrained(path)
    message = str(info.value)
    for word in words:
        assert word in message, message
    assert str(path) in message
    with pytest.raises(WeightFileError):
        read_tflite(path)
    return message


@pytest.fixture
def edit(coral_dir):
    return lambda name: TFLiteEdit(coral_dir / name)


# ============================================================================ point 1: interpreter crashes


def test_an_activation_tensor_carrying_constant_data_is_refused(edit, tmp_path):
    e = edit(CLASSIFIER)
    weights = e.op_input(1, 1)  # op 1's depthwise kernel: a constant
    e.set_tensor_buffer(e.op_output(0), e.graph.Tensors(weights).Buffer())
    refused(e.save(tmp_path / "m.tflite"), "tensor")


def test_a_residual_add_with_output_scale_1e_12_is_refused(edit, tmp_path):
    e = edit(CLASSIFIER)
    add = e.ops_of("ADD")[0]
    e.set_scale(e.op_output(add), 1e-12)
    refused(e.save(tmp_path / "m.tflite"), f"op {add} ADD", "output scale")


def test_a_softmax_beta_of_nan_is_refused(edit, tmp_path):
    e = edit(CLASSIFIER)
    softmax = e.ops_of("SOFTMAX")[0]
    e.set_options(softmax, beta=float("nan"))
    refused(e.save(tmp_path / "m.tflite"), "SOFTMAX", "beta")


def test_compare_against_tflite_on_a_crashing_file_is_one_line(edit, tmp_path, coral_dir, capsys):
    from npmnv2.cli import main

    e = edit(CLASSIFIER)
    e.set_scale(e.op_output(e.ops_of("ADD")[0]), 1e-12)
    path = e.save(tmp_path / "m.tflite")
    code = main(["compare", str(coral_dir / "cat.bmp"), "--weights", str(path), "--against", "tflite"])
    err = capsys.readouterr().err
    assert code == 1
    assert len(err.strip().splitlines()) == 1 and "output scale" in err


def test_an_interpreter_crash_is_one_line_naming_the_file(monkeypatch, tmp_path):
    """The interpreter runs in a child process: a segfault there is an error here, not a crash."""
    import subprocess
    import sys

    from npmnv2.verify import interpreter

    real_run = subprocess.run

    def crashing(command, **kwargs):
        return real_run([sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"], **kwargs)

    from npmnv2.verify import child

    monkeypatch.setattr(child.subprocess, "run", crashing)
    with pytest.raises(
        interpreter.InterpreterError, match=r"crashed on .*_quant.tflite' \(signal 11, SIGSEGV\): the file is malformed"
    ):
        interpreter.interpreter_tensors(EMBEDDED, np.zeros((1, 224, 224, 3), np.uint8))


def test_the_interpreter_child_has_a_memory_limit(tmp_path):
    from npmnv2.verify import interpreter

    with pytest.raises(interpreter.InterpreterError, match="TFLite interpreter"):
        interpreter.interpreter_tensors(EMBEDDED, np.zeros((1, 224, 224, 3), np.uint8), memory_limit=64 << 20)


# ============================================================================ point 3: NaN weights


def test_a_float32_weight_tensor_with_quantization_parameters_is_refused(edit, tmp_path):
    """NaN in such a tensor went through an integer cast and came out as 3.1e17."""
    e = edit(CLASSIFIER)
    classifier = e.ops_of("CONV_2D")[-1]
    w = e.op_input(classifier, 1)  # (1001, 1, 1, 1280) uint8: as float32, (1001, 1, 1, 320) fits its bytes
    e.set_tensor_type(w, 0)
    e.set_shape(w, 3, 320)
    e.set_data(w, 0, "<f", float("nan"))
    refused(e.save(tmp_path / "m.tflite"), "float32 but carries quantization parameters")


# ============================================================================ point 4: files the interpreter refuses


def test_a_negative_weight_scale_is_refused(edit, tmp_path):
    e = edit(CLASSIFIER)
    e.set_scale(e.op_input(0, 1), -0.02)
    refused(e.save(tmp_path / "m.tflite"), "scale -0.02", "finite and > 0")


def test_a_depthwise_dilation_of_zero_is_refused(edit, tmp_path):
    e = edit(CLASSIFIER)
    dw = e.ops_of("DEPTHWISE_CONV_2D")[3]
    e.set_options(dw, dilation_h=0, dilation_w=0)
    refused(e.save(tmp_path / "m.tflite"), f"op {dw} DEPTHWISE_CONV_2D", "dilation")


@pytest.mark.parametrize("axis", [0, 9])
def test_a_concatenation_on_another_axis_is_refused(edit, tmp_path, axis):
    e = edit(DEEPLAB)
    concat = e.ops_of("CONCATENATION")[0]
    e.set_options(concat, axis=axis)
    refused(e.save(tmp_path / "m.tflite"), "CONCATENATION", f"axis {axis}")


def test_a_concatenation_with_a_fused_activation_is_refused(edit, tmp_path):
    e = edit(DEEPLAB)
    concat = e.ops_of("CONCATENATION")[0]
    e.set_options(concat, activation=3)
    refused(e.save(tmp_path / "m.tflite"), "CONCATENATION", "fused activation")


def test_mean_without_keep_dims_is_refused(edit, tmp_path):
    e = edit(TF2)
    mean = e.ops_of("MEAN")[0]
    e.set_options(mean, keep_dims=False)
    refused(e.save(tmp_path / "m.tflite"), "MEAN", "keep_dims")


def test_a_reshape_with_an_empty_shape_is_refused(edit, tmp_path):
    e = edit(CLASSIFIER)
    reshape = e.ops_of("RESHAPE")[0]
    e.set_length(e.graph.Operators(reshape), 6, 1)  # drop its shape input: no shape at all
    refused(e.save(tmp_path / "m.tflite"), "RESHAPE", "new shape is empty")


def test_a_stride_of_2_by_1_is_refused(edit, tmp_path):
    e = edit(CLASSIFIER)
    dw = next(i for i in e.ops_of("DEPTHWISE_CONV_2D") if depthwise_stride(e, i) == 2)
    e.set_options(dw, stride_w=1)
    refused(e.save(tmp_path / "m.tflite"), f"op {dw}", "stride is (2, 1)")


def depthwise_stride(e: TFLiteEdit, i: int) -> int:
    table = e.graph.Operators(i).BuiltinOptions()
    options = tflite.DepthwiseConv2DOptions()
    options.Init(table.Bytes, table.Pos)
    return options.StrideH()


def test_a_conv_holding_pooling_options_is_refused(edit, tmp_path):
    e = edit(CLASSIFIER)
    e.set_options_type(0, 5)  # Pool2DOptions
    refused(e.save(tmp_path / "m.tflite"), "op 0 CONV_2D", "builtin_options_type is 5")


def test_schema_version_99_is_refused(edit, tmp_path):
    e = edit(CLASSIFIER)
    e.set_version(99)
    refused(e.save(tmp_path / "m.tflite"), "schema version 99")


def test_weights_marked_variable_are_refused(coral_dir, monkeypatch):
    """The Coral files omit is_variable (false); here the reader reports every tensor variable."""
    monkeypatch.setattr(tflite.Tensor, "IsVariable", lambda self: True)
    monkeypatch.setattr("npmnv2.tflite.graph._VALIDATED", {})  # validate these bytes again
    with pytest.raises(WeightFileError, match=r"is both constant .* and variable"):
        TFLiteGraph(coral_dir / CLASSIFIER)


def test_an_int64_bias_is_refused(edit, tmp_path):
    e = edit(CLASSIFIER)
    bias = e.op_input(0, 2)  # (32,) int32: its 128 bytes hold 16 int64
    e.set_tensor_type(bias, 4)
    e.set_shape(bias, 0, 16)
    refused(e.save(tmp_path / "m.tflite"), "bias is int64")


def test_per_channel_uint8_weights_are_refused(edit, tmp_path):
    e = edit(TF2)
    conv = e.ops_of("CONV_2D")[0]
    e.set_tensor_type(e.op_input(conv, 1), 3)  # int8 per-channel -> uint8 per-channel
    refused(e.save(tmp_path / "m.tflite"), f"op {conv} CONV_2D", "weights")


def test_two_scales_on_a_per_tensor_activation_are_refused(edit, tmp_path):
    e = edit(CLASSIFIER)
    out = e.op_output(0)
    q = e.graph.Tensors(out).Quantization()
    e.set_length(q, 8, 2)
    e.set_length(q, 10, 2)
    refused(e.save(tmp_path / "m.tflite"), "scales")


def test_a_bias_scale_other_than_input_times_weight_scale_is_refused(edit, tmp_path):
    e = edit(CLASSIFIER)
    bias = e.op_input(5, 2)
    scale = e.graph.Tensors(bias).Quantization().Scale(0)
    e.set_scale(bias, scale * 1.5)
    refused(e.save(tmp_path / "m.tflite"), "op 5", "bias scale")


def test_an_int32_bias_near_2_31_is_refused(edit, tmp_path):
    """The interpreter's int32 accumulator would wrap: 126 of 1001 outputs changed by up to 36."""
    e = edit(CLASSIFIER)
    classifier = e.ops_of("CONV_2D")[-1]
    e.set_data(e.op_input(classifier, 2), 7, "<i", 2**31 - 100)
    refused(e.save(tmp_path / "m.tflite"), f"op {classifier} CONV_2D", "output channel 7", "beyond int32")


def test_a_zero_point_of_2_to_the_40_is_refused(edit, tmp_path):
    e = edit(CLASSIFIER)
    e.set_zero_point(e.op_output(3), 2**40)
    refused(e.save(tmp_path / "m.tflite"), f"zero point {2**40}", "[0, 255]")


# ============================================================================ point 5: the float importer


def test_relu6_fused_into_a_projection_is_refused(edit, tmp_path):
    e = edit(CLASSIFIER)
    e.set_options(2, activation=3)  # conv_stem.reduce_1x1
    refused(e.save(tmp_path / "m.tflite"), "op 2 CONV_2D (conv_stem.reduce_1x1)", "RELU6")


def test_relu6_on_a_residual_add_is_refused(edit, tmp_path):
    e = edit(CLASSIFIER)
    add = e.ops_of("ADD")[0]
    e.set_options(add, activation=3)
    refused(e.save(tmp_path / "m.tflite"), f"op {add} ADD (layer.1)", "RELU6 on a residual ADD")


def test_an_add_replaced_by_mul_is_refused(edit, tmp_path):
    e = edit(CLASSIFIER)
    add, reshape = e.ops_of("ADD")[0], e.ops_of("RESHAPE")[0]
    code = e.graph.Operators(reshape).OpcodeIndex()  # the ADD code is 0, stored as an absent field
    e.set_builtin_code(code, tflite.BuiltinOperator.MUL)
    e.set_field(e.graph.Operators(add), 4, "<I", code)
    e.set_options_type(add, 21)
    refused(e.save(tmp_path / "m.tflite"), f"op {add} MUL", "does not implement")


def test_a_dilation_the_float_model_would_ignore_is_refused(edit, tmp_path):
    e = edit(CLASSIFIER)
    dw = e.ops_of("DEPTHWISE_CONV_2D")[5]
    e.set_options(dw, dilation_h=2, dilation_w=2)
    refused(e.save(tmp_path / "m.tflite"), f"op {dw} DEPTHWISE_CONV_2D", "dilation 2")


def test_a_huge_dilation_is_refused(edit, tmp_path):
    e = edit(CLASSIFIER)
    dw = e.ops_of("DEPTHWISE_CONV_2D")[5]
    e.set_options(dw, dilation_h=2**20, dilation_w=2**20)
    refused(e.save(tmp_path / "m.tflite"), f"op {dw}", "dilation is 1048576")


@pytest.mark.parametrize("stride", [0, -2, 2**31 - 1])
def test_the_first_convs_stride_is_checked(edit, tmp_path, stride):
    e = edit(CLASSIFIER)
    e.set_options(0, stride_h=stride, stride_w=stride)
    refused(e.save(tmp_path / "m.tflite"), "op 0 CONV_2D", f"stride is {stride}")


@pytest.mark.parametrize("index", [5000, -7, -1])
def test_an_op_input_index_outside_the_tensors_is_refused(edit, tmp_path, index):
    e = edit(CLASSIFIER)
    e.set_op_input(4, 0, index)
    refused(e.save(tmp_path / "m.tflite"), "op 4", f"tensor index {index}")


def test_an_op_reading_its_own_output_is_refused(edit, tmp_path):
    e = edit(CLASSIFIER)
    e.set_op_input(4, 0, e.op_output(4))
    refused(e.save(tmp_path / "m.tflite"), "op 4", "earlier op")


def test_two_ops_writing_one_tensor_are_refused(edit, tmp_path):
    e = edit(CLASSIFIER)
    e.set_op_output(4, e.op_output(3))
    message = refused(e.save(tmp_path / "m.tflite"), "op")
    assert "same tensor" in message or "earlier op" in message


@pytest.mark.parametrize("code", [tflite.BuiltinOperator.CUSTOM, 250])
def test_custom_and_unknown_ops_are_refused(edit, tmp_path, code):
    e = edit(CLASSIFIER)
    softmax = e.ops_of("SOFTMAX")[0]
    e.set_builtin_code(e.graph.Operators(softmax).OpcodeIndex(), code)
    refused(e.save(tmp_path / "m.tflite"), f"op {softmax}", "does not implement")


@pytest.mark.parametrize("scale", [float("nan"), float("inf"), 0.0, -0.5])
def test_bad_activation_scales_are_refused_and_never_reach_config_json(edit, tmp_path, scale):
    e = edit(CLASSIFIER)
    e.set_scale(e.op_output(6), scale)
    message = refused(e.save(tmp_path / "m.tflite"), "scale", "finite and > 0")
    assert f"scale {scale:.6g};" in message


# ============================================================================ point 6: list lengths and indices


def test_a_tensor_list_declared_too_long_never_reads_past_the_file(edit, tmp_path):
    e = edit(CLASSIFIER)
    e.set_length(e.graph, 4, 2**20)  # SubGraph.tensors
    with pytest.raises(WeightFileError, match="not a valid TFLite flatbuffer"):
        TFLiteGraph(e.save(tmp_path / "m.tflite"))


def test_a_declared_tensor_list_longer_than_its_entries_is_refused(edit, tmp_path):
    e = edit(CLASSIFIER)
    e.set_length(e.graph, 4, e.graph.TensorsLength() + 100)
    with pytest.raises(WeightFileError):
        TFLiteGraph(e.save(tmp_path / "m.tflite"))


def test_a_shape_longer_than_eight_is_refused(edit, tmp_path):
    e = edit(CLASSIFIER)
    e.set_length(e.graph.Tensors(e.op_output(0)), 4, 9)
    with pytest.raises(WeightFileError, match="at most 8 allowed"):
        TFLiteGraph(e.save(tmp_path / "m.tflite"))


def test_the_real_files_pass_the_validator(coral_dir):
    for path in sorted(coral_dir.glob("*.tflite")):
        graph = TFLiteGraph(path)
        assert len(graph.ops) > 60
        assert math.isfinite(read_tflite(path)[2]["pixel_values"][0])


def test_a_softmax_the_reference_kernel_aborts_on_is_refused_while_running(edit, tmp_path):
    """Found by the differential fuzz run: the classifier's weight zero point 113 -> 241 makes
    every logit saturate at 0; the reference SOFTMAX then sums 1001 equal exponentials, its final
    shift exceeds 31 and the interpreter aborts (SIGABRT). npmnv2 refuses that input by name."""
    from npmnv2.ops.probability import KernelAbortError

    e = edit(CLASSIFIER)
    e.set_zero_point(e.op_input(e.ops_of("CONV_2D")[-1], 1), 241)
    model = QuantizedMobileNetV2.from_pretrained(e.save(tmp_path / "m.tflite"))
    with pytest.raises(KernelAbortError, match="TFLite's reference SOFTMAX aborts"):
        model(np.zeros((1, 3, 224, 224), np.uint8))

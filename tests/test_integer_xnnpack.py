"""The integer model computes what the XNNPACK delegate computes (kernels="xnnpack"), the kernels the
interpreter applies by default (`OpResolverType.BUILTIN`): every op output of every shipped model,
read by making every op output a graph output (the delegate exposes no intermediates), on real
photos and on random pixels; the final outputs of each file as it is; and each op alone, as a
one-op graph through the delegate, on random inputs over the full range."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import CORAL_CLASSIFIER
from kernel_cases import CASES, PHOTOS, differing_ops, photo_pixels

from npmnv2 import QuantizedMobileNetV2
from npmnv2.ops import quantization
from npmnv2.ops.merge import add_int_xnnpack, add_int_xnnpack_loops
from npmnv2.ops.pooling import global_average_pool_int_xnnpack, global_average_pool_int_xnnpack_loops
from npmnv2.ops.quantization import DTYPE_RANGE
from npmnv2.tflite.kernels import KERNEL_SETS


@pytest.mark.parametrize("kernels", ["xnnpack"])
@pytest.mark.parametrize(("name", "photo"), CASES, ids=[f"{m.split('.tflite')[0]}-{p}" for m, p in CASES])
def test_every_op_output_equals_the_kernel_set(name, photo, kernels, coral_dir) -> None:
    model = QuantizedMobileNetV2.from_pretrained(coral_dir / name, kernels=kernels)
    pixels = photo_pixels(model, coral_dir / photo)
    assert differing_ops(model, pixels, coral_dir / name, kernels, plain=True) == []  # the plain call's tensors


@pytest.mark.parametrize("kernels", ["xnnpack"])
@pytest.mark.parametrize("name", sorted({m for m, _ in CASES}))
def test_random_pixels_too(name, kernels, coral_dir) -> None:
    """Pixels no photo holds (noise over the full range), so that ties fall where photos put none."""
    model = QuantizedMobileNetV2.from_pretrained(coral_dir / name, kernels=kernels)
    n, h, w, c = model.input_shape
    pixels = np.random.default_rng(len(name)).integers(0, 256, (1, c, h, w), dtype=np.uint8)
    assert differing_ops(model, pixels, coral_dir / name, kernels) == []  # the trace's tensors


@pytest.mark.parametrize("kernels", ["xnnpack"])
@pytest.mark.parametrize("name", sorted({m for m, _ in CASES}))
def test_every_op_alone_equals_the_kernel_set_on_random_inputs(name, kernels, coral_dir) -> None:
    """Each op of the file as a one-op graph, fed random integers over its inputs' whole range (what
    no chain of real layers produces), through the kernel set's own resolver: for XNNPACK this is the
    delegate's own op on inputs it did not compute itself."""
    from tflite_single_op import run_single_op, single_op_model

    model = QuantizedMobileNetV2.from_pretrained(coral_dir / name, kernels=kernels)
    rng = np.random.default_rng(5)
    bad = []
    for index, op in enumerate(model.graph.ops):
        blob, inputs = single_op_model(coral_dir / name, index)
        xs = []
        for t in inputs:
            dtype = model.graph.type_of(t)
            if dtype == np.dtype(np.float32):
                xs.append(rng.uniform(-1.2, 1.2, model.graph.shape(t)).astype(np.float32))
            else:
                low, high = DTYPE_RANGE[dtype]
                xs.append(rng.integers(low, high + 1, model.graph.shape(t)).astype(dtype))
        theirs = run_single_op(blob, xs, KERNEL_SETS[kernels].resolver)
        given = {t: x if x.dtype.kind == "f" else x.astype(np.int64) for t, x in zip(inputs, xs, strict=True)}
        ours = model.run_op(index, given)
        if not np.array_equal(np.asarray(ours).reshape(theirs.shape), theirs):
            bad.append((index, op["type"]))
    assert bad == []


@pytest.mark.parametrize("name", sorted({m for m, _ in CASES}))
def test_the_outputs_equal_xnnpack_on_the_file_as_it_is(name, coral_dir) -> None:
    """The final outputs of the unedited file under the interpreter's default (the XNNPACK delegate),
    for every shipped photo: the graph XNNPACK partitions is the file's own, not one with extra outputs."""
    from ai_edge_litert import interpreter as litert

    interpreter = litert.Interpreter(model_path=str(coral_dir / name), num_threads=2)  # the default: BUILTIN
    interpreter.allocate_tensors()
    model = QuantizedMobileNetV2.from_pretrained(coral_dir / name, kernels="xnnpack")
    for photo in [*PHOTOS, "bird_segmentation.bmp"]:
        x = model.input_from_pixels(photo_pixels(model, coral_dir / photo))
        interpreter.set_tensor(
            interpreter.get_input_details()[0]["index"], np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        )
        interpreter.invoke()
        theirs = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
        ours = model(x).outputs[0]
        ours = ours.transpose(0, 2, 3, 1) if ours.ndim == 4 else ours
        assert np.array_equal(ours.reshape(theirs.shape), theirs), photo


def test_the_xnnpack_forms_equal_their_loops() -> None:
    rng = np.random.default_rng(9)
    a, b = rng.integers(0, 256, (1, 3, 4, 5)), rng.integers(0, 256, (1, 3, 4, 5))
    args = (0.0213, 131, b, 0.0305, 119, 0.0412, 127, (0, 255))
    np.testing.assert_array_equal(add_int_xnnpack(a, *args), add_int_xnnpack_loops(a, *args))
    x = rng.integers(-128, 128, (2, 7, 7, 12))
    args = (0.0235, -3, 0.0191, 5, (-128, 127))
    np.testing.assert_array_equal(
        global_average_pool_int_xnnpack(x, *args), global_average_pool_int_xnnpack_loops(x, *args)
    )


def test_the_xnnpack_rules_are_where_the_others_part() -> None:
    """Ties go to even in XNNPACK's float32 requantization, away from zero in TFLite's."""
    x = np.array([10, 14, -10, -14])  # times 0.25: 2.5, 3.5, -2.5, -3.5
    assert quantization.multiply_by_float32_scale(x, np.float32(0.25)).tolist() == [2, 4, -2, -4]
    m0, shift = quantization.quantize_multiplier(0.25)
    assert quantization.multiply_by_quantized_multiplier(x, m0, shift).tolist() == [3, 4, -3, -4]
    with pytest.raises(ValueError, match="shift must be 0"):
        quantization.multiply_by_float32_scale(np.array([1]), np.float32(0.5), -3)
    # DeepLab's last QUANTIZE: s_in / s_out = 0.3528; XNNPACK's multiplier is rint(256 * 0.3528) = 90
    x = np.arange(256)
    ours = quantization.requantize_xnnpack(x, 0.012422440573573112, 0, 0.03520936891436577, 0, (0, 255))
    assert ours.tolist() == ((90 * x + 128) >> 8).tolist()


def test_verify_checks_an_integer_port_against_xnnpack(coral_dir) -> None:
    """XNNPACK's own tensors (every op output made a graph output), as a port: faithful against
    kernels="xnnpack"; against the reference rules, located at the very first convolution and named
    rounding.float32."""
    from npmnv2 import verify

    path = coral_dir / CORAL_CLASSIFIER
    pixels, _ = verify.tflite_input(path, coral_dir / "cat.bmp")
    port = verify.tflite_integer_tensors(path, pixels, kernels="xnnpack")
    xnnpack = QuantizedMobileNetV2.from_pretrained(path, kernels="xnnpack")
    report = verify.check_integer(port, xnnpack, pixels.transpose(0, 3, 1, 2))
    assert report.faithful and len(report.rows) == len(xnnpack.graph.ops), report.explain()
    reference = QuantizedMobileNetV2.from_pretrained(path)
    report = verify.check_integer(port, reference, pixels.transpose(0, 3, 1, 2))
    assert not report.faithful
    assert report.first_local_divergence == "conv_stem.first_conv.convolution"  # op 0 already
    assert report.cause == "rounding.float32", report.explain()

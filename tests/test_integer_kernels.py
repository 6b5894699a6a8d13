"""The integer model computes what each of the interpreter's kernel sets computes: with
kernels="optimized", every op output of every shipped model equals the interpreter's optimized
kernels (`OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES`), element by element, on real photos
and on random pixels; the rules that make the difference are the ones `npmnv2.tflite.kernels` names."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import CORAL_CLASSIFIER

from npmnv2 import QuantizedMobileNetV2
from npmnv2.image_processing_mobilenet_v2 import MobileNetV2ImageProcessor, load_image
from npmnv2.ops import quantization
from npmnv2.ops.pooling import global_average_pool_int_optimized, global_average_pool_int_optimized_loops
from npmnv2.tflite.kernels import KERNEL_SETS, kernel_set
from npmnv2.verify.interpreter import interpreter_tensors

PHOTOS = ["cat.bmp", "grace_hopper.bmp", "bird.bmp", "sunflower.bmp", "dragonfly.bmp"]
CLASSIFIERS = [
    CORAL_CLASSIFIER,
    "tf2_mobilenet_v2_1.0_224_ptq.tflite",  # int8 per channel, a MEAN
    "mobilenet_v2_1.0_224_inat_insect_quant.tflite",  # a FULLY_CONNECTED head
]
SEGMENTERS = ["deeplabv3_mnv2_pascal_quant.tflite", "deeplabv3_mnv2_dm05_pascal_quant.tflite"]
CASES = [(m, p) for m in CLASSIFIERS for p in PHOTOS] + [
    (m, p) for m in SEGMENTERS for p in ("bird_segmentation.bmp", "cat.bmp")
]


def differing_ops(model: QuantizedMobileNetV2, pixels: np.ndarray, path, kernels: str) -> list[tuple[int, str, int]]:
    """(op, type, values that differ) of every op whose output is not the interpreter's, element by element."""
    x = model.input_from_pixels(pixels)
    theirs = interpreter_tensors(path, np.ascontiguousarray(x.transpose(0, 2, 3, 1)), kernels=kernels)
    trace = model.trace(pixels)
    bad = []
    for index, op in enumerate(model.graph.ops):
        ours = np.asarray(trace.steps[index].output)
        ours = ours.transpose(0, 2, 3, 1) if ours.ndim == 4 else ours
        want = theirs[op["outputs"][0]]
        differ = int(np.count_nonzero(ours.reshape(want.shape).astype(np.float64) != want.astype(np.float64)))
        if differ:
            bad.append((index, op["type"], differ))
    return bad


def photo_pixels(model: QuantizedMobileNetV2, photo) -> np.ndarray:
    n, h, w, c = model.input_shape
    processor = MobileNetV2ImageProcessor(size={"height": h, "width": w}, crop_size={"height": h, "width": w})
    return processor.integer_pixels(load_image(photo))


@pytest.mark.parametrize(("name", "photo"), CASES, ids=[f"{m.split('.tflite')[0]}-{p}" for m, p in CASES])
def test_every_op_output_equals_the_optimized_kernels(name, photo, coral_dir) -> None:
    model = QuantizedMobileNetV2.from_pretrained(coral_dir / name, kernels="optimized")
    assert differing_ops(model, photo_pixels(model, coral_dir / photo), coral_dir / name, "optimized") == []


@pytest.mark.parametrize("name", sorted({m for m, _ in CASES}))
def test_random_pixels_too(name, coral_dir) -> None:
    """Pixels no photo holds (noise over the full range), so that ties fall where photos put none."""
    model = QuantizedMobileNetV2.from_pretrained(coral_dir / name, kernels="optimized")
    n, h, w, c = model.input_shape
    pixels = np.random.default_rng(len(name)).integers(0, 256, (1, c, h, w), dtype=np.uint8)
    assert differing_ops(model, pixels, coral_dir / name, "optimized") == []


def test_the_reference_rules_miss_the_optimized_kernels_where_the_page_says(coral_dir) -> None:
    """Without the optimized rules the first projection already differs: the rules are what matter."""
    path = coral_dir / CORAL_CLASSIFIER
    model = QuantizedMobileNetV2.from_pretrained(path)  # the reference kernels' rules
    bad = differing_ops(model, photo_pixels(model, coral_dir / "cat.bmp"), path, "optimized")
    assert bad and bad[0][:2] == (2, "CONV_2D")  # op 2, the stem's projection: the first negative ties


def test_a_negative_tie_is_where_the_two_rules_part() -> None:
    x = np.array([-6, -5, -7, 6, 5, -2, 2])
    assert quantization.rounding_divide_by_pot_ties_up(x, 2).tolist() == [-1, -1, -2, 2, 1, 0, 1]
    assert quantization.rounding_divide_by_pot(x, 2).tolist() == [-2, -1, -2, 2, 1, -1, 1]
    rng = np.random.default_rng(3)
    acc = rng.integers(-(2**20), 2**20, 5000)
    m0, shift = quantization.quantize_multiplier(0.00371)
    up = quantization.multiply_by_quantized_multiplier_ties_up(acc, m0, shift)
    away = quantization.multiply_by_quantized_multiplier(acc, m0, shift)
    assert np.all(np.abs(up - away) <= 1) and np.all(up >= away)  # ties up is never below ties away


def test_the_optimized_mean_equals_its_loops() -> None:
    rng = np.random.default_rng(8)
    x = rng.integers(-128, 128, (2, 7, 7, 12))
    args = (0.0235, -3, 0.0191, 5, (-128, 127))
    np.testing.assert_array_equal(
        global_average_pool_int_optimized(x, *args), global_average_pool_int_optimized_loops(x, *args)
    )


def test_kernel_sets_are_named_and_xnnpack_is_refused_with_a_reason() -> None:
    assert set(KERNEL_SETS) == {"reference", "optimized"}
    with pytest.raises(ValueError, match="does not reproduce the XNNPACK delegate yet"):
        kernel_set("xnnpack")
    with pytest.raises(ValueError, match="reproduces 'reference', 'optimized'"):
        QuantizedMobileNetV2.from_pretrained("npmnv2/default", kernels="fast")


def test_verify_checks_an_integer_port_against_the_kernel_set_it_targets(coral_dir) -> None:
    """The optimized kernels' own tensors, as a port: faithful against kernels="optimized"; against the
    reference rules, located at the first projection and named rounding.ties_up."""
    from npmnv2 import verify

    path = coral_dir / CORAL_CLASSIFIER
    pixels, _ = verify.tflite_input(path, coral_dir / "cat.bmp")
    port = verify.tflite_integer_tensors(path, pixels, kernels="optimized")
    optimized = QuantizedMobileNetV2.from_pretrained(path, kernels="optimized")
    report = verify.check_integer(port, optimized, pixels.transpose(0, 3, 1, 2))
    assert report.faithful and len(report.rows) == len(optimized.graph.ops), report.explain()
    reference = QuantizedMobileNetV2.from_pretrained(path)
    report = verify.check_integer(port, reference, pixels.transpose(0, 3, 1, 2))
    assert not report.faithful
    assert report.first_local_divergence == "conv_stem.reduce_1x1.convolution"
    assert report.cause == "rounding.ties_up", report.explain()

"""The integer model computes what each of the interpreter's kernel sets computes: with
kernels="optimized", every op output of every shipped model equals the interpreter's optimized
kernels (`OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES`), element by element, on real photos and
on random pixels, and each op alone on random inputs over the full range (one-op graphs); each
kernel set's uint8 resize for every flag; the rules that make the difference are the ones
`npmnv2.tflite.kernels` names. (XNNPACK: `tests/test_integer_xnnpack.py`.)"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import CORAL_CLASSIFIER
from kernel_cases import CASES, differing_ops, photo_pixels

from npmnv2 import QuantizedMobileNetV2
from npmnv2.ops import quantization
from npmnv2.ops.pooling import (
    global_average_pool_int_optimized,
    global_average_pool_int_optimized_loops,
)
from npmnv2.ops.quantization import DTYPE_RANGE
from npmnv2.tflite.kernels import KERNEL_SETS, check_machine, kernel_set


@pytest.mark.parametrize("kernels", ["optimized"])
@pytest.mark.parametrize(("name", "photo"), CASES, ids=[f"{m.split('.tflite')[0]}-{p}" for m, p in CASES])
def test_every_op_output_equals_the_kernel_set(name, photo, kernels, coral_dir) -> None:
    model = QuantizedMobileNetV2.from_pretrained(coral_dir / name, kernels=kernels)
    assert differing_ops(model, photo_pixels(model, coral_dir / photo), coral_dir / name, kernels) == []


@pytest.mark.parametrize("kernels", ["optimized"])
@pytest.mark.parametrize("name", sorted({m for m, _ in CASES}))
def test_random_pixels_too(name, kernels, coral_dir) -> None:
    """Pixels no photo holds (noise over the full range), so that ties fall where photos put none."""
    model = QuantizedMobileNetV2.from_pretrained(coral_dir / name, kernels=kernels)
    n, h, w, c = model.input_shape
    pixels = np.random.default_rng(len(name)).integers(0, 256, (1, c, h, w), dtype=np.uint8)
    assert differing_ops(model, pixels, coral_dir / name, kernels) == []


@pytest.mark.parametrize("kernels", ["optimized"])
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


def test_kernel_sets_are_named_and_the_unmeasured_ones_refused_elsewhere() -> None:
    assert set(KERNEL_SETS) == {"reference", "optimized", "xnnpack"}
    assert kernel_set("xnnpack").resolver == "BUILTIN" and kernel_set("xnnpack").delegate
    with pytest.raises(ValueError, match="reproduces 'reference', 'optimized', 'xnnpack'"):
        QuantizedMobileNetV2.from_pretrained("npmnv2/default", kernels="fast")
    for name in ("optimized", "xnnpack"):
        with pytest.raises(ValueError, match=r"measured on x86-64, and this machine is 'aarch64'.*rndnu"):
            check_machine(name, "aarch64")
    check_machine("reference", "aarch64")  # the reference kernels are the same everywhere


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


@pytest.mark.parametrize("size", [(513, 513), (65, 97), (17, 9)])
@pytest.mark.parametrize(("align_corners", "half_pixel_centers"), [(True, False), (False, False), (False, True)])
def test_each_kernel_sets_uint8_resize_equals_it_for_every_flag(size, align_corners, half_pixel_centers, coral_dir):
    """DeepLab's last resize as a one-op graph with its flags and output size changed (the shipped
    files only align corners): each kernel set's uint8 rule equals the interpreter's on random inputs."""
    from tflite_single_op import resize_edit, run_single_op, single_op_model

    path = coral_dir / "deeplabv3_mnv2_pascal_quant.tflite"
    blob, inputs = single_op_model(path, 70, resize_edit(align_corners, half_pixel_centers, size))
    x = np.random.default_rng(size[1]).integers(0, 256, (1, 33, 33, 21)).astype(np.uint8)
    for name, kernels in KERNEL_SETS.items():
        theirs = run_single_op(blob, [x], kernels.resolver)
        ours = kernels.resize_uint8(x, size, align_corners=align_corners, half_pixel_centers=half_pixel_centers)
        assert np.array_equal(ours.reshape(theirs.shape), theirs), name


def test_resizes_whose_rule_is_not_measured_are_refused_by_name() -> None:
    from types import SimpleNamespace

    from npmnv2.weights import WeightFileError

    def checked(kernels: str, dtype, op: dict, shape=(1, 33, 33, 16), size=(264, 264)) -> None:
        graph = SimpleNamespace(type_of=lambda t: np.dtype(dtype), shape=lambda t: shape, name=lambda t: "up")
        model = SimpleNamespace(
            graph=graph, kernels=KERNEL_SETS[kernels], where="f.tflite", constant=lambda t: np.array(size)
        )
        QuantizedMobileNetV2._check_resize(model, 7, {"inputs": [0, 1], "outputs": [2], **op})

    half_pixel = {"align_corners": False, "half_pixel_centers": True}
    with pytest.raises(WeightFileError, match=r"op 7 RESIZE_BILINEAR .*ResizeBilinear888Uint8"):
        checked("optimized", np.uint8, half_pixel)
    checked("reference", np.uint8, half_pixel)  # the reference kernels have no special case
    checked("optimized", np.uint8, half_pixel, shape=(1, 33, 33, 21))  # 21 channels: the generic kernel
    with pytest.raises(WeightFileError, match="XNNPACK's int8 bilinear kernel is not measured"):
        checked("xnnpack", np.int8, {"align_corners": True, "half_pixel_centers": False})
    with pytest.raises(WeightFileError, match="int8 without align_corners"):
        checked("reference", np.int8, half_pixel)

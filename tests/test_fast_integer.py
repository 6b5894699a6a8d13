"""The integer model's fast forms (`npmnv2.fast.integer`, what `model(pixel_values)` runs) give the
same integers as its readable ops (what a trace runs), on every op output, for every kernel set:
the shipped models on photos and random pixels, and each trick on the inputs that break tricks."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from conftest import CORAL_CLASSIFIER

from npmnv2 import QuantizedMobileNetV2
from npmnv2.fast import integer as fast
from npmnv2.ops import quantization
from npmnv2.ops.resize import resize_bilinear_int
from npmnv2.tflite.kernels import KERNEL_SETS

MODELS = [
    CORAL_CLASSIFIER,
    "tf2_mobilenet_v2_1.0_224_ptq.tflite",  # int8, per-channel multipliers: the int64 requantization
    "mobilenet_v2_1.0_224_inat_insect_quant.tflite",
    "deeplabv3_mnv2_pascal_quant.tflite",  # resize, concat, a final QUANTIZE and ARG_MAX
    "deeplabv3_mnv2_dm05_pascal_quant.tflite",
]


def every_tensor_differs(model: QuantizedMobileNetV2, pixels: np.ndarray) -> list[tuple[int, str, int]]:
    """(op, type, values that differ) where the fast forms and the readable ops part, op by op."""
    x = model.input_from_pixels(pixels)
    tensors = model._fast_model().run(model._check_input(x))
    trace = model.trace(x)
    bad = []
    for index, op in enumerate(model.graph.ops):
        ours = np.asarray(trace.steps[index].output)
        ours = ours.transpose(0, 2, 3, 1) if ours.ndim == 4 else ours
        got = tensors[op["outputs"][0]]
        differ = int(np.count_nonzero(got.reshape(ours.shape).astype(np.float64) != ours.astype(np.float64)))
        if differ:
            bad.append((index, op["type"], differ))
    return bad


@pytest.mark.parametrize("kernels", list(KERNEL_SETS))
@pytest.mark.parametrize("name", MODELS)
def test_the_fast_forms_equal_the_readable_ops_on_every_tensor(name, kernels, coral_dir) -> None:
    from npmnv2.image_processing_mobilenet_v2 import MobileNetV2ImageProcessor, load_image

    model = QuantizedMobileNetV2.from_pretrained(coral_dir / name, kernels=kernels)
    n, h, w, c = model.input_shape
    processor = MobileNetV2ImageProcessor(size={"height": h, "width": w}, crop_size={"height": h, "width": w})
    photo = processor.integer_pixels(load_image(coral_dir / "bird.bmp"))
    noise = np.random.default_rng(len(name)).integers(0, 256, (1, c, h, w), dtype=np.uint8)
    assert every_tensor_differs(model, photo) == []
    assert every_tensor_differs(model, noise) == []
    out = model(model.input_from_pixels(noise))  # the plain call is the fast forms
    assert out.outputs[0].dtype == model.graph.type_of(model.output_indices[0])


@pytest.mark.parametrize("ties_up", [False, True])
def test_the_int64_double_rounding_equals_the_two_roundings(ties_up) -> None:
    rng = np.random.default_rng(1)
    acc = np.concatenate([rng.integers(-(2**26), 2**26, 20000), np.arange(-4096, 4097)])
    rule = (
        quantization.multiply_by_quantized_multiplier_ties_up
        if ties_up
        else quantization.multiply_by_quantized_multiplier
    )
    for real in (0.5, 0.25, 0.00371, 1 / 3, 2.0**-20, 0.999):
        m0, shift = quantization.quantize_multiplier(real)
        m0s, shifts = np.full(4, m0), np.full(4, shift)
        shifts[1] = 0  # a channel without a right shift
        m0s[1] = quantization.quantize_multiplier(0.75)[0]
        x = acc[: acc.size // 4 * 4].reshape(-1, 4)
        want = rule(x, m0s, shifts)
        got = fast.fixed_point_int64(x.astype(np.int64), fast.fixed_point_constants(m0s, shifts), ties_up=ties_up)
        np.testing.assert_array_equal(got, want)


def test_a_requantization_table_is_the_rule_and_clamps_beyond_it() -> None:
    m0, shift = quantization.quantize_multiplier(0.0123)
    first, table = fast.requantization_table(quantization.multiply_by_quantized_multiplier, m0, shift, 7, (0, 255))
    requantize = fast.Requantizer(quantization.multiply_by_quantized_multiplier, m0, shift, 7, (0, 255), np.uint8)
    acc = np.concatenate([np.arange(first - 50, first + table.size + 50), [-(2**30), 2**30]]).astype(np.float64)
    want = quantization.requantize_output(acc.astype(np.int64), m0, shift, 7, (0, 255))
    np.testing.assert_array_equal(requantize(acc.copy()), want)
    assert fast.requantization_table(quantization.multiply_by_quantized_multiplier, m0, -40, 0, (0, 255)) is None


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
@pytest.mark.parametrize(("align_corners", "half_pixel_centers"), [(True, False), (False, False), (False, True)])
def test_the_separable_resize_equals_the_readable_one(dtype, align_corners, half_pixel_centers) -> None:
    low, high = quantization.DTYPE_RANGE[np.dtype(dtype)]
    x = np.random.default_rng(2).integers(low, high + 1, (2, 5, 7, 3)).astype(dtype)

    op = {"inputs": [0, 1], "outputs": [2], "align_corners": align_corners, "half_pixel_centers": half_pixel_centers}
    graph = SimpleNamespace(ops=[op], type_of=lambda t: np.dtype(dtype))
    model = SimpleNamespace(graph=graph, constant=lambda t: np.array([17, 12]))  # the op's size input
    flags = {"align_corners": align_corners, "half_pixel_centers": half_pixel_centers}
    got = fast.FastResize(model, 0)({0: x})
    np.testing.assert_array_equal(got, resize_bilinear_int(x.astype(np.int64), (17, 12), **flags))

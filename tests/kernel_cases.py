"""What the kernel-set tests share: the shipped models and photos they run, and the comparison of
the integer model's every op output with the interpreter's, element by element."""

from __future__ import annotations

import numpy as np
from conftest import CORAL_CLASSIFIER

from npmnv2 import QuantizedMobileNetV2
from npmnv2.image_processing_mobilenet_v2 import MobileNetV2ImageProcessor, load_image
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


def differing_ops(
    model: QuantizedMobileNetV2, pixels: np.ndarray, path, kernels: str, *, plain: bool = False
) -> list[tuple[int, str, int]]:
    """(op, type, values that differ) of every op whose output is not the interpreter's, element by
    element. plain: npmnv2's tensors from a plain call (its fast forms) instead of a trace (its
    readable ops); `tests/test_fast_integer.py` holds the two equal."""
    x = model.input_from_pixels(pixels)
    theirs = interpreter_tensors(path, np.ascontiguousarray(x.transpose(0, 2, 3, 1)), kernels=kernels)
    if plain:
        tensors = model._fast_model().run(model._check_input(x))
        outputs = [tensors[op["outputs"][0]] for op in model.graph.ops]
    else:
        trace = model.trace(pixels)
        outputs = [np.asarray(s.output) for s in trace.steps]
        outputs = [o.transpose(0, 2, 3, 1) if o.ndim == 4 else o for o in outputs]
    bad = []
    for index, op in enumerate(model.graph.ops):
        want = theirs[op["outputs"][0]]
        ours = outputs[index]
        differ = int(np.count_nonzero(ours.reshape(want.shape).astype(np.float64) != want.astype(np.float64)))
        if differ:
            bad.append((index, op["type"], differ))
    return bad


def photo_pixels(model: QuantizedMobileNetV2, photo) -> np.ndarray:
    n, h, w, c = model.input_shape
    processor = MobileNetV2ImageProcessor(size={"height": h, "width": w}, crop_size={"height": h, "width": w})
    return processor.integer_pixels(load_image(photo))

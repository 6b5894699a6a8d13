"""Collect another implementation's intermediate tensors under npmnv2's step names.

torch_activations: transformers' PyTorch model, through forward hooks (needs torch + transformers).
tflite_activations: the TFLite interpreter with every tensor preserved (needs ai-edge-litert), run
in a child process (`npmnv2.verify.interpreter`), dequantized, under npmnv2's step names.
Both return name -> NCHW float array, ready for `npmnv2.compare`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..image_processing_mobilenet_v2 import load_image
from ..ops import nhwc_to_nchw
from ..tflite.ops import CONV_2D, RESIZE_BILINEAR, has, op_is
from .interpreter import interpreter_tensors

_CONTAINERS = ("conv_stem",)  # non-leaf modules whose output is also a step


def _is_step_module(name: str, module: Any) -> bool:
    import torch

    if isinstance(module, (torch.nn.Dropout, torch.nn.Dropout2d)):
        return False  # identity at inference: npmnv2 has no step for it
    parts = name.split(".")
    is_block = len(parts) == 2 and parts[0] == "layer"
    return is_block or name in _CONTAINERS or not any(True for _ in module.children())


def torch_activations(hf_model: Any, pixel_values: np.ndarray) -> dict[str, np.ndarray]:
    """Every step-level output of a transformers MobileNetV2 model (eval mode, no grad), by name.

    Leaf modules (convolution, normalization, activation, pooler, classifier, ...) plus the block
    outputs `conv_stem` and `layer.N`; names without the `mobilenet_v2.` prefix.
    """
    import torch

    acts: dict[str, np.ndarray] = {}
    handles = []
    for name, module in hf_model.named_modules():
        short = name.removeprefix("mobilenet_v2.")
        if not name or short == "mobilenet_v2" or not _is_step_module(short, module):
            continue

        def hook(_module: Any, _inputs: Any, output: Any, short: str = short) -> None:
            acts[short] = output.detach().cpu().numpy().copy()

        handles.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            hf_model.eval()(torch.from_numpy(np.ascontiguousarray(pixel_values)))
    finally:
        for handle in handles:
            handle.remove()
    return acts


def transformers_twin(model: Any) -> Any:
    """transformers' PyTorch model of the same class, dtype and weights as an npmnv2 model (eval mode).

    Needs torch and transformers. npmnv2's own `pooling` field is left out (transformers has only
    global pooling).
    """
    import torch
    import transformers

    hf_config = transformers.MobileNetV2Config(**{k: v for k, v in model.config.to_dict().items() if k != "pooling"})
    twin = getattr(transformers, type(model).__name__)(hf_config).eval()
    twin = twin.double() if model.dtype == np.float64 else twin
    twin.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in model.state_dict().items()}, strict=True)
    return twin


def tflite_integer_tensors(
    path: str | Path, pixels: np.ndarray, *, reference_kernels: bool = True, kernels: str | None = None
) -> QuantizedTensors:
    """Every op output of the interpreter, as the integers it stores (NCHW when 4-D), under the step
    names of `npmnv2.tflite.integer_model` (the float model's names: `layer.3.conv_3x3.convolution`, ...),
    with each tensor's scale.

    pixels: the quantized input, NHWC as the interpreter takes it (see `tflite_input`).
    """
    from ..tflite.graph import TFLiteGraph
    from ..tflite.layers import integer_steps

    path = Path(path)
    graph = TFLiteGraph(path)
    steps = integer_steps(graph)  # the structure first: a graph that is not a MobileNetV2 never runs
    computed = interpreter_tensors(path, pixels, reference_kernels=reference_kernels, kernels=kernels)  # a child
    tensors, scales = {}, {}
    for op, (name, _, _) in zip(graph.ops, steps, strict=True):
        out = op["outputs"][0]
        value = computed[out]
        tensors[name] = nhwc_to_nchw(value) if value.ndim == 4 else value
        quant = graph.quantization(out)
        if quant is not None:
            scales[name] = quant.tensor_scale
    return QuantizedTensors(tensors, scales)


def tflite_input(path: str | Path, image: Any) -> tuple[np.ndarray, np.ndarray]:
    """The image as the TFLite model takes it and as npmnv2 takes the same pixels.

    Returns (the input tensor, (1, H, W, 3) in the file's input type, resized with nearest neighbour
    to the model's input size; float32 (1, 3, H, W) pixel_values, the real values it stands for):
    - uint8 input: the pixels themselves, standing for scale * (uint8 - zero_point) with the input
      tensor's own quantization (1/128 and 128 for the TF1 Coral models, 1/127.5 and 127 for TF2);
    - int8 input: the pixels minus 128 (the converter's int8 input is its uint8 one shifted, with the
      same scale), standing for scale * (int8 - zero_point);
    - float32 input (TensorFlow's converter with float I/O): the pixels mapped to [-1, 1] as
      MobileNetV2's preprocessing does, p / 127.5 - 1.
    (`npmnv2.tflite.integer_model.input_from_pixels` is the rule.)
    """
    from ..tflite.graph import TFLiteGraph, read_tflite_input_size
    from ..tflite.integer_model import input_from_pixels

    h, w = read_tflite_input_size(path)
    pixels = np.asarray(load_image(image).resize((w, h), Image.NEAREST), dtype=np.uint8)[None]  # (1, H, W, 3)
    graph = TFLiteGraph(Path(path))
    x = graph.graph.Inputs(0)
    dtype, quant = graph.type_of(x), graph.quantization(x)
    taken = input_from_pixels(pixels, dtype)
    if quant is None and dtype == np.dtype(np.float32):
        return taken, nhwc_to_nchw(taken).copy()
    scale, zero_point = (1 / 127.5, 127.5) if quant is None else (quant.tensor_scale, quant.tensor_zero_point)
    real = (taken.astype(np.float64) - zero_point) * scale  # the values the integer model's input stands for
    return taken, nhwc_to_nchw(real.astype(np.float32))


def _step_name(hf: str, activation: int) -> str:
    """The npmnv2 step whose output equals a TFLite op's output (conv + bias + fused activation)."""
    if hf == "classifier":
        return "classifier"
    if hf == "segmentation_head.classifier":
        return "segmentation_head.classifier.convolution"
    return f"{hf}.activation" if activation else f"{hf}.normalization"


def _hybrid_rule(graph: Any, op: dict, reference_kernels: bool) -> str:
    """How a hybrid op (float op, int8 weights) quantizes its float input, measured against the pinned
    interpreter (every hybrid op of a dynamic-range MobileNetV2 replayed within float32 rounding):
    asymmetric to -128..127 (AsymmetricQuantizeFloats) per batch item, except that the optimized
    kernels' 1x1 CONV_2D quantizes each pixel (im2col row) on its own; per-tensor weights, and a
    FULLY_CONNECTED without asymmetric_quantize_inputs, quantize symmetrically (max |x| / 127).
    Returns "asymmetric/batch", "asymmetric/pixel" or "symmetric/batch"."""
    per_channel = graph.quantization(op["inputs"][1]).per_channel
    if has(op, "fully_connected"):
        mode = "asymmetric" if op.get("asymmetric") or per_channel else "symmetric"
    else:
        mode = "asymmetric" if per_channel else "symmetric"
    pixel = not reference_kernels and op_is(op, CONV_2D) and graph.shape(op["inputs"][1])[1:3] == (1, 1)
    return f"{mode}/{'pixel' if pixel else 'batch'}"


class QuantizedTensors(dict):
    """name -> dequantized NCHW tensor of a quantized model, plus `scales`: name -> its quantization
    step (a difference of one integer). `npmnv2.compare` judges such a reference against
    quantization noise instead of a float tolerance."""

    def __init__(
        self,
        tensors: dict[str, np.ndarray],
        scales: dict[str, float],
        ranges: dict[str, tuple[float, float]] | None = None,
        hybrid: dict[str, str] | None = None,
        tensor_names: dict[str, str] | None = None,
    ) -> None:
        super().__init__(tensors)
        self.scales = scales
        self.ranges = ranges or {}  # name -> the real values its integers can hold (lowest, highest)
        self.hybrid = hybrid or {}  # float ops with int8 weights -> how they quantize their input
        self.tensor_names = tensor_names or {}  # npmnv2's step name -> the file's own tensor name


def tflite_activations(path: str | Path, image: Any, *, reference_kernels: bool = False) -> QuantizedTensors:
    """Run the TFLite interpreter on `image` (see `tflite_input`) and return its intermediate tensors,
    dequantized to float, NCHW, under npmnv2's float step names, with each tensor's quantization step.

    reference_kernels: run the interpreter's reference kernels (`OpResolverType.BUILTIN_REF`), the
    ones npmnv2's integer model reproduces bit for bit, instead of its default optimized kernels
    (which differ by a few quantization steps on some tensors; see docs/concepts/integer_inference.md).
    """
    from ..tflite.graph import TFLiteGraph
    from ..tflite.layers import match_layers, residual_adds

    path = Path(path)
    graph = TFLiteGraph(path)
    names = match_layers(graph)  # the structure first: a graph that is not a MobileNetV2 never runs
    pixels, _ = tflite_input(path, image)
    computed = interpreter_tensors(path, pixels, reference_kernels=reference_kernels)  # in a child process

    from ..ops.quantization import DTYPE_RANGE

    scales: dict[str, float] = {}
    ranges: dict[str, tuple[float, float]] = {}

    def read(index: int, name: str = "") -> np.ndarray:
        raw = computed[index]
        if name:
            tensor_names[name] = graph.name(index)
        quant = graph.quantization(index)
        if quant is not None and name:
            scales[name] = quant.tensor_scale
            low, high = DTYPE_RANGE[graph.type_of(index)]
            zp = quant.tensor_zero_point
            ranges[name] = ((low - zp) * quant.tensor_scale, (high - zp) * quant.tensor_scale)
        value = raw.astype(np.float64) if quant is None else quant.dequantize(raw)
        return nhwc_to_nchw(value) if value.ndim == 4 else value

    acts: dict[str, np.ndarray] = {}
    hybrid: dict[str, str] = {}
    tensor_names: dict[str, str] = {}
    adds = residual_adds(graph, names)
    segmentation = any(name.startswith("segmentation_head.") for name in names.values())
    resized = False
    for index, op in enumerate(graph.ops):
        out = op["outputs"][0]
        if index in names:
            name = _step_name(names[index], op["activation"])
            acts[name] = read(out, name)
            if graph.quantization(out) is None and graph.type_of(op["inputs"][1]) == np.dtype(np.int8):
                hybrid[name] = _hybrid_rule(graph, op, reference_kernels)
        elif index in adds:
            acts[adds[index]] = read(out, adds[index])
        elif has(op, "pools"):
            name = "segmentation_head.avg_pool" if segmentation else "pooler"
            acts[name] = read(out, name)
        elif op_is(op, RESIZE_BILINEAR) and segmentation and not resized:
            acts["segmentation_head.interpolate"] = read(out, "segmentation_head.interpolate")  # pool, broadcast
            resized = True
        elif has(op, "joins"):
            acts["segmentation_head.concat"] = read(out, "segmentation_head.concat")
    return QuantizedTensors(acts, scales, ranges, hybrid, tensor_names)

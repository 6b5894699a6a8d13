"""The deployed integer model: a quantized TFLite MobileNetV2 / DeepLabV3 run op by op in NumPy
integer arithmetic (the integer form of each op, in `npmnv2.ops`), bit-exact with TFLite's
reference kernels, or (kernels="optimized" / "xnnpack") with its optimized kernels or the XNNPACK
delegate (`npmnv2.tflite.kernels`).

`QuantizedMobileNetV2.from_pretrained(path)` reads the graph; `model(pixel_values)` runs every op
of the file in its order and returns the graph's outputs as the interpreter gives them, plus their
dequantized values. `model.trace(...)`, `model.steps(...)` and `model.run_from(...)` are the float
model's (`npmnv2.trace`): the same `Trace`, the same `layers=` and `stop_at=`, the same errors.
Each op is one step, named and kinded as the float model names its steps
(`layer.12.conv_3x3.convolution`, kind "convolution"), with the TFLite op and tensor it
reproduces, the float step whose output it equals, its quantization, its integer parameters and
its MACs. A conv step's op is the whole quantized layer (`conv2d_int_requantized`: integer sums,
then the requantization and the fused activation's clamp), so its source holds all its math.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..ops import MACS, Pad2D, conv2d, conv_padding, depthwise_conv2d, linear, nhwc_to_nchw, pointwise_conv2d
from ..ops.fully_connected import linear_int_requantized
from ..ops.merge import concat_channels_int
from ..ops.pooling import avg_pool2d_int, global_average_pool_int
from ..ops.probability import softmax_int
from ..ops.quantization import (
    DTYPE_RANGE,
    QuantParams,
    activation_range,
    dequantize_float32,
    multiply_by_float32_scale,
    quantize_float32,
    quantize_multiplier,
    requantize,
    xnnpack_scale,
)
from ..ops.resize import resize_bilinear_int
from ..trace import Recorder, Step, Trace, run_from, stream_steps, trace_forward
from ..weights import WeightFileError, resolve_checkpoint
from .float_import import read_tflite_graph
from .graph import TFLiteGraph
from .kernels import kernel_set
from .layers import integer_steps
from .ops import ADD, ARG_MAX, DEQUANTIZE, MEAN, QUANTIZE, RESIZE_BILINEAR, TFLITE_OPS, TfliteOp, has, op_is, tflite_op
from .structure import FUSED_ACTIVATIONS

SUPPORTED_OPS = tuple(TFLITE_OPS)  # the ops the integer model runs: the rows of npmnv2.tflite.ops


@dataclass
class QuantizedOutput:
    """What the integer model returns: the graph's output tensors as the interpreter gives them
    (`outputs`, NCHW for 4-D ones) and the same dequantized (`dequantized`; ARG_MAX class ids stay ints)."""

    outputs: tuple[np.ndarray, ...]
    dequantized: tuple[np.ndarray, ...]

    @property
    def logits(self) -> np.ndarray:
        """The first output dequantized: softmax probabilities of a classifier, class ids of DeepLab."""
        return self.dequantized[0]


def _integer_macs(row: TfliteOp, output_shape: tuple[int, ...], kernel_shape: tuple[int, ...]) -> int:
    """MACs of a weighted TFLite op, by the float twin's formula (kernels in npmnv2's layout)."""
    if row.fully_connected:  # weights (L, C)
        return MACS[linear](output_shape, kernel_shape[::-1])
    if row.depthwise:  # (1, KH, KW, C) -> (KH, KW, C)
        return MACS[depthwise_conv2d](output_shape, kernel_shape[1:])
    c_out, kh, kw, c_in = kernel_shape  # OHWI -> HWIO
    return MACS[pointwise_conv2d if kh == kw == 1 else conv2d](output_shape, (kh, kw, c_in, c_out))


def input_from_pixels(pixels: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Raw 0..255 uint8 pixels (any layout) as a TFLite MobileNetV2 input of type `dtype` takes them:
    - uint8: the pixels themselves (the input's quantization, 1/128 and 128 or 1/127.5 and 127, maps
      them onto the [-1, 1] the float model sees);
    - int8: the pixels minus 128 (TensorFlow's converter makes its int8 input from the uint8 one: the
      same scale, the zero point minus 128, so both stand for the same real values);
    - float32 (the converter's float I/O): p / 127.5 - 1, Keras's MobileNetV2 preprocessing.
    """
    dtype = np.dtype(dtype)
    raw = np.asarray(pixels)
    if dtype == np.dtype(np.uint8):
        return raw.astype(np.uint8)
    if dtype == np.dtype(np.int8):
        return (raw.astype(np.int16) - 128).astype(np.int8)
    if dtype == np.dtype(np.float32):
        return (raw.astype(np.float32) / np.float32(127.5) - np.float32(1)).astype(np.float32)
    raise WeightFileError(f"a TFLite input of type {dtype} is not an image input npmnv2 knows how to fill.")


class QuantizedMobileNetV2:
    """A quantized TFLite MobileNetV2 classifier or DeepLabV3 segmenter, run in integer arithmetic.

    Every op of the file runs in its order; `SUPPORTED_OPS` lists what npmnv2 implements. Anything
    else (a float model, int16 activations, an unknown op) is refused when the model loads, naming
    the op and its tensor: there is never a silent float fallback.
    """

    def __init__(self, graph: TFLiteGraph, *, kernels: str = "reference") -> None:
        self.kernels = kernel_set(kernels)  # whose rounding rules: reference, optimized or XNNPACK
        self.graph = graph
        self.where = graph.where
        # What TFLite computes once in each op's Prepare, computed once here too: constants,
        # quantization parameters, multipliers and activation ranges, per tensor or op.
        self._constants: dict[int, np.ndarray] = {}
        self._prepared: dict[Any, Any] = {}
        self._fast: Any = None  # npmnv2.fast.integer.FastIntegerModel, made on the first plain call
        self.float_config = read_tflite_graph(graph)[1]
        self.graph_steps = integer_steps(graph)  # (name, kind, float step) per op
        self.task = (
            "segmentation"
            if any(n.startswith("segmentation_head.") for n, _, _ in self.graph_steps)
            else ("classification")
        )
        self._check_supported()
        self.input_index = graph.graph.Inputs(0)
        self.output_indices = [graph.graph.Outputs(i) for i in range(graph.graph.OutputsLength())]
        self.input_dtype = graph.type_of(self.input_index)
        quant = graph.quantization(self.input_index)
        if quant is None:  # float input, quantized by the graph's first op (the converter's float I/O)
            quant = graph.quantization(next(op["outputs"][0] for op in graph.ops if op_is(op, QUANTIZE)))
        self.input_scale, self.input_zero_point = quant.tensor_scale, quant.tensor_zero_point
        self.input_shape = graph.shape(self.input_index)  # (1, H, W, C)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, *, kernels: str = "reference") -> QuantizedMobileNetV2:
        """Load a quantized MobileNetV2 / DeepLabV3 `.tflite` file ("npmnv2/default": the embedded one).

        kernels: whose numbers to compute, "reference" (the interpreter's reference kernels),
        "optimized" (its optimized kernels, without a delegate) or "xnnpack" (its default, the XNNPACK
        delegate); see `npmnv2.tflite.kernels`.
        """
        return cls(TFLiteGraph(resolve_checkpoint(path)), kernels=kernels)

    def __repr__(self) -> str:
        n, h, w, c = self.input_shape
        return (
            f"QuantizedMobileNetV2({self.task}, {len(self.graph.ops)} ops, input {self.input_dtype} "
            f"(N, {c}, {h}, {w}) scale {self.input_scale:.6g} zero point {self.input_zero_point}, "
            f"{self.kernels.name} kernels)"
        )

    # ---------------------------------------------------------------- checks
    def _check_supported(self) -> None:
        g = self.graph
        x = g.graph.Inputs(0)
        readers = [op for op in g.ops if x in op["inputs"]]
        float_in = g.type_of(x) == np.dtype(np.float32) and readers and all(op_is(op, QUANTIZE) for op in readers)
        if not float_in and (g.type_of(x) not in (np.dtype(np.uint8), np.dtype(np.int8)) or g.quantization(x) is None):
            raise WeightFileError(
                f"{self.where}: its input tensor {g.name(x)!r} is {g.type_of(x)}, not quantized uint8 or int8 (nor "
                "float32 read by a QUANTIZE); the integer model runs fully quantized files (load a float file with "
                "the float classes)."
            )
        for index, op in enumerate(g.ops):
            out = op["outputs"][0]
            if op["type"] not in SUPPORTED_OPS:
                raise WeightFileError(
                    f"{self.where}: op {index} {op['type']} (tensor {g.name(out)!r}) is not implemented by npmnv2's "
                    f"integer model; it runs {', '.join(SUPPORTED_OPS)}."
                )
            if op_is(op, DEQUANTIZE):
                if op["inputs"][0] in g.constants or out not in self._graph_outputs():
                    raise WeightFileError(
                        f"{self.where}: op {index} DEQUANTIZE (tensor {g.name(out)!r}) makes a float tensor inside "
                        "the graph; the integer model dequantizes only the graph's outputs (a float16 or hybrid "
                        "model: load it with the float classes)."
                    )
                continue
            dtype = g.type_of(out)
            if not op_is(op, ARG_MAX) and dtype not in (np.dtype(np.uint8), np.dtype(np.int8)):
                raise WeightFileError(
                    f"{self.where}: op {index} {op['type']} writes {dtype} tensor {g.name(out)!r}; the integer model "
                    "runs uint8/int8 activations only (a float or int16 model: load it with the float classes)."
                )
            if op_is(op, RESIZE_BILINEAR):
                self._check_resize(index, op)
            if g.quantization(out) is None and not op_is(op, ARG_MAX):
                raise WeightFileError(
                    f"{self.where}: tensor {g.name(out)!r} of op {index} {op['type']} is not quantized."
                )

    def _check_resize(self, index: int, op: dict) -> None:
        """Refuse the RESIZE_BILINEAR configurations whose rule npmnv2 has not measured, naming them."""
        g, name = self.graph, self.kernels.name
        where = f"{self.where}: op {index} RESIZE_BILINEAR (tensor {g.name(op['outputs'][0])!r})"
        if g.type_of(op["inputs"][0]) == np.dtype(np.int8):
            if self.kernels.delegate:
                raise WeightFileError(
                    f"{where} resizes int8; XNNPACK's int8 bilinear kernel is not measured by npmnv2 (its uint8 one "
                    "is). Use kernels='reference' or 'optimized'."
                )
            if not op["align_corners"]:
                raise WeightFileError(
                    f"{where} resizes int8 without align_corners; npmnv2 reproduces TFLite's int8 rule (10-bit "
                    "weights) with align_corners only."
                )
        n, h, w, c = g.shape(op["inputs"][0])
        ho, wo = (int(v) for v in np.ravel(self.constant(op["inputs"][1])))
        if (
            name == "optimized"
            and op["half_pixel_centers"]
            and c % 8 == 0
            and min(ho, wo) >= 8
            and (ho, wo) == (8 * h, 8 * w)
        ):
            raise WeightFileError(
                f"{where} is an 8x half-pixel upsample of a multiple of 8 channels, which the optimized kernels run "
                "by a special kernel (ResizeBilinear888Uint8) npmnv2 does not reproduce; use kernels='reference' or "
                "'xnnpack'."
            )

    def input_from_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """Raw uint8 pixels (N, 3, H, W), e.g. `MobileNetV2ImageProcessor.integer_pixels`, as this
        file's input takes them (see the module function `input_from_pixels`)."""
        return input_from_pixels(pixels, self.input_dtype)

    def _graph_outputs(self) -> set[int]:
        return {self.graph.graph.Outputs(i) for i in range(self.graph.graph.OutputsLength())}

    def _check_input(self, pixel_values: Any) -> np.ndarray:
        n, h, w, c = self.input_shape
        if not isinstance(pixel_values, np.ndarray) or pixel_values.ndim != 4:
            raise TypeError(
                f"QuantizedMobileNetV2: pixel_values must be a (N, {c}, {h}, {w}) {self.input_dtype} array, got "
                f"{getattr(pixel_values, 'shape', type(pixel_values).__name__)}; use "
                "MobileNetV2ImageProcessor(...).integer_pixels(...) or npmnv2.verify.tflite_input."
            )
        if pixel_values.dtype != self.input_dtype:
            raise TypeError(
                f"QuantizedMobileNetV2: pixel_values must be {self.input_dtype} (the file's quantized input, scale "
                f"{self.input_scale:.6g}, zero point {self.input_zero_point}), got {pixel_values.dtype}. Quantize with "
                f"npmnv2.ops.quantization.quantize, or use MobileNetV2ImageProcessor(...).integer_pixels(images)."
            )
        if pixel_values.shape[1:] != (c, h, w):
            raise ValueError(
                f"QuantizedMobileNetV2: pixel_values must be (N, {c}, {h}, {w}) (NCHW, the file's input size), got "
                f"{pixel_values.shape}."
            )
        nhwc = np.ascontiguousarray(pixel_values.transpose(0, 2, 3, 1))  # NHWC, as TFLite
        return nhwc if self.input_dtype.kind == "f" else nhwc.astype(np.int64)

    # ---------------------------------------------------------------- running
    def __call__(self, pixel_values: np.ndarray) -> QuantizedOutput:
        return self.forward(pixel_values)

    def forward(self, pixel_values: np.ndarray, *, rec: Recorder | None = None) -> QuantizedOutput:
        """Run every op of the graph in order on a quantized NCHW input; returns the graph's outputs.
        With a recorder (a Trace) every op is its readable integer op, recorded as one step named as the
        float model names it; without one, its fast form (`npmnv2.fast.integer`: the same integers)."""
        if rec is None:
            return self._outputs(self._fast_model().run(self._check_input(pixel_values)))
        tensors: dict[int, np.ndarray] = {self.input_index: self._check_input(pixel_values)}
        for index, op in enumerate(self.graph.ops):
            run, function = self.handler(op)
            output = run(op, tensors)
            name, kind, _ = self.graph_steps[index]
            info = self._step_info(index, op, tensors, output)
            inputs = tuple(tensors[t] for t in op["inputs"] if t in tensors)
            tensors[op["outputs"][0]] = rec.add(name, kind, output, op=function, inputs=inputs, **info)
        return self._outputs(tensors)

    def _fast_model(self) -> Any:
        """The fast forms of this model's ops, made once (their tables and weights) on the first plain call."""
        if self._fast is None:
            from ..fast.integer import FastIntegerModel

            self._fast = FastIntegerModel(self)
        return self._fast

    def _outputs(self, tensors: dict[int, np.ndarray]) -> QuantizedOutput:
        """The graph's outputs among all tensors of a pass: as the interpreter gives them, and dequantized."""
        outputs, dequantized = [], []
        for t in self.output_indices:
            value = tensors[t].astype(self.graph.type_of(t))
            quant = self.graph.quantization(t)
            outputs.append(nhwc_to_nchw(value) if value.ndim == 4 else value)
            dequantized.append(outputs[-1] if quant is None else quant.dequantize(outputs[-1]))
        return QuantizedOutput(tuple(outputs), tuple(dequantized))

    @property
    def tf_padding(self) -> bool:
        """TFLite pads SAME the TensorFlow way."""
        return True

    def step_name(self, index: int) -> str:
        """The step name of op `index`, as the float model names it (`layer.12.conv_3x3.convolution`)."""
        return self.graph_steps[index][0]

    def float_step(self, index: int) -> str | None:
        """The float step whose output op `index` reproduces, if any (`layer.12.conv_3x3.activation`)."""
        return self.graph_steps[index][2]

    def _step_info(self, index: int, op: dict, tensors: dict, output: np.ndarray) -> dict[str, Any]:
        """What a trace records of op `index` besides its tensors: its attributes (the TFLite op and
        tensor it reproduces, the float step it equals, the geometry it applied, its quantization,
        how many values sit on the edges of its range), its integer parameters and its MACs."""
        g = self.graph
        out = op["outputs"][0]
        attrs: dict[str, Any] = {
            "tflite_op": op["type"],
            "kernels": self.kernels.name,
            "tflite_index": index,
            "tflite_tensor": g.name(out),
            "float_step": self.float_step(index),
        }
        params: dict[str, np.ndarray] = {}
        macs = 0
        if has(op, "weighted"):
            params["kernel"] = self.constant(op["inputs"][1])
            if op["inputs"][2] >= 0:
                params["bias"] = self.constant(op["inputs"][2])
            macs = _integer_macs(tflite_op(op), output.shape, params["kernel"].shape)
        if has(op, "convolution"):
            padding = self.padding(op, tensors[op["inputs"][0]].shape)
            attrs.update(stride=op["stride"][0], dilation=op["dilation"][0], padding=tuple(padding))
        quant = g.quantization(out)
        if quant is not None:
            low, high = self.output_range(op, out) if not op_is(op, ARG_MAX) else (None, None)
            attrs.update(
                scale=quant.scale if quant.per_channel else quant.tensor_scale,
                zero_point=quant.zero_point if quant.per_channel else quant.tensor_zero_point,
                range=(low, high),
                at_min=int(np.count_nonzero(output == low)),
                at_max=int(np.count_nonzero(output == high)),
            )
        return {"attrs": attrs, "params": params, "macs": macs}

    def op_parameters(self, index: int) -> dict[str, Any]:
        """Everything op `index` needs besides its input: the quantization (scale, zero point) of its
        input, weights and output, its multiplier as a real number and as (M0, shift), its output
        range (the fused activation's clamp), and its weights and bias as stored (integers)."""
        g, op = self.graph, self.graph.ops[index]
        x_t, out = op["inputs"][0], op["outputs"][0]
        params: dict[str, Any] = {"op": op["type"], "step": self.step_name(index), "float_step": self.float_step(index)}
        if g.quantization(x_t) is not None:
            params["input_scale"], params["input_zero_point"] = (
                self.quantization_of(x_t).tensor_scale,
                self.quantization_of(x_t).tensor_zero_point,
            )
        if g.quantization(out) is not None:
            params["output_scale"], params["output_zero_point"] = (
                self.quantization_of(out).tensor_scale,
                self.quantization_of(out).tensor_zero_point,
            )
            params["output_range"] = self.output_range(op, out)
        if has(op, "weighted"):
            w_t, b_t = op["inputs"][1], op["inputs"][2]
            weights = self.quantization_of(w_t)
            x_scale, out_scale = self.quantization_of(x_t).tensor_scale, self.quantization_of(out).tensor_scale
            m0, shift = self._multipliers(x_scale, weights, out_scale)
            params.update(
                weights=self.constant(w_t),
                bias=self.constant(b_t) if b_t >= 0 else None,
                weight_scale=weights.scale if weights.per_channel else weights.tensor_scale,
                weight_zero_point=weights.zero_point if weights.per_channel else weights.tensor_zero_point,
                multiplier=np.asarray(m0) * np.exp2(np.asarray(shift) - 31.0),
                m0=m0,
                shift=shift,
            )
        return params

    def run_op(self, index: int, tensors: Mapping[int, np.ndarray]) -> np.ndarray:
        """Op `index` alone, on given input tensors (TFLite tensor index -> integers, NHWC): what
        `npmnv2.verify.check_integer` runs on another implementation's tensors."""
        run, _ = self.handler(self.graph.ops[index])
        return run(self.graph.ops[index], dict(tensors))

    # ---------------------------------------------------------------- tracing: the float model's machinery
    def step_names(self) -> list[str]:
        """One step per op of the graph, in the file's order, named as the float model names its steps."""
        return [name for name, _, _ in self.graph_steps]

    def trace(
        self, pixel_values: np.ndarray, layers: str | list[str] | None = None, stop_at: str | None = None
    ) -> Trace:
        """Run the integer model and record every op as a Step (see `npmnv2.trace.trace_forward`):
        its integer output (NCHW), op, kind, MACs, integer parameters and (attrs) its scale, zero
        point, TFLite op and tensor, matching float step and saturation counts."""
        return trace_forward(self, pixel_values, layers, stop_at)

    def steps(self, pixel_values: np.ndarray) -> Step:
        """The steps of one integer forward pass, each computed when asked for (a `StepStream`)."""
        return stream_steps(self, pixel_values)

    def run_from(self, name: str, tensor: np.ndarray, *, pixel_values: np.ndarray | None = None) -> QuantizedOutput:
        """The integer forward again, with `tensor` (integers, NCHW) in place of step `name`'s output."""
        return run_from(self, name, tensor, pixel_values=pixel_values)

    # ---------------------------------------------------------------- what TFLite prepares once per op
    # Public so that the fast forms (`npmnv2.fast.integer`) read the same prepared values as the handlers.
    def constant(self, t: int) -> np.ndarray:
        """Constant tensor `t` (weights, bias, a shape or axis) as stored, read once."""
        if t not in self._constants:
            self._constants[t] = self.graph.raw(t)
        return self._constants[t]

    def _prepare(self, key: Any, compute: Callable[[], Any]) -> Any:
        if key not in self._prepared:
            self._prepared[key] = compute()
        return self._prepared[key]

    def quantization_of(self, t: int) -> QuantParams:
        """Tensor `t`'s scale and zero point (per tensor or per channel)."""
        return self._prepare(("q", t), lambda: self.graph.quantization(t))

    def output_range(self, op: dict, t: int) -> tuple[int, int]:
        """The integer range op `op`'s fused activation leaves in its output tensor `t`."""

        def compute() -> tuple[int, int]:
            q = self.quantization_of(t)
            activation = FUSED_ACTIVATIONS.get(op.get("activation", 0))
            return activation_range(activation, q.tensor_scale, q.tensor_zero_point, self.graph.type_of(t))

        return self._prepare(("range", t, op.get("activation", 0)), compute)

    def _multipliers(self, x_scale: float, weights: QuantParams, out_scale: float):
        """The output multipliers of a conv or FC layer: per tensor in TFLite's way (the input and
        filter scales multiplied in float32, then divided in double), or per channel in double."""
        key = ("multipliers", float(x_scale), weights.scale.tobytes(), float(out_scale))
        return self._prepare(key, lambda: self._compute_multipliers(x_scale, weights, out_scale))

    def requantization(self, x_scale: float, weights: QuantParams, out_scale: float, multiply: Any):
        """The multiplier the requantization rule `multiply` takes: TFLite's (M0, shift), or for XNNPACK's
        `multiply_by_float32_scale` its one float32 scale per channel (with shift 0)."""
        if multiply is not multiply_by_float32_scale:
            return self._multipliers(x_scale, weights, out_scale)
        key = ("float32 scales", float(x_scale), weights.scale.tobytes(), float(out_scale))
        scale = self._prepare(
            key,
            lambda: xnnpack_scale(x_scale, weights.scale if weights.per_channel else weights.tensor_scale, out_scale),
        )
        return scale, 0

    def _compute_multipliers(self, x_scale: float, weights: QuantParams, out_scale: float):
        if weights.per_channel:
            pairs = [quantize_multiplier(float(x_scale) * float(ws) / float(out_scale)) for ws in weights.scale]
            return np.array([p[0] for p in pairs], np.int64), np.array([p[1] for p in pairs], np.int64)
        product = float(np.float32(x_scale) * np.float32(weights.tensor_scale))
        return quantize_multiplier(product / float(np.float32(out_scale)))

    def padding(self, op: dict, x_shape: tuple[int, ...]) -> Pad2D:
        """The padding conv op `op` applies to an NHWC input of `x_shape` (SAME: the TensorFlow way)."""
        if op["padding"] != "SAME":
            return Pad2D(0, 0, 0, 0)
        n, h, w, c = x_shape
        kh = self.constant(op["inputs"][1]).shape[1]
        return conv_padding(h, w, kernel_size=kh, stride=op["stride"][0], dilation=op["dilation"][0], tf_padding=True)

    def handler(self, op: dict) -> tuple[Callable[[dict, dict], np.ndarray], Callable[..., Any]]:
        """The handler that runs op type `op["type"]`, and the public op function a step names."""
        row = tflite_op(op)
        if row is QUANTIZE:
            return self._quantize, quantize_float32 if self.reads_float(op) else self.kernels.requantize
        if row is MEAN:
            return self._mean, self.kernels.mean
        if row is ADD:
            return self._add, self.kernels.add
        return getattr(self, f"_{row.handler}"), row.integer_op

    # ---------------------------------------------------------------- one handler per op type
    def _conv(self, op: dict, tensors: dict) -> np.ndarray:
        x_t, w_t, b_t, out = op["inputs"][0], op["inputs"][1], op["inputs"][2], op["outputs"][0]
        x = tensors[x_t]
        x_q, w_q, out_q = self.quantization_of(x_t), self.quantization_of(w_t), self.quantization_of(out)
        multiply = self.kernels.rule_for(op)
        m0, shift = self.requantization(x_q.tensor_scale, w_q, out_q.tensor_scale, multiply)
        layer = tflite_op(op).integer_op  # depthwise_conv2d_int_requantized or conv2d_int_requantized
        return layer(
            x,
            x_q.tensor_zero_point,
            self.constant(w_t),
            w_q.zero_point if w_q.per_channel else w_q.tensor_zero_point,
            self.constant(b_t) if b_t >= 0 else None,
            m0,
            shift,
            out_q.tensor_zero_point,
            self.output_range(op, out),
            stride=op["stride"][0],
            dilation=op["dilation"][0],
            padding=self.padding(op, x.shape),
            multiply=multiply,
        )

    def _fully_connected(self, op: dict, tensors: dict) -> np.ndarray:
        x_t, w_t, b_t, out = op["inputs"][0], op["inputs"][1], op["inputs"][2], op["outputs"][0]
        x = tensors[x_t].reshape(-1, self.constant(w_t).shape[1])
        x_q, w_q, out_q = self.quantization_of(x_t), self.quantization_of(w_t), self.quantization_of(out)
        multiply = self.kernels.rule_for(op)
        m0, shift = self.requantization(x_q.tensor_scale, w_q, out_q.tensor_scale, multiply)
        return linear_int_requantized(
            x,
            x_q.tensor_zero_point,
            self.constant(w_t),
            w_q.tensor_zero_point,
            self.constant(b_t) if b_t >= 0 else None,
            m0,
            shift,
            out_q.tensor_zero_point,
            self.output_range(op, out),
            multiply=multiply,
        )

    def _add(self, op: dict, tensors: dict) -> np.ndarray:
        a_t, b_t, out = op["inputs"][0], op["inputs"][1], op["outputs"][0]
        a, b, o = self.quantization_of(a_t), self.quantization_of(b_t), self.quantization_of(out)
        return self.kernels.add(
            tensors[a_t],
            a.tensor_scale,
            a.tensor_zero_point,
            tensors[b_t],
            b.tensor_scale,
            b.tensor_zero_point,
            o.tensor_scale,
            o.tensor_zero_point,
            self.output_range(op, out),
        )

    def _average_pool(self, op: dict, tensors: dict) -> np.ndarray:
        x = tensors[op["inputs"][0]]
        if op["padding"] != "VALID" or (op["stride"] != (1, 1) and x.shape[1:3] != op["filter"]):
            if not (x.shape[1:3] == op["filter"]):
                raise WeightFileError(
                    f"{self.where}: AVERAGE_POOL_2D other than a VALID whole-window pool is not implemented."
                )
        return avg_pool2d_int(x, kernel_size=op["filter"], act_range=self.output_range(op, op["outputs"][0]))

    def _mean(self, op: dict, tensors: dict) -> np.ndarray:
        x_t, out = op["inputs"][0], op["outputs"][0]
        axes = sorted(int(a) for a in np.ravel(self.constant(op["inputs"][1])))
        if axes != [1, 2]:
            raise WeightFileError(f"{self.where}: MEAN over axes {axes} is not implemented (only over H and W).")
        x, o = self.quantization_of(x_t), self.quantization_of(out)
        out_range = DTYPE_RANGE[self.graph.type_of(out)]
        if self.kernels.mean is global_average_pool_int:  # the reference kernel: TFLite's (M0, shift)
            m0, shift = quantize_multiplier(x.tensor_scale / o.tensor_scale)  # in double, as TFLite
            mean = global_average_pool_int(tensors[x_t], x.tensor_zero_point, m0, shift, o.tensor_zero_point, out_range)
        else:  # the optimized kernels and XNNPACK take the scales themselves
            mean = self.kernels.mean(
                tensors[x_t], x.tensor_scale, x.tensor_zero_point, o.tensor_scale, o.tensor_zero_point, out_range
            )
        return mean if op.get("keep_dims", True) else mean.reshape(mean.shape[0], -1)  # keep_dims=False: (N, C)

    def _reshape(self, op: dict, tensors: dict) -> np.ndarray:
        # The file's shape, with the batch of the input that runs (the file declares batch 1).
        return tensors[op["inputs"][0]].reshape((-1, *self.graph.shape(op["outputs"][0])[1:]))

    def _softmax(self, op: dict, tensors: dict) -> np.ndarray:
        x_t, out = op["inputs"][0], op["outputs"][0]
        out_range = DTYPE_RANGE[self.graph.type_of(out)]
        return softmax_int(tensors[x_t], self.quantization_of(x_t).tensor_scale, beta=op["beta"], out_range=out_range)

    def _resize(self, op: dict, tensors: dict) -> np.ndarray:
        size = tuple(int(v) for v in np.ravel(self.constant(op["inputs"][1])))
        resize = self.kernels.resize_uint8 if self.graph.type_of(op["inputs"][0]) == np.uint8 else resize_bilinear_int
        return resize(
            tensors[op["inputs"][0]],
            size,
            align_corners=op["align_corners"],
            half_pixel_centers=op["half_pixel_centers"],
        )

    def _concat(self, op: dict, tensors: dict) -> np.ndarray:
        out = op["outputs"][0]
        quants = [self.quantization_of(t) for t in op["inputs"]]
        o = self.quantization_of(out)
        return concat_channels_int(
            [tensors[t] for t in op["inputs"]],
            [q.tensor_scale for q in quants],
            [q.tensor_zero_point for q in quants],
            o.tensor_scale,
            o.tensor_zero_point,
            DTYPE_RANGE[self.graph.type_of(out)],
        )

    def reads_float(self, op: dict) -> bool:
        """Whether op `op` reads a float32 tensor (the QUANTIZE of a float input)."""
        return self.graph.type_of(op["inputs"][0]) == np.dtype(np.float32)

    def _dequantize(self, op: dict, tensors: dict) -> np.ndarray:
        q = self.quantization_of(op["inputs"][0])
        return dequantize_float32(tensors[op["inputs"][0]], q.tensor_scale, q.tensor_zero_point)

    def _quantize(self, op: dict, tensors: dict) -> np.ndarray:
        x_t, out = op["inputs"][0], op["outputs"][0]
        if self.reads_float(op):  # real numbers in: the graph's float input
            o = self.quantization_of(out)
            return quantize_float32(
                tensors[x_t], o.tensor_scale, o.tensor_zero_point, DTYPE_RANGE[self.graph.type_of(out)]
            )
        x, o = self.quantization_of(x_t), self.quantization_of(out)
        out_range = DTYPE_RANGE[self.graph.type_of(out)]
        if self.kernels.requantize is requantize:  # TFLite's kernels: a 31-bit multiplier
            m0, shift = quantize_multiplier(x.tensor_scale / o.tensor_scale)
            return requantize(tensors[x_t], x.tensor_zero_point, m0, shift, o.tensor_zero_point, out_range)
        return self.kernels.requantize(
            tensors[x_t], x.tensor_scale, x.tensor_zero_point, o.tensor_scale, o.tensor_zero_point, out_range
        )

    def _argmax(self, op: dict, tensors: dict) -> np.ndarray:
        axis = int(np.ravel(self.constant(op["inputs"][1]))[0])
        return np.argmax(tensors[op["inputs"][0]], axis=axis).astype(np.int64)

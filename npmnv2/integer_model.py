"""The deployed integer model: a quantized TFLite MobileNetV2 / DeepLabV3 run op by op in NumPy
integer arithmetic (`npmnv2.integer_ops`), bit-exact with TFLite's reference kernels.

`QuantizedMobileNetV2.from_pretrained(path)` reads the graph; `model(pixel_values)` runs every op
of the file in its order and returns the graph's outputs as the interpreter gives them, plus their
dequantized values; `model.trace(...)` records every op as a `Step` carrying its integer output,
its scale and zero point, the TFLite tensor it reproduces and the transformers-style name of the
matching float step where there is one.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import integer_ops as iops
from .ops import Pad2D, conv_padding
from .tflite_import import TFLiteGraph, match_layers, read_tflite, residual_adds
from .trace import NO_TRACE, Recorder, StopForward, Trace, unknown_name_error
from .weights import WeightFileError, resolve_checkpoint

_ACTIVATIONS = {0: None, 1: "relu", 2: "relu_n1_to_1", 3: "relu6"}
SUPPORTED_OPS = (
    "CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD", "AVERAGE_POOL_2D", "MEAN", "RESHAPE", "SOFTMAX",
    "RESIZE_BILINEAR", "CONCATENATION", "QUANTIZE", "ARG_MAX",
)  # fmt: skip


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


class QuantizedMobileNetV2:
    """A quantized TFLite MobileNetV2 classifier or DeepLabV3 segmenter, run in integer arithmetic.

    Every op of the file runs in its order; `SUPPORTED_OPS` lists what npmnv2 implements. Anything
    else (a float model, int16 activations, an unknown op) is refused when the model loads, naming
    the op and its tensor: there is never a silent float fallback.
    """

    def __init__(self, graph: TFLiteGraph) -> None:
        self.graph = graph
        self.where = graph.where
        self.names = match_layers(graph)
        self.adds = residual_adds(graph, self.names)
        self.float_config = read_tflite(graph.path)[1]
        self.task = (
            "segmentation"
            if any(n.startswith("segmentation_head.") for n in self.names.values())
            else ("classification")
        )
        self._check_supported()
        self.input_index = graph.graph.Inputs(0)
        self.output_indices = [graph.graph.Outputs(i) for i in range(graph.graph.OutputsLength())]
        self.input_dtype = graph.type_of(self.input_index)
        quant = graph.quantization(self.input_index)
        self.input_scale, self.input_zero_point = float(quant[0][0]), int(quant[1][0])
        self.input_shape = graph.shape(self.input_index)  # (1, H, W, C)
        # What TFLite computes once in each op's Prepare, computed once here too: constants,
        # quantization parameters, multipliers and activation ranges, per tensor or op.
        self._constants: dict[int, np.ndarray] = {}
        self._prepared: dict[Any, Any] = {}

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike) -> QuantizedMobileNetV2:
        """Load a quantized MobileNetV2 / DeepLabV3 `.tflite` file ("npmnv2/default": the embedded one)."""
        return cls(TFLiteGraph(resolve_checkpoint(path)))

    def __repr__(self) -> str:
        n, h, w, c = self.input_shape
        return (
            f"QuantizedMobileNetV2({self.task}, {len(self.graph.ops)} ops, input {self.input_dtype} "
            f"(N, {c}, {h}, {w}) scale {self.input_scale:.6g} zero point {self.input_zero_point})"
        )

    # ---------------------------------------------------------------- checks
    def _check_supported(self) -> None:
        g = self.graph
        for index, op in enumerate(g.ops):
            out = op["outputs"][0]
            if op["type"] not in SUPPORTED_OPS:
                raise WeightFileError(
                    f"{self.where}: op {index} {op['type']} (tensor {g.name(out)!r}) is not implemented by npmnv2's "
                    f"integer model; it runs {', '.join(SUPPORTED_OPS)}."
                )
            dtype = g.type_of(out)
            if op["type"] != "ARG_MAX" and dtype not in (np.dtype(np.uint8), np.dtype(np.int8)):
                raise WeightFileError(
                    f"{self.where}: op {index} {op['type']} writes {dtype} tensor {g.name(out)!r}; the integer model "
                    "runs uint8/int8 activations only (a float or int16 model: load it with the float classes)."
                )
            if g.quantization(out) is None and op["type"] != "ARG_MAX":
                raise WeightFileError(
                    f"{self.where}: tensor {g.name(out)!r} of op {index} {op['type']} is not quantized."
                )

    def _check_input(self, pixel_values: Any) -> np.ndarray:
        n, h, w, c = self.input_shape
        if not isinstance(pixel_values, np.ndarray) or pixel_values.ndim != 4:
            raise TypeError(
                f"QuantizedMobileNetV2: pixel_values must be a (N, {c}, {h}, {w}) {self.input_dtype} array, got "
                f"{getattr(pixel_values, 'shape', type(pixel_values).__name__)}; use "
                "MobileNetV2ImageProcessor(...).quantize(...) or npmnv2.verify.tflite_input."
            )
        if pixel_values.dtype != self.input_dtype:
            raise TypeError(
                f"QuantizedMobileNetV2: pixel_values must be {self.input_dtype} (the file's quantized input, scale "
                f"{self.input_scale:.6g}, zero point {self.input_zero_point}), got {pixel_values.dtype}. Quantize with "
                f"npmnv2.integer_ops.quantize, or use MobileNetV2ImageProcessor(...).integer_pixels(images)."
            )
        if pixel_values.shape[1:] != (c, h, w):
            raise ValueError(
                f"QuantizedMobileNetV2: pixel_values must be (N, {c}, {h}, {w}) (NCHW, the file's input size), got "
                f"{pixel_values.shape}."
            )
        return np.ascontiguousarray(pixel_values.transpose(0, 2, 3, 1)).astype(np.int64)  # NHWC, as TFLite

    # ---------------------------------------------------------------- running
    def __call__(self, pixel_values: np.ndarray) -> QuantizedOutput:
        return self.forward(pixel_values)

    def forward(self, pixel_values: np.ndarray, *, rec: Recorder | None = None) -> QuantizedOutput:
        """Run every op of the graph in order on a quantized NCHW input; returns the graph's outputs."""
        tracing = rec is not None
        rec = NO_TRACE if rec is None else rec
        tensors: dict[int, np.ndarray] = {self.input_index: self._check_input(pixel_values)}
        for index, op in enumerate(self.graph.ops):
            run, function = self._kernel(op)
            output = run(op, tensors)
            attrs = self._attrs(index, op, output) if tracing else None
            inputs = tuple(tensors[t] for t in op["inputs"][:1] if t in tensors) if tracing else ()
            tensors[op["outputs"][0]] = rec.add(
                self.step_name(index), "integer", output, op=function, inputs=inputs, attrs=attrs
            )
        outputs, dequantized = [], []
        for t in self.output_indices:
            value = tensors[t].astype(self.graph.type_of(t))
            quant = self.graph.quantization(t)
            outputs.append(value.transpose(0, 3, 1, 2) if value.ndim == 4 else value)
            dequantized.append(
                outputs[-1] if quant is None else iops.dequantize(outputs[-1], float(quant[0][0]), int(quant[1][0]))
            )
        return QuantizedOutput(tuple(outputs), tuple(dequantized))

    def step_name(self, index: int) -> str:
        """The step name of op `index`: `op.<index>.<OP_TYPE>`, e.g. `op.12.DEPTHWISE_CONV_2D`."""
        return f"op.{index}.{self.graph.ops[index]['type']}"

    def float_step(self, index: int) -> str | None:
        """The transformers-style name of the float step whose output op `index` reproduces, if any."""
        op = self.graph.ops[index]
        if index in self.names:
            name = self.names[index]
            if name in ("classifier",):
                return "classifier"
            if name == "segmentation_head.classifier":
                return "segmentation_head.classifier.convolution"
            return f"{name}.activation" if op.get("activation") else f"{name}.normalization"
        if index in self.adds:
            return self.adds[index]
        if op["type"] in ("AVERAGE_POOL_2D", "MEAN"):
            return "segmentation_head.avg_pool" if self.task == "segmentation" else "pooler"
        return None

    def _attrs(self, index: int, op: dict, output: np.ndarray) -> dict[str, Any]:
        """What a trace records of op `index`: the TFLite tensor it reproduces, the matching float
        step, its quantization, and how many values sit on the edges of its range (saturated)."""
        g = self.graph
        out = op["outputs"][0]
        attrs: dict[str, Any] = {
            "tflite_tensor": g.name(out),
            "tflite_op": op["type"],
            "float_step": self.float_step(index),
        }
        if g.quantization(out) is not None:
            scale, zero_point = self._q(out)
            low, high = self._range(op, out) if op["type"] != "ARG_MAX" else (None, None)
            attrs.update(
                scale=scale if scale.size > 1 else float(scale[0]),
                zero_point=zero_point if zero_point.size > 1 else int(zero_point[0]),
                range=(low, high),
                at_min=int(np.count_nonzero(output == low)),
                at_max=int(np.count_nonzero(output == high)),
            )  # fmt: skip
        return attrs

    def op_parameters(self, index: int) -> dict[str, Any]:
        """Everything op `index` needs besides its input: the quantization (scale, zero point) of its
        input, weights and output, its multiplier as a real number and as (M0, shift), its output
        range (the fused activation's clamp), and its weights and bias as stored (integers)."""
        g, op = self.graph, self.graph.ops[index]
        x_t, out = op["inputs"][0], op["outputs"][0]
        params: dict[str, Any] = {"op": op["type"], "float_step": self.float_step(index)}
        if g.quantization(x_t) is not None:
            params["input_scale"], params["input_zero_point"] = float(self._q(x_t)[0][0]), int(self._q(x_t)[1][0])
        if g.quantization(out) is not None:
            params["output_scale"], params["output_zero_point"] = float(self._q(out)[0][0]), int(self._q(out)[1][0])
            params["output_range"] = self._range(op, out)
        if op["type"] in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            w_t, b_t = op["inputs"][1], op["inputs"][2]
            w_scale, w_zp = self._q(w_t)
            per_channel = w_scale.size > 1
            m0, shift = self._multipliers(self._q(x_t)[0][0], w_scale, self._q(out)[0][0], per_channel=per_channel)
            params.update(
                weights=self._const(w_t), bias=self._const(b_t) if b_t >= 0 else None,
                weight_scale=w_scale if per_channel else float(w_scale[0]),
                weight_zero_point=w_zp if per_channel else int(w_zp[0]),
                multiplier=np.asarray(m0) * np.exp2(np.asarray(shift) - 31.0), m0=m0, shift=shift,
            )  # fmt: skip
        return params

    # ---------------------------------------------------------------- tracing
    def step_names(self) -> list[str]:
        """One step per op of the graph, in the file's order: `op.<index>.<OP_TYPE>`."""
        return [self.step_name(i) for i in range(len(self.graph.ops))]

    def trace(
        self, pixel_values: np.ndarray, layers: str | list[str] | None = None, stop_at: str | None = None
    ) -> Trace:
        """Run the integer model and record every op as a Step: its integer output (NCHW), op,
        scale, zero point, TFLite tensor name, matching float step and saturation counts (attrs)."""
        names = self.step_names()
        patterns = [layers] if isinstance(layers, str) else layers
        if stop_at is not None and stop_at not in names:
            raise unknown_name_error(stop_at, names)
        trace = Trace(keep=patterns, stop_at=stop_at)
        trace.pixel_values = pixel_values
        try:
            trace.output = self.forward(pixel_values, rec=trace)
        except StopForward:
            pass
        self._last_trace_input = pixel_values
        return trace

    def steps(self, pixel_values: np.ndarray):
        """Iterate over the steps of one integer forward pass, with every tensor kept."""
        yield from self.trace(pixel_values).steps

    def run_from(self, name: str, tensor: np.ndarray, *, pixel_values: np.ndarray | None = None) -> QuantizedOutput:
        """The integer forward again, with `tensor` (integers, NCHW) in place of step `name`'s output."""
        if name not in self.step_names():
            raise unknown_name_error(name, self.step_names())
        source = getattr(self, "_last_trace_input", None) if pixel_values is None else pixel_values
        if source is None:
            raise ValueError("run_from needs the input: call model.trace(pixel_values) first, or pass pixel_values=.")
        return self.forward(source, rec=Trace(keep=[], replace={name: tensor}))

    def _const(self, t: int) -> np.ndarray:
        if t not in self._constants:
            self._constants[t] = self.graph.raw(t)
        return self._constants[t]

    def _prepare(self, key: Any, compute: Callable[[], Any]) -> Any:
        if key not in self._prepared:
            self._prepared[key] = compute()
        return self._prepared[key]

    def _q(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        def compute() -> tuple[np.ndarray, np.ndarray]:
            quant = self.graph.quantization(t)
            return quant[0].astype(np.float64), quant[1].astype(np.int64)

        return self._prepare(("q", t), compute)

    def _range(self, op: dict, t: int) -> tuple[int, int]:
        def compute() -> tuple[int, int]:
            scale, zp = self._q(t)
            activation = _ACTIVATIONS.get(op.get("activation", 0))
            return iops.activation_range(activation, float(scale[0]), int(zp[0]), self.graph.type_of(t))

        return self._prepare(("range", t, op.get("activation", 0)), compute)

    def _kernel(self, op: dict) -> tuple[Callable[[dict, dict], np.ndarray], Callable[..., Any]]:
        kinds = {
            "CONV_2D": (self._conv, iops.conv2d_int), "DEPTHWISE_CONV_2D": (self._conv, iops.depthwise_conv2d_int),
            "FULLY_CONNECTED": (self._fully_connected, iops.fully_connected_int), "ADD": (self._add, iops.add_int),
            "AVERAGE_POOL_2D": (self._average_pool, iops.average_pool_int), "MEAN": (self._mean, iops.mean_int),
            "RESHAPE": (self._reshape, np.reshape), "SOFTMAX": (self._softmax, iops.softmax_int),
            "RESIZE_BILINEAR": (self._resize, iops.resize_bilinear_int),
            "CONCATENATION": (self._concat, iops.concatenate_int), "QUANTIZE": (self._quantize, iops.requantize),
            "ARG_MAX": (self._argmax, np.argmax),
        }  # fmt: skip
        return kinds[op["type"]]

    # ---------------------------------------------------------------- one handler per op type
    def _conv(self, op: dict, tensors: dict) -> np.ndarray:
        x_t, w_t, b_t, out = op["inputs"][0], op["inputs"][1], op["inputs"][2], op["outputs"][0]
        x = tensors[x_t]
        x_scale, x_zp = self._q(x_t)
        w_scale, w_zp = self._q(w_t)
        out_scale, out_zp = self._q(out)
        kernel = self._const(w_t)
        bias = self._const(b_t) if b_t >= 0 else None
        kh = kernel.shape[1]
        s, d = op["stride"][0], op["dilation"][0]
        n, h, w, c = x.shape
        if op["padding"] == "SAME":
            padding = conv_padding(h, w, kernel_size=kh, stride=s, dilation=d, tf_padding=True)
        else:
            padding = Pad2D(0, 0, 0, 0)
        depthwise = op["type"] == "DEPTHWISE_CONV_2D"
        f = iops.depthwise_conv2d_int if depthwise else iops.conv2d_int
        acc = f(
            x,
            int(x_zp[0]),
            kernel,
            w_zp if w_zp.size > 1 else int(w_zp[0]),
            bias,
            stride=s,
            dilation=d,
            padding=padding,
        )
        m0, shift = self._multipliers(x_scale[0], w_scale, out_scale[0], per_channel=w_scale.size > 1)
        return iops.requantize_output(acc, m0, shift, int(out_zp[0]), self._range(op, out))

    def _multipliers(self, x_scale: float, w_scale: np.ndarray, out_scale: float, *, per_channel: bool):
        """The output multipliers of a conv or FC layer: per tensor in TFLite's way (the input and
        filter scales multiplied in float32, then divided in double), or per channel in double."""
        key = ("multipliers", float(x_scale), w_scale.tobytes(), float(out_scale), per_channel)
        return self._prepare(key, lambda: self._compute_multipliers(x_scale, w_scale, out_scale, per_channel))

    def _compute_multipliers(self, x_scale: float, w_scale: np.ndarray, out_scale: float, per_channel: bool):
        if per_channel:
            pairs = [iops.quantize_multiplier(float(x_scale) * float(ws) / float(out_scale)) for ws in w_scale]
            return np.array([p[0] for p in pairs], np.int64), np.array([p[1] for p in pairs], np.int64)
        product = float(np.float32(x_scale) * np.float32(w_scale[0]))
        return iops.quantize_multiplier(product / float(np.float32(out_scale)))

    def _fully_connected(self, op: dict, tensors: dict) -> np.ndarray:
        x_t, w_t, b_t, out = op["inputs"][0], op["inputs"][1], op["inputs"][2], op["outputs"][0]
        x = tensors[x_t].reshape(-1, self._const(w_t).shape[1])
        x_scale, x_zp = self._q(x_t)
        w_scale, w_zp = self._q(w_t)
        out_scale, out_zp = self._q(out)
        acc = iops.fully_connected_int(
            x, int(x_zp[0]), self._const(w_t), int(w_zp[0]), self._const(b_t) if b_t >= 0 else None
        )
        m0, shift = self._multipliers(x_scale[0], w_scale, out_scale[0], per_channel=w_scale.size > 1)
        # this kernel rounds once (see integer_ops.multiply_by_quantized_multiplier_single_rounding)
        scaled = iops.multiply_by_quantized_multiplier_single_rounding(acc, m0, shift)
        return np.clip(scaled + int(out_zp[0]), *self._range(op, out))

    def _add(self, op: dict, tensors: dict) -> np.ndarray:
        a_t, b_t, out = op["inputs"][0], op["inputs"][1], op["outputs"][0]
        (sa, za), (sb, zb), (so, zo) = self._q(a_t), self._q(b_t), self._q(out)
        return iops.add_int(
            tensors[a_t], sa[0], int(za[0]), tensors[b_t], sb[0], int(zb[0]), so[0], int(zo[0]), self._range(op, out)
        )

    def _average_pool(self, op: dict, tensors: dict) -> np.ndarray:
        x = tensors[op["inputs"][0]]
        if op["padding"] != "VALID" or (op["stride"] != (1, 1) and x.shape[1:3] != op["filter"]):
            if not (x.shape[1:3] == op["filter"]):
                raise WeightFileError(
                    f"{self.where}: AVERAGE_POOL_2D other than a VALID whole-window pool is not implemented."
                )
        return iops.average_pool_int(x, kernel_size=op["filter"], act_range=self._range(op, op["outputs"][0]))

    def _mean(self, op: dict, tensors: dict) -> np.ndarray:
        x_t, out = op["inputs"][0], op["outputs"][0]
        axes = sorted(int(a) for a in np.ravel(self._const(op["inputs"][1])))
        if axes != [1, 2]:
            raise WeightFileError(f"{self.where}: MEAN over axes {axes} is not implemented (only over H and W).")
        (sx, zx), (so, zo) = self._q(x_t), self._q(out)
        m0, shift = iops.quantize_multiplier(float(sx[0]) / float(so[0]))  # in double, as TFLite
        return iops.mean_int(tensors[x_t], int(zx[0]), m0, shift, int(zo[0]), iops.DTYPE_RANGE[self.graph.type_of(out)])

    def _reshape(self, op: dict, tensors: dict) -> np.ndarray:
        return tensors[op["inputs"][0]].reshape(self.graph.shape(op["outputs"][0]))

    def _softmax(self, op: dict, tensors: dict) -> np.ndarray:
        x_t, out = op["inputs"][0], op["outputs"][0]
        return iops.softmax_int(tensors[x_t], float(self._q(x_t)[0][0]), beta=op["beta"],
                                out_range=iops.DTYPE_RANGE[self.graph.type_of(out)])  # fmt: skip

    def _resize(self, op: dict, tensors: dict) -> np.ndarray:
        size = tuple(int(v) for v in np.ravel(self._const(op["inputs"][1])))
        return iops.resize_bilinear_int(tensors[op["inputs"][0]], size, align_corners=op["align_corners"],
                                          half_pixel_centers=op["half_pixel_centers"])  # fmt: skip

    def _concat(self, op: dict, tensors: dict) -> np.ndarray:
        out = op["outputs"][0]
        quants = [self._q(t) for t in op["inputs"]]
        so, zo = self._q(out)
        return iops.concatenate_int([tensors[t] for t in op["inputs"]], [float(q[0][0]) for q in quants],
                                    [int(q[1][0]) for q in quants], float(so[0]), int(zo[0]),
                                    iops.DTYPE_RANGE[self.graph.type_of(out)])  # fmt: skip

    def _quantize(self, op: dict, tensors: dict) -> np.ndarray:
        x_t, out = op["inputs"][0], op["outputs"][0]
        (sx, zx), (so, zo) = self._q(x_t), self._q(out)
        m0, shift = iops.quantize_multiplier(float(sx[0]) / float(so[0]))
        return iops.requantize(
            tensors[x_t], int(zx[0]), m0, shift, int(zo[0]), iops.DTYPE_RANGE[self.graph.type_of(out)]
        )

    def _argmax(self, op: dict, tensors: dict) -> np.ndarray:
        axis = int(np.ravel(self._const(op["inputs"][1]))[0])
        return np.argmax(tensors[op["inputs"][0]], axis=axis).astype(np.int64)

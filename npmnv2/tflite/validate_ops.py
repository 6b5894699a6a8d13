"""The validator's check of each op kind (`CHECKS`, keyed by `TfliteOp.handler` of
`npmnv2.tflite.ops.TFLITE_OPS`): what a weighted op, an ADD, a pool, a MEAN, a RESHAPE, a SOFTMAX,
a RESIZE_BILINEAR, a CONCATENATION, a QUANTIZE, a DEQUANTIZE and an ARG_MAX must hold for the
integer model and the interpreter's reference kernels to compute the same thing. `npmnv2.tflite.validate`
runs them after the model-wide checks; each refuses with the op, tensor and field it names.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..formats.errors import WeightFileError
from .ops import ARG_MAX, DEQUANTIZE, op_is, tflite_op

MAX_STRIDE = 16  # strides, dilations and pooling windows: MobileNetV2 uses 1, 2 and dilations up to 4


MAX_RESIZE = 4096  # a RESIZE_BILINEAR output side


MAX_REQUANTIZED = 2**31 - 1  # |value| a requantization may see, after TFLite's left shift


# TFLite's bias-scale check (kernel_util.cc, GetQuantizedConvolutionMultipler): |input scale x
# weight scale - bias scale| / output scale <= 0.02. npmnv2 also asks the two to agree to 1e-5 of
# their size (real files agree to 1e-7): a bias on another scale is a broken file either way.
BIAS_SCALE_TOLERANCE = 0.02


BIAS_SCALE_RELATIVE = 1e-5


QUANTIZED_TYPES = (np.dtype(np.uint8), np.dtype(np.int8))


ZERO_POINT_RANGE = {np.dtype(np.uint8): (0, 255), np.dtype(np.int8): (-128, 127)}


class Op:
    """One op being checked: its record, and how to name it in a message."""

    def __init__(self, graph: Any, index: int) -> None:
        self.graph, self.index, self.record = graph, index, graph.ops[index]
        self.type = self.record["type"]
        self.row = tflite_op(self.type)  # None for an op npmnv2 does not run (refused by _check_tensors)
        self.inputs, self.outputs = self.record["inputs"], self.record["outputs"]
        # A float op (float32 activations, as in a float .tflite the float importer reads) is checked
        # for types, options and shapes; the integer checks apply to quantized ops only.
        first = (self.inputs or [-1])[0] if self.row is ARG_MAX else (self.outputs or [-1])[0]
        in_range = 0 <= first < graph.graph.TensorsLength()  # the wiring check names a bad index
        self.float = in_range and graph.type_of(first) == np.dtype(np.float32)

    def fail(self, message: str, tensor: int | None = None) -> None:
        out = self.outputs[0] if tensor is None and self.outputs else tensor
        in_range = out is not None and 0 <= out < self.graph.graph.TensorsLength()
        named = f" (tensor {self.graph.name(out)!r})" if in_range else ""
        raise WeightFileError(f"{self.graph.where}: op {self.index} {self.type}{named}: {message}.")


def _type(op: Op, t: int) -> np.dtype:
    return op.graph.type_of(t)


def _shape(op: Op, t: int) -> tuple[int, ...]:
    return op.graph.shape(t)


def _quantized_activation(op: Op, t: int, role: str) -> Any:
    """The per-tensor quantization of an activation tensor, checked: uint8 or int8, one scale
    (None for a float op's float32 tensor)."""
    if op.float:
        if _type(op, t) != np.dtype(np.float32):
            op.fail(f"its {role} is {_type(op, t)} in a float op; a float op reads and writes float32", tensor=t)
        return None
    if _type(op, t) not in QUANTIZED_TYPES:
        op.fail(f"its {role} is {_type(op, t)}; npmnv2 runs uint8 and int8 activations", tensor=t)
    q = op.graph.quantization(t)
    if q is None:
        op.fail(f"its {role} is not quantized", tensor=t)
    if q.scale.size != 1:
        op.fail(f"its {role} carries {q.scale.size} scales; an activation has one", tensor=t)
    return q


def _constant(op: Op, t: int, role: str) -> np.ndarray:
    if op.graph.model.Buffers(op.graph.graph.Tensors(t).Buffer()).DataLength() == 0:
        op.fail(f"its {role} is not a constant", tensor=t)
    return op.graph.raw(t)


def _same_type_in_out(op: Op, x: int, out: int) -> None:
    if _type(op, x) != _type(op, out):
        op.fail(f"reads {_type(op, x)} and writes {_type(op, out)}; the types must be the same")


def _expect_shape(op: Op, computed: tuple[int, ...]) -> None:
    declared = _shape(op, op.outputs[0])
    if tuple(declared) != tuple(computed):
        op.fail(f"its output is declared {tuple(declared)} but the op computes {tuple(computed)}")


def _window(op: Op, field: str) -> int:
    h, w = op.record[field]
    if h != w:
        op.fail(f"{field} is ({h}, {w}); npmnv2 runs equal {field}s in both directions")
    if not 1 <= h <= MAX_STRIDE:
        op.fail(f"{field} is {h}; it must be between 1 and {MAX_STRIDE}")
    return h


def _spatial(op: Op, size: int, kernel: int, stride: int, dilation: int) -> int:
    effective = (kernel - 1) * dilation + 1
    if op.record["padding"] == "SAME":
        return -(-size // stride)
    if op.record["padding"] != "VALID":
        op.fail(f"padding code {op.record['padding']!r}; TFLite knows SAME (0) and VALID (1)")
    if effective > size:
        op.fail(f"a VALID window of {effective} does not fit its input of {size}")
    return (size - effective) // stride + 1


def _input_bound(op: Op, t: int) -> int:
    """The largest |q - zero_point| an activation tensor can hold."""
    low, high = ZERO_POINT_RANGE[_type(op, t)]
    zp = op.graph.quantization(t).tensor_zero_point
    return max(zp - low, high - zp)


def _check_weighted(op: Op) -> None:
    """CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED: roles, shapes, scales, and int32 bounds."""
    x, w, b, out = op.inputs[0], op.inputs[1], op.inputs[2], op.outputs[0]
    xq, oq = _quantized_activation(op, x, "input"), _quantized_activation(op, out, "output")
    _same_type_in_out(op, x, out)
    if op.float:
        _check_float_weighted(op, _float_constant(op, w, "weight tensor"))
        return
    weights = _constant(op, w, "weight tensor")
    if weights.dtype != _type(op, x):
        op.fail(
            f"its weights are {weights.dtype} and its input {_type(op, x)}; TFLite's quantized kernels take "
            "weights of the input's type",
            tensor=w,
        )
    wq = op.graph.quantization(w)
    if wq is None:
        op.fail("its weights are not quantized", tensor=w)
    channel_axis = op.row.channel_axis
    n_out = weights.shape[channel_axis] if weights.ndim > channel_axis else 0
    if wq.scale.size > 1:
        if weights.dtype != np.int8:
            op.fail("its weights are per-channel uint8; TFLite quantizes per channel in int8 only", tensor=w)
        if wq.axis != channel_axis:
            op.fail(
                f"its weights are quantized along dimension {wq.axis}; a {op.type} quantizes along its output "
                f"channels, dimension {channel_axis}",
                tensor=w,
            )
    if weights.dtype == np.int8 and np.any(wq.zero_point != 0):
        op.fail("its int8 weights have a nonzero zero point; TFLite's int8 kernels need 0", tensor=w)
    shape_x = _shape(op, x)
    if op.row.fully_connected:
        if weights.ndim != 2:
            op.fail(f"its weights have shape {weights.shape}; a FULLY_CONNECTED takes (outputs, inputs)", tensor=w)
        if op.record.get("keep_num_dims") or op.record.get("weights_format") or op.record.get("asymmetric"):
            op.fail(
                "keep_num_dims, weights_format or asymmetric_quantize_inputs is set; npmnv2 runs the default "
                "FULLY_CONNECTED"
            )
        size = math.prod(shape_x)
        if size % weights.shape[1]:
            op.fail(f"its input of {size} values is not a multiple of the weights' {weights.shape[1]} inputs")
        _expect_shape(op, (size // weights.shape[1], weights.shape[0]))
        fan_in = weights.reshape(weights.shape[0], -1)
    else:
        if len(shape_x) != 4 or weights.ndim != 4:
            op.fail(f"input {shape_x} and weights {weights.shape} must both be 4-D (NHWC, and OHWI or 1HWC)")
        stride, dilation = _window(op, "stride"), _window(op, "dilation")
        _, kh, kw, _ = weights.shape
        if kh != kw:
            op.fail(f"its kernel is {kh}x{kw}; npmnv2 runs square kernels", tensor=w)
        n, h, wd, c = shape_x
        if not op.row.depthwise:
            if weights.shape[3] != c:
                op.fail(f"its weights take {weights.shape[3]} input channels but its input has {c}", tensor=w)
            fan_in = weights.reshape(weights.shape[0], -1)
        else:
            if weights.shape[0] != 1 or weights.shape[3] != c or op.record.get("depth_multiplier") not in (0, 1):
                op.fail(
                    f"weights {weights.shape} and depth_multiplier {op.record.get('depth_multiplier')} on an "
                    f"input of {c} channels; npmnv2 runs depth multiplier 1 (weights (1, KH, KW, {c}))",
                    tensor=w,
                )
            fan_in = weights.reshape(-1, c).T
        _expect_shape(op, (n, _spatial(op, h, kh, stride, dilation), _spatial(op, wd, kw, stride, dilation), n_out))
    if wq.scale.size not in (1, n_out):
        op.fail(f"its weights have {wq.scale.size} scales for {n_out} output channels", tensor=w)
    bias = None
    if b >= 0:
        bias = _constant(op, b, "bias")
        bq = op.graph.quantization(b)
        if bias.dtype != np.int32 or bias.shape != (n_out,):
            op.fail(f"its bias is {bias.dtype} {bias.shape}; it must be int32 ({n_out},)", tensor=b)
        if bq is None or bq.scale.size != wq.scale.size:
            op.fail(f"its bias must carry {wq.scale.size} scale(s), one per weight scale", tensor=b)
        product = xq.tensor_scale * wq.scale
        diff = np.abs(product - bq.scale)
        if np.any(diff / oq.tensor_scale > BIAS_SCALE_TOLERANCE) or np.any(diff > BIAS_SCALE_RELATIVE * product):
            i = int(np.argmax(diff / product))
            op.fail(f"its bias scale {bq.scale[i]:.6g} is not input scale x weight scale = {product[i]:.6g}", tensor=b)
    # int32 bounds: the accumulator sum((x - zx)(w - zw)) + bias, then TFLite's left shift.
    zw = wq.zero_point.reshape(-1, 1) if wq.scale.size > 1 else wq.zero_point[0]
    weight_sums = np.abs(fan_in.astype(np.int64) - zw).sum(axis=1)
    bound = weight_sums * _input_bound(op, x) + (np.abs(bias.astype(np.int64)) if bias is not None else 0)
    if np.any(bound > MAX_REQUANTIZED):
        channel = int(np.argmax(bound))
        op.fail(
            f"output channel {channel} can accumulate {int(bound[channel]):,}, beyond int32; TFLite's int32 "
            "accumulator would wrap, so npmnv2 refuses the file"
        )
    multiplier = xq.tensor_scale * wq.scale / oq.tensor_scale
    _check_requantization(op, bound, multiplier)


def _float_constant(op: Op, t: int, role: str) -> np.ndarray:
    """The real values of a float op's constant input, as TensorFlow's converter stores them: float32;
    float16 read through a DEQUANTIZE op (`Optimize.DEFAULT` with float16 weights); or int8 with a
    scale per output channel or per tensor and zero point 0 (dynamic-range quantization: the
    interpreter's hybrid kernels). Returned as float32 (NaN where a value is not finite)."""
    graph = op.graph
    source = graph.producers.get(t)
    if source is not None:
        producer = graph.ops[source]
        if not op_is(producer, DEQUANTIZE) or producer["inputs"][0] not in graph.constants:
            op.fail(f"its {role} is computed by op {source} {producer['type']}, not a constant", tensor=t)
        t = producer["inputs"][0]
    values = _constant(op, t, role)
    if values.dtype == np.float32:
        return values
    if values.dtype == np.float16 and source is not None:
        return values.astype(np.float32)
    q = graph.quantization(t)
    if values.dtype == np.int8 and q is not None and role == "weight tensor" and source is None:
        if np.any(q.zero_point != 0):
            op.fail(f"its int8 {role} has a nonzero zero point; a hybrid float op takes symmetric int8", tensor=t)
        axis = op.row.channel_axis
        if q.scale.size > 1 and q.axis != axis:
            op.fail(f"its int8 {role} is quantized along dimension {q.axis}, not {axis}", tensor=t)
        return q.dequantize(values).astype(np.float32)
    op.fail(f"a float op needs finite float32 weights; its {role} is {values.dtype}", tensor=t)
    raise AssertionError  # op.fail raises


def _check_float_weighted(op: Op, weights: np.ndarray) -> None:
    """A float conv or FC: float32 weights and bias (stored as float32, float16 or int8, see
    `_float_constant`), finite, and the output shape."""
    w, b = op.inputs[1], op.inputs[2]
    if not np.all(np.isfinite(weights)):
        op.fail("a float op needs finite weights; its weights hold NaN or inf", tensor=w)
    n_out = weights.shape[op.row.channel_axis]
    if b >= 0:
        bias = _float_constant(op, b, "bias")
        if bias.dtype != np.float32 or bias.shape != (n_out,) or not np.all(np.isfinite(bias)):
            op.fail(f"its bias is {bias.dtype} {bias.shape}; a float op needs finite float32 ({n_out},)", tensor=b)
    shape_x = _shape(op, op.inputs[0])
    if op.row.fully_connected:
        size = math.prod(shape_x)
        if weights.ndim != 2 or size % weights.shape[1]:
            op.fail(f"weights {weights.shape} do not fit an input of {size} values", tensor=w)
        _expect_shape(op, (size // weights.shape[1], weights.shape[0]))
        return
    if len(shape_x) != 4 or weights.ndim != 4:
        op.fail(f"input {shape_x} and weights {weights.shape} must both be 4-D (NHWC, and OHWI or 1HWC)")
    stride, dilation = _window(op, "stride"), _window(op, "dilation")
    n, h, wd, c = shape_x
    kh = weights.shape[1]
    if weights.shape[3] != c or (op.row.depthwise and weights.shape[0] != 1):
        op.fail(f"weights {weights.shape} do not fit an input of {c} channels", tensor=w)
    _expect_shape(
        op, (n, _spatial(op, h, kh, stride, dilation), _spatial(op, wd, weights.shape[2], stride, dilation), n_out)
    )


def _check_requantization(op: Op, bound: Any, multiplier: Any) -> None:
    """TFLite multiplies by a real multiplier M as (M0, shift) with M0 in [2^30, 2^31); for M >= 1
    it first shifts the int32 value left by `shift`, which overflows unless bound * 2^shift < 2^31."""
    multiplier = np.asarray(multiplier, np.float64)
    if not np.all(np.isfinite(multiplier)):
        op.fail("its requantization multiplier is not finite (an output scale of 0 or a huge input scale)")
    shift = np.maximum(np.frexp(multiplier)[1], 0)
    if np.any(np.asarray(bound, np.float64) * np.exp2(shift) > MAX_REQUANTIZED):
        op.fail(
            f"its requantization multiplier {float(np.max(multiplier)):.6g} (input scale / output scale) is so "
            "large that TFLite's int32 shift would overflow; the output scale is too small"
        )


def _check_add(op: Op) -> None:
    a, b, out = op.inputs[0], op.inputs[1], op.outputs[0]
    qa, qb, qo = (
        _quantized_activation(op, t, role) for t, role in ((a, "first input"), (b, "second input"), (out, "output"))
    )
    _same_type_in_out(op, a, out)
    _same_type_in_out(op, b, out)
    if _shape(op, a) != _shape(op, b):
        op.fail(f"adds shapes {_shape(op, a)} and {_shape(op, b)}; npmnv2 adds equal shapes (no broadcasting)")
    _expect_shape(op, _shape(op, a))
    if op.float:
        return
    # TFLite (add.cc): inputs shifted left by 20, scaled by s / (2 max(sa, sb)); the output
    # multiplier 2 max(sa, sb) / (2^20 so) must lie in (0, 1) (QuantizeMultiplierSmallerThanOneExp).
    twice_max = 2 * max(qa.tensor_scale, qb.tensor_scale)
    output_multiplier = twice_max / (2**20 * qo.tensor_scale)
    if not 0 < output_multiplier < 1:
        op.fail(
            f"its output scale {qo.tensor_scale:.6g} is below 2 x max(input scales) / 2^20 = {twice_max / 2**20:.6g}; "
            "TFLite's ADD aborts on such a scale"
        )


def _integers_unchanged(op: Op, why: str) -> None:
    """An op that moves integers without requantizing them: input and output of one type and, when
    quantized, one scale and zero point."""
    x, out = op.inputs[0], op.outputs[0]
    xq, oq = _quantized_activation(op, x, "input"), _quantized_activation(op, out, "output")
    _same_type_in_out(op, x, out)
    if xq is not None and (xq.tensor_scale, xq.tensor_zero_point) != (oq.tensor_scale, oq.tensor_zero_point):
        op.fail(f"its input and output quantization differ; {why}")


def _check_average_pool(op: Op) -> None:
    x = op.inputs[0]
    _integers_unchanged(op, "TFLite's quantized AVERAGE_POOL_2D needs them equal")
    shape = _shape(op, x)
    if len(shape) != 4:
        op.fail(f"its input has shape {shape}; it takes NHWC")
    _window(op, "stride")  # in range, though a pool over the whole map never moves
    size = op.record["filter"]
    if size[0] < 1 or size[1] < 1:
        op.fail(f"its window is {size}; it must be at least 1x1")
    if op.record["padding"] != "VALID" or tuple(size) != tuple(shape[1:3]):
        op.fail(
            f"a {size} window with {op.record['padding']} padding on a {shape[1:3]} input: npmnv2 implements "
            "AVERAGE_POOL_2D only as a VALID pool over the whole feature map"
        )
    _expect_shape(op, (shape[0], 1, 1, shape[3]))


def _check_mean(op: Op) -> None:
    x, out = op.inputs[0], op.outputs[0]
    xq, oq = _quantized_activation(op, x, "input"), _quantized_activation(op, out, "output")
    _same_type_in_out(op, x, out)
    axes = _constant(op, op.inputs[1], "axis tensor")
    shape = _shape(op, x)
    if axes.dtype != np.int32 or sorted(int(a) % 4 for a in axes.ravel()) != [1, 2] or len(shape) != 4:
        op.fail(
            f"reduces axes {axes.ravel().tolist()} of a {shape} input; npmnv2 implements MEAN over H and W "
            "(axes [1, 2]) of NHWC"
        )
    if not op.record["keep_dims"]:  # what TensorFlow's converter writes for GlobalAveragePooling2D: (N, C)
        _expect_shape(op, (shape[0], shape[3]))
        return  # quantized: TFLite's QuantizedMeanOrSum in float32, or an integer mean when the scales are equal
    _expect_shape(op, (shape[0], 1, 1, shape[3]))
    if xq is not None:
        _check_requantization(op, _input_bound(op, x) * shape[1] * shape[2], xq.tensor_scale / oq.tensor_scale)


def _check_reshape(op: Op) -> None:
    x = op.inputs[0]
    _integers_unchanged(op, "a RESHAPE moves integers unchanged")
    if len(op.inputs) == 2:
        new_shape = _constant(op, op.inputs[1], "shape tensor")
        if new_shape.dtype != np.int32 or new_shape.ndim != 1:
            op.fail(f"its shape tensor is {new_shape.dtype} {new_shape.shape}; it must be a 1-D int32 constant")
        wanted = tuple(int(v) for v in new_shape)
    else:
        wanted = tuple(op.record.get("new_shape") or ())
    if not wanted:
        op.fail("its new shape is empty; give the output shape")
    size = math.prod(_shape(op, x))
    if wanted.count(-1) == 1 and all(v > 0 or v == -1 for v in wanted):
        known = -math.prod(wanted)
        wanted = tuple(size // known if v == -1 else v for v in wanted) if size % known == 0 else wanted
    if any(v < 1 for v in wanted) or math.prod(wanted) != size:
        op.fail(f"new shape {wanted} does not hold the input's {size} values")
    _expect_shape(op, wanted)


def _check_softmax(op: Op) -> None:
    x, out = op.inputs[0], op.outputs[0]
    xq, oq = _quantized_activation(op, x, "input"), _quantized_activation(op, out, "output")
    _same_type_in_out(op, x, out)
    beta = op.record["beta"]
    if not math.isfinite(beta) or beta <= 0:
        op.fail(f"beta is {beta!r}; it must be finite and > 0")
    shape = _shape(op, x)
    if op.float:
        _expect_shape(op, shape)
        return
    # TFLite (PreprocessSoftmaxScaling): beta x input scale x 2^26 must exceed 1 and stay finite.
    if not 1 < beta * xq.tensor_scale * 2**26 < 2**31:
        op.fail(
            f"beta x input scale = {beta * xq.tensor_scale:.6g} is outside what TFLite's integer softmax takes "
            "(2^-26 .. 2^5)"
        )
    low = ZERO_POINT_RANGE[_type(op, out)][0]
    if oq.tensor_scale != 1 / 256 or oq.tensor_zero_point != low:
        op.fail(
            f"its output has scale {oq.tensor_scale:.6g} and zero point {oq.tensor_zero_point}; TFLite's quantized "
            f"softmax writes scale 1/256 and zero point {low}"
        )
    shape = _shape(op, x)
    if len(shape) not in (2, 4):
        op.fail(f"its input has shape {shape}; npmnv2 runs softmax on 2-D or 4-D tensors")
    _expect_shape(op, shape)


def _check_resize(op: Op) -> None:
    x = op.inputs[0]
    _integers_unchanged(op, "TFLite's RESIZE_BILINEAR moves integers unchanged")
    size = _constant(op, op.inputs[1], "size tensor")
    if size.dtype != np.int32 or size.shape != (2,):
        op.fail(f"its size tensor is {size.dtype} {size.shape}; it must be an int32 constant of 2 values")
    h, w = (int(v) for v in size)
    if not (1 <= h <= MAX_RESIZE and 1 <= w <= MAX_RESIZE):
        op.fail(f"resizes to {h}x{w}; each side must be between 1 and {MAX_RESIZE}")
    if op.record["align_corners"] and op.record["half_pixel_centers"]:
        op.fail("align_corners and half_pixel_centers are both set; TFLite allows at most one")
    shape = _shape(op, x)
    if len(shape) != 4:
        op.fail(f"its input has shape {shape}; it takes NHWC")
    _expect_shape(op, (shape[0], h, w, shape[3]))


def _check_concat(op: Op) -> None:
    out = op.outputs[0]
    _quantized_activation(op, out, "output")
    shapes = []
    for i, t in enumerate(op.inputs):
        _quantized_activation(op, t, f"input {i}")
        _same_type_in_out(op, t, out)
        shapes.append(_shape(op, t))
    if op.record.get("activation"):
        op.fail("it has a fused activation; a quantized CONCATENATION has none")
    rank = len(shapes[0])
    axis = op.record["axis"]
    if not -rank <= axis < rank or axis % rank != rank - 1 or rank != 4:
        op.fail(f"axis {axis} on {rank}-D inputs; npmnv2 concatenates NHWC tensors along channels (axis 3 or -1)")
    if any(len(s) != 4 or s[:3] != shapes[0][:3] for s in shapes):
        op.fail(f"concatenates shapes {shapes}; all but the channel dimension must be equal")
    _expect_shape(op, (*shapes[0][:3], sum(s[3] for s in shapes)))
    if op.float:
        return
    oq = op.graph.quantization(out)
    for t in op.inputs:  # each input is requantized to the output's scale (int32 values up to 255)
        _check_requantization(op, _input_bound(op, t), op.graph.quantization(t).tensor_scale / oq.tensor_scale)


def _check_quantize(op: Op) -> None:
    x, out = op.inputs[0], op.outputs[0]
    oq = _quantized_activation(op, out, "output")
    _expect_shape(op, _shape(op, x))
    if _type(op, x) == np.dtype(np.float32):  # real numbers in, integers out
        return
    xq = _quantized_activation(op, x, "input")
    _check_requantization(op, _input_bound(op, x), xq.tensor_scale / oq.tensor_scale)


def _check_dequantize(op: Op) -> None:
    """DEQUANTIZE, in the two places TensorFlow's converter writes it: a float16 constant made
    float32 (the weights of a float16 model), or a quantized activation made float32 (the graph's
    output of a full-integer model with float output)."""
    x, out = op.inputs[0], op.outputs[0]
    if _type(op, out) != np.dtype(np.float32):
        op.fail(f"writes {_type(op, out)}; a DEQUANTIZE writes float32")
    _expect_shape(op, _shape(op, x))
    if x in op.graph.constants:
        values = _constant(op, x, "input")
        if values.dtype != np.float16 or not np.all(np.isfinite(values)):
            op.fail(f"dequantizes a {values.dtype} constant; npmnv2 reads finite float16 constants", tensor=x)
        return
    if _type(op, x) not in QUANTIZED_TYPES:
        op.fail(f"its input is {_type(op, x)}; npmnv2 dequantizes uint8 and int8 activations", tensor=x)
    q = op.graph.quantization(x)
    if q is None or q.scale.size != 1:
        op.fail("its input is not quantized per tensor", tensor=x)


def _check_argmax(op: Op) -> None:
    x, out = op.inputs[0], op.outputs[0]
    _quantized_activation(op, x, "input")
    axis = _constant(op, op.inputs[1], "axis tensor")
    shape = _shape(op, x)
    if axis.dtype not in (np.int32, np.int64) or axis.size != 1:
        op.fail(f"its axis tensor is {axis.dtype} {axis.shape}; it must be one int32 or int64")
    a = int(axis.ravel()[0])
    if not -len(shape) <= a < len(shape):
        op.fail(f"axis {a} of a {len(shape)}-D input")
    if _type(op, out) not in (np.dtype(np.int32), np.dtype(np.int64)):
        op.fail(f"writes {_type(op, out)}; ARG_MAX writes int32 or int64")
    _expect_shape(op, tuple(s for i, s in enumerate(shape) if i != a % len(shape)))


# The check of each integer handler (`TfliteOp.handler` of `npmnv2.tflite.ops.TFLITE_OPS`).
CHECKS = {
    "conv": _check_weighted,
    "fully_connected": _check_weighted,
    "add": _check_add,
    "average_pool": _check_average_pool,
    "mean": _check_mean,
    "reshape": _check_reshape,
    "softmax": _check_softmax,
    "resize": _check_resize,
    "concat": _check_concat,
    "quantize": _check_quantize,
    "dequantize": _check_dequantize,
    "argmax": _check_argmax,
}

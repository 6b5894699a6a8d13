"""Import quantized TFLite MobileNetV2 / DeepLabV3 models as transformers-named float tensors.

The flatbuffer is read with the `tflite` package (optional extra `npmnv2[tflite]`). Each
CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED is matched to a transformers module by the graph's
structure (`match_layers`: op types, kernel sizes and how tensors connect; tensor names differ
between exporters and are never relied on), its weights are dequantized, and the config is
inferred from the shapes, strides and dilations. Nothing is executed: this only reads arrays.
`integer_steps` names every op in the float model's vocabulary, for the integer model.

Batch norm is already folded into the conv biases of these files. transformers' conv layers have
no bias but a batch norm, so the bias is carried by an *identity* batch norm:
gamma = 1, beta = bias, running_mean = 0, running_var = 1 - eps, so that
(y - 0) / sqrt((1 - eps) + eps) * 1 + bias = y + bias.
"""

from __future__ import annotations

import collections
import hashlib
import io
import itertools
import math
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from .architecture import HEAD_EPS, backbone_spec, layer_specs
from .configuration_mobilenet_v2 import MobileNetV2Config
from .formats.errors import WeightFileError, regular_file
from .formats.tflite_ops import (
    ARG_MAX,
    CONV_2D,
    DEQUANTIZE,
    PASSES_ON,
    QUANTIZE,
    RESHAPE,
    RESIZE_BILINEAR,
    SOFTMAX,
    has,
    op_is,
    tflite_op,
)
from .formats.tflite_structure import (
    ACTIVATION_NAMES,
    FUSED_ACTIVATIONS,
    FUSED_CODES,
    check_structure,
    operator_codes,
    options_vector_ok,
)
from .formats.tflite_validate import validate
from .ops.quantization import QuantParams
from .state_dict import identity_batch_norm, infer_config

PASCAL_VOC_LABELS = [
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
]

# TFLite enums (schema.fbs): tensor types and fused activations we understand.
_TENSOR_TYPES = {0: np.float32, 2: np.int32, 3: np.uint8, 4: np.int64, 9: np.int8, 1: np.float16}
_PADDING = {0: "SAME", 1: "VALID"}


def _import_tflite():
    try:
        import tflite
    except ImportError:
        raise ImportError("reading .tflite files needs the `tflite` package: pip install 'npmnv2[tflite]'") from None
    return tflite


def builtin_names(tflite: Any = None) -> dict[int, str]:
    """TFLite builtin operator codes -> names ("CONV_2D", ...), read once from the schema."""
    tflite = tflite or _import_tflite()
    if not _BUILTIN_NAMES:
        _BUILTIN_NAMES.update({v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")})
    return _BUILTIN_NAMES


_BUILTIN_NAMES: dict[int, str] = {}


# SHA-256 of the files that passed `check_structure` and `validate` in this process (the last 32):
# opening the same bytes again (the processor, the float import and the integer model each open
# the file) skips the second pass, never the first.
_VALIDATED: dict[bytes, None] = {}


class TFLiteGraph:
    """The parts of a TFLite flatbuffer the import needs, as plain Python values.

    Reading it checks it first: `check_structure` (every table, vector and string inside the
    file) before any field is read, then `validate` (indices, types, options, quantization,
    shapes and int32 bounds; see `npmnv2.formats.tflite_validate`) before anything computes on it
    or hands it to the TFLite interpreter.
    """

    def __init__(self, path: Path) -> None:
        tflite = _import_tflite()
        self.path = regular_file(path, "TFLite file")
        self.where = f"TFLite file {str(path)!r}"
        self.buf = _read_bounded(self.path, self.where)
        digest = hashlib.sha256(self.buf).digest()  # the same bytes validated before need no second pass
        known = digest in _VALIDATED
        if not known:
            check_structure(self.buf, self.where)
        try:
            self.model = tflite.Model.GetRootAsModel(self.buf, 0)
            names = builtin_names(tflite)
            # every operator code as the interpreter resolves it: (op name, version)
            self.codes = [
                (names.get(code, f"builtin op {code}"), version)
                for code, version in operator_codes(self.buf, self.where)
            ]
            if self.model.SubgraphsLength() < 1:
                raise WeightFileError(f"{self.where} has no subgraph: it holds no model.")
            self.graph = self.model.Subgraphs(0)
            self.ops = [self._op(i) for i in range(self.graph.OperatorsLength())]
            if not known:
                validate(self)
                _VALIDATED[digest] = None
                while len(_VALIDATED) > 32:
                    _VALIDATED.pop(next(iter(_VALIDATED)))
            else:  # what validate() records, for bytes validated before
                buffers = self.model
                self.constants = {
                    t
                    for t in range(self.graph.TensorsLength())
                    if buffers.Buffers(self.graph.Tensors(t).Buffer()).DataLength()
                }
                self.producers = {op["outputs"][0]: i for i, op in enumerate(self.ops)}
        except WeightFileError:
            raise
        except Exception as err:  # flatbuffers raise assorted errors on garbage
            raise WeightFileError(
                f"{self.where} is not a readable TFLite model ({type(err).__name__}: {err})."
            ) from None

    def _op(self, i: int) -> dict[str, Any]:
        """Op i as a record: its type, tensor indices, options type and the options it carries
        (TFLite's defaults when it carries none)."""
        tflite = _import_tflite()
        op = self.graph.Operators(i)
        n_codes = self.model.OperatorCodesLength()
        if not 0 <= op.OpcodeIndex() < n_codes:
            raise WeightFileError(
                f"{self.where}: op {i} has opcode_index {op.OpcodeIndex()}, outside the file's {n_codes} operator "
                "codes."
            )
        kind = self.codes[op.OpcodeIndex()][0]
        record: dict[str, Any] = {
            "type": kind,
            "inputs": [int(v) for v in op.InputsAsNumpy()] if op.InputsLength() else [],
            "outputs": [int(v) for v in op.OutputsAsNumpy()] if op.OutputsLength() else [],
            "options_type": op.BuiltinOptionsType(),
        }
        row = tflite_op(kind)  # None: an op npmnv2 does not run (the validator names it)
        if row is not None and record["options_type"] not in row.options:
            raise WeightFileError(
                f"{self.where}: op {i} {kind}: builtin_options_type is {record['options_type']}; a {kind} carries "
                f"options type {' or '.join(map(str, row.options))}."
            )
        if row is not None and row.fused_activation:
            record.update(activation=0)  # TFLite's default for an op that carries no options
        table = op.BuiltinOptions()
        read = _OPTIONS.get(record["options_type"])  # by the union's own type code
        if table is not None and read is not None:
            if record["options_type"] == _RESHAPE_OPTIONS:
                options_vector_ok(self.buf, self.where, table.Pos, 0, 4)
            cls, fields = read
            options = getattr(tflite, cls)()
            options.Init(table.Bytes, table.Pos)
            record.update(fields(options))
        return record

    def name(self, t: int) -> str:
        """Tensor t's name (bytes that are not UTF-8 are replaced, never an error)."""
        if not 0 <= t < self.graph.TensorsLength():
            return f"<no tensor {t}>"
        name = self.graph.Tensors(t).Name()
        return "" if name is None else name.decode("utf-8", "replace")

    def shape(self, t: int) -> tuple[int, ...]:
        return (
            tuple(int(s) for s in self.graph.Tensors(t).ShapeAsNumpy()) if self.graph.Tensors(t).ShapeLength() else ()
        )

    def quantization(self, t: int) -> QuantParams | None:
        """Tensor t's quantization (scales float64, zero points int64), or None for a float tensor."""
        q = self.graph.Tensors(t).Quantization()
        if q is None or q.ScaleLength() == 0:
            return None
        scale = np.asarray(q.ScaleAsNumpy(), np.float64)
        zero_point = np.asarray(q.ZeroPointAsNumpy(), np.int64)
        return QuantParams(scale, zero_point, int(q.QuantizedDimension()))

    def type_of(self, t: int) -> np.dtype | None:
        """The NumPy dtype of tensor t (None for a type npmnv2 does not read)."""
        dtype = _TENSOR_TYPES.get(self.graph.Tensors(t).Type())
        return None if dtype is None else np.dtype(dtype)

    def raw(self, t: int) -> np.ndarray:
        """A constant tensor's stored values, as they are (integers stay integers)."""
        tensor = self.graph.Tensors(t)
        dtype = _TENSOR_TYPES.get(tensor.Type())
        data = self.model.Buffers(tensor.Buffer()).DataAsNumpy()
        shape = self.shape(t)
        if dtype is None or isinstance(data, int) or data.size != math.prod(shape) * np.dtype(dtype).itemsize:
            raise WeightFileError(
                f"{self.where}: constant tensor {self.name(t)!r} has no valid data (truncated file?)."
            )
        return data.view(dtype).reshape(shape)

    def array(self, t: int) -> np.ndarray:
        """A constant tensor, dequantized to float64 when it is quantized; a tensor that a DEQUANTIZE
        op makes from a float16 constant (TensorFlow's float16 models) is that constant's values."""
        source = self.producers.get(t)
        if source is not None and op_is(self.ops[source], DEQUANTIZE):
            t = self.ops[source]["inputs"][0]
        q = self.raw(t)
        quant = self.quantization(t)
        return q.astype(np.float64) if quant is None else quant.dequantize(q)

    def labels(self) -> list[str] | None:
        """Label names from the TFLite metadata: a zip appended to the flatbuffer. None when the file
        has no such zip; an error when its metadata says it has one that cannot be read (truncated),
        or one larger than MAX_LABEL_BYTES once decompressed, or with more than MAX_LABELS lines."""
        names = [self.model.Metadata(i).Name() for i in range(self.model.MetadataLength())]
        if b"TFLITE_METADATA" not in names or b"PK\x03\x04" not in self.buf:
            return None
        try:
            with zipfile.ZipFile(io.BytesIO(self.buf)) as archive:
                texts = [info for info in archive.infolist() if info.filename.endswith(".txt")]
                if not texts:
                    return None
                info = texts[0]
                if info.file_size > MAX_LABEL_BYTES:
                    raise WeightFileError(
                        f"{self.where}: its label file {info.filename!r} declares {info.file_size:,} bytes; npmnv2 "
                        f"reads label files of at most {MAX_LABEL_BYTES:,} bytes."
                    )
                with archive.open(info) as member:
                    data = member.read(info.file_size + 1)
                if len(data) > info.file_size:
                    raise WeightFileError(f"{self.where}: its label file {info.filename!r} is larger than it declares.")
                # "\n" only, as TFLite's tools write label files (str.splitlines would also split on \x0c,
                # \x85, \u2028 or a lone \r inside a name and shift every label after it); CRLF's \r dropped
                lines = [line.removesuffix("\r") for line in data.decode("utf-8").split("\n")]
                if lines and lines[-1] == "":
                    lines.pop()
        except (zipfile.BadZipFile, EOFError, UnicodeDecodeError, ValueError, NotImplementedError) as err:
            if isinstance(err, WeightFileError):
                raise
            raise WeightFileError(
                f"{self.where} carries label metadata (a zip after the model) that cannot be read ({err}); the "
                "file is truncated or corrupt. Download it again."
            ) from None
        if len(lines) > MAX_LABELS:
            raise WeightFileError(f"{self.where}: its label file has {len(lines):,} lines; at most {MAX_LABELS:,}.")
        return lines


MAX_TFLITE_BYTES = 1 << 28  # 256 MiB: a MobileNetV2 is 2-14 MB
MAX_LABEL_BYTES = 1 << 22  # 4 MiB of labels, decompressed
MAX_LABELS = 100_000


def _read_bounded(path: Path, where: str) -> bytes:
    """The file's bytes, refused when it is larger than MAX_TFLITE_BYTES."""
    size = path.stat().st_size
    if size > MAX_TFLITE_BYTES:
        raise WeightFileError(
            f"{where} is {size:,} bytes; npmnv2 reads TFLite MobileNetV2 files of at most {MAX_TFLITE_BYTES:,} bytes."
        )
    with path.open("rb") as f:
        data = f.read(size + 1)  # read(n) reserves n bytes first: ask for what the file holds
    if len(data) > size:
        raise WeightFileError(f"{where} grew while it was read; give a finished file.")
    return data


def _conv_options(o: Any) -> dict[str, Any]:
    return {
        "padding": _PADDING.get(o.Padding(), o.Padding()),
        "stride": (o.StrideH(), o.StrideW()),
        "dilation": (o.DilationHFactor(), o.DilationWFactor()),
        "activation": o.FusedActivationFunction(),
    }


# What each builtin options table holds (schema.fbs BuiltinOptions: its type code -> its class and
# the record fields read from it).
_RESHAPE_OPTIONS = 17
_OPTIONS: dict[int, tuple[str, Callable[[Any], dict[str, Any]]]] = {
    1: ("Conv2DOptions", _conv_options),
    2: ("DepthwiseConv2DOptions", lambda o: {**_conv_options(o), "depth_multiplier": o.DepthMultiplier()}),
    5: (
        "Pool2DOptions",
        lambda o: {
            "padding": _PADDING.get(o.Padding(), o.Padding()),
            "stride": (o.StrideH(), o.StrideW()),
            "filter": (o.FilterHeight(), o.FilterWidth()),
            "activation": o.FusedActivationFunction(),
        },
    ),
    8: (
        "FullyConnectedOptions",
        lambda o: {
            "activation": o.FusedActivationFunction(),
            "keep_num_dims": bool(o.KeepNumDims()),
            "weights_format": o.WeightsFormat(),
            "asymmetric": bool(o.AsymmetricQuantizeInputs()),
        },
    ),
    9: ("SoftmaxOptions", lambda o: {"beta": float(o.Beta())}),
    10: ("ConcatenationOptions", lambda o: {"axis": o.Axis(), "activation": o.FusedActivationFunction()}),
    11: ("AddOptions", lambda o: {"activation": o.FusedActivationFunction()}),
    15: (
        "ResizeBilinearOptions",
        lambda o: {"align_corners": bool(o.AlignCorners()), "half_pixel_centers": bool(o.HalfPixelCenters())},
    ),
    _RESHAPE_OPTIONS: (
        "ReshapeOptions",
        lambda o: {"new_shape": [int(v) for v in o.NewShapeAsNumpy()] if o.NewShapeLength() else []},
    ),
    27: ("ReducerOptions", lambda o: {"keep_dims": bool(o.KeepDims())}),
}


def _conv_tensors(graph: TFLiteGraph, op: dict[str, Any], hf: str) -> dict[str, np.ndarray]:
    """transformers tensors of one conv: OIHW / (C, 1, KH, KW) kernel, identity BN carrying the bias."""
    weight = graph.array(op["inputs"][1])
    bias = graph.array(op["inputs"][2]) if len(op["inputs"]) > 2 and op["inputs"][2] >= 0 else None
    row = tflite_op(op)
    if row.fully_connected:
        kernel = weight[:, :, None, None]  # (L, C) -> (L, C, 1, 1), as a 1x1 conv would be
    elif row.depthwise:
        kernel = weight.transpose(3, 0, 1, 2)  # (1, KH, KW, C) -> (C, 1, KH, KW)
    else:
        kernel = weight.transpose(0, 3, 1, 2)  # OHWI (C_out, KH, KW, C_in) -> OIHW
    c_out = kernel.shape[0]
    bias = np.zeros(c_out) if bias is None else bias
    if hf in ("classifier", "segmentation_head.classifier"):
        if hf == "classifier":  # transformers' classifier is a Linear (L, C)
            return {"classifier.weight": kernel[:, :, 0, 0], "classifier.bias": bias}
        return {f"{hf}.convolution.weight": kernel, f"{hf}.convolution.bias": bias}
    eps = HEAD_EPS if hf.startswith("segmentation_head.") else 1e-3
    return {f"{hf}.convolution.weight": kernel, **_prefixed(hf, identity_batch_norm(bias, eps))}


def _prefixed(prefix: str, tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {f"{prefix}.{k}": v for k, v in tensors.items()}


def read_tflite(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any], dict[str, tuple[float, int]]]:
    """(transformers-named float tensors, config dict, activation quantization) of a TFLite MobileNetV2.

    Raises WeightFileError when the graph is not a MobileNetV2 / DeepLabV3-MobileNetV2 this
    import understands (unknown layers, missing layers, shapes that fit no config, ops or options
    the float model does not compute), or when the flatbuffer is corrupt.
    """
    return read_tflite_graph(TFLiteGraph(Path(path)))


def read_tflite_graph(
    graph: TFLiteGraph, *, weights_only: bool = False
) -> tuple[dict[str, np.ndarray], dict[str, Any], dict[str, tuple[float, int]]]:
    """`read_tflite` of a graph already read (and validated). weights_only: for `npmnv2.verify`,
    which judges the file against a spec: the layers' weights and the architecture (widths, strides,
    labels) are read, but what the float model would not compute (a fused activation, padding or
    stride other than the layer's) is not refused; the spec's hyperparameters stand in for it and the
    check then finds the op that differs."""
    try:
        return _read_graph(graph, weights_only=weights_only)
    except WeightFileError:
        raise
    except Exception as err:  # a corrupt flatbuffer can fail anywhere it is read
        raise WeightFileError(
            f"{graph.where} is corrupt: reading its graph failed ({type(err).__name__}: {err})."
        ) from None


def match_layers(graph: TFLiteGraph) -> dict[int, str]:
    """Which transformers module each weighted op of a MobileNetV2 / DeepLabV3 graph is, found from
    the graph's structure (op types, kernel sizes and how tensors connect), not from tensor names,
    which differ between exporters (TF-slim, TF2/Keras) and are often several fused names.

    Backbone: a 3x3 stride-2 CONV_2D stem, its depthwise conv (optionally after a 1x1 expansion)
    and its 1x1 projection, then 16 blocks of 1x1 expansion, depthwise conv and 1x1 projection:
    17 DEPTHWISE_CONV_2D in all, each followed by its projection. Head: for a classifier, a 1x1
    conv (`conv_1x1`), pooling, and a 1x1 conv or FULLY_CONNECTED (`classifier`); for DeepLabV3,
    the conv that reads the pooled features (`conv_pool`), the other conv that reads the backbone
    output (`conv_aspp`), the conv that reads the concatenation (`conv_projection`) and the one after it.
    Returns {op index: module path}; raises WeightFileError when the graph has another structure.
    """
    weighted = [i for i, op in enumerate(graph.ops) if has(op, "weighted")]
    depthwise = [i for i in weighted if has(graph.ops[i], "depthwise")]
    if len(depthwise) != 17 or not weighted or not op_is(graph.ops[weighted[0]], CONV_2D):
        raise WeightFileError(
            f"{graph.where}: not a MobileNetV2 graph npmnv2 knows: expected a CONV_2D stem and 17 depthwise "
            f"convolutions, found {len(depthwise)} depthwise among {len(weighted)} weighted ops."
        )
    names: dict[int, str] = {weighted[0]: "conv_stem.first_conv"}
    before_first_dw = [i for i in weighted if weighted[0] < i < depthwise[0]]
    if len(before_first_dw) > 1:
        raise WeightFileError(f"{graph.where}: unexpected layers between the stem conv and its depthwise conv.")
    if before_first_dw:  # first_layer_is_expansion=False: a 1x1 expansion before the stem's depthwise conv
        names[before_first_dw[0]] = "conv_stem.expand_1x1"
    for block, dw in enumerate(depthwise):
        prefix = "conv_stem" if block == 0 else f"layer.{block - 1}"
        position = weighted.index(dw)
        if position + 1 >= len(weighted):
            raise WeightFileError(f"{graph.where}: the depthwise conv of {prefix} has no projection after it.")
        names[dw] = f"{prefix}.conv_3x3"
        names[weighted[position + 1]] = f"{prefix}.reduce_1x1"
        if block:
            names[weighted[position - 1]] = f"{prefix}.expand_1x1"
    backbone_out = graph.ops[weighted[weighted.index(depthwise[-1]) + 1]]["outputs"][0]
    head = [i for i in weighted if i not in names]
    producer = {t: i for i, op in enumerate(graph.ops) for t in op["outputs"]}
    if any(has(op, "joins") for op in graph.ops):  # DeepLabV3
        if len(head) != 4:
            raise WeightFileError(f"{graph.where}: a DeepLabV3 head has 4 convolutions, this one {len(head)}.")
        reads_backbone = [i for i in head if graph.ops[i]["inputs"][0] == backbone_out]
        reads_pool = [i for i in head if has(graph.ops[producer.get(graph.ops[i]["inputs"][0], -1)], "pools")]
        reads_concat = [i for i in head if has(graph.ops[producer.get(graph.ops[i]["inputs"][0], -1)], "joins")]
        if len(reads_backbone) != 1 or len(reads_pool) != 1 or len(reads_concat) != 1:
            raise WeightFileError(f"{graph.where}: the DeepLabV3 head is not wired as image pool + 1x1 branch.")
        last = [i for i in head if i not in (*reads_backbone, *reads_pool, *reads_concat)]
        names.update(
            {
                reads_pool[0]: "segmentation_head.conv_pool",
                reads_backbone[0]: "segmentation_head.conv_aspp",
                reads_concat[0]: "segmentation_head.conv_projection",
                last[0]: "segmentation_head.classifier",
            }
        )
        return names
    if len(head) == 1:  # no final 1x1 conv before the pool (not a MobileNetV2 classifier npmnv2 knows)
        raise WeightFileError(f"{graph.where}: expected a 1x1 conv before the classifier's pooling.")
    if len(head) != 2:
        raise WeightFileError(
            f"{graph.where}: expected 2 layers after the backbone (conv_1x1, classifier), found {len(head)}."
        )
    names[head[0]] = "conv_1x1"
    names[head[1]] = "classifier"
    return names


def residual_adds(graph: TFLiteGraph, names: dict[int, str]) -> dict[int, str]:
    """{op index: block name} of the residual ADD ops. An ADD reads the block's input and its
    projection; the input may itself be the previous block's projection, so the block is the one
    whose projection ran last."""
    producer = {t: i for i, op in enumerate(graph.ops) for t in op["outputs"]}
    adds = {}
    for i, op in enumerate(graph.ops):
        if not has(op, "adds"):
            continue
        projections = [producer[t] for t in op["inputs"] if names.get(producer.get(t, -1), "").endswith(".reduce_1x1")]
        if projections:
            adds[i] = names[max(projections)].removesuffix(".reduce_1x1")
    return adds


def integer_steps(graph: TFLiteGraph) -> list[tuple[str, str, str | None]]:
    """(step name, kind, float step) of every op of the graph, in its order, named as the float
    model names its steps: a conv op of layer X is `X.convolution` (its output is the float step
    `X.activation`, or `X.normalization` for a linear layer), the residual ADD of block N is
    `layer.N`, the pooling op `pooler`; ops the float model has no step for keep a plain name
    (`reshape`, `softmax`, `quantize_input`, `segmentation_head.upsample`, `argmax`)."""
    names = match_layers(graph)
    adds = residual_adds(graph, names)
    segmentation = any(n.startswith("segmentation_head.") for n in names.values())
    input_index = graph.graph.Inputs(0)
    steps: list[tuple[str, str, str | None]] = []
    resized = False
    for index, op in enumerate(graph.ops):
        row = tflite_op(op)
        kind, float_step = (row.step_kind if row else op["type"].lower()), None
        if index in names:
            hf = names[index]
            fused = f"{hf}.activation" if op.get("activation") else f"{hf}.normalization"
            name = "classifier" if hf == "classifier" else f"{hf}.convolution"
            kind = "linear" if hf == "classifier" else kind  # a 1x1 conv classifier is the float model's linear
            float_step = {"classifier": "classifier", "segmentation_head.classifier": name}.get(hf, fused)
        elif index in adds:
            name = float_step = adds[index]
        elif has(op, "pools"):
            name = float_step = "segmentation_head.avg_pool" if segmentation else "pooler"
        elif op_is(op, RESIZE_BILINEAR):
            name = "segmentation_head.upsample" if resized else "segmentation_head.interpolate"
            float_step = None if resized else name
            resized = True
        elif has(op, "joins"):
            name = float_step = "segmentation_head.concat"
        elif op_is(op, QUANTIZE):
            name = "quantize_input" if op["inputs"][0] == input_index else "quantize_output"
        elif op_is(op, DEQUANTIZE):
            name = "dequantize_output"
        else:
            name = row.plain_name if row else op["type"].lower()
        taken = {n for n, _, _ in steps}
        steps.append((name if name not in taken else f"{name}.{index}", kind, float_step))
    return steps


def _read_graph(
    graph: TFLiteGraph, weights_only: bool = False
) -> tuple[dict[str, np.ndarray], dict[str, Any], dict[str, tuple[float, int]]]:
    tensors: dict[str, np.ndarray] = {}
    quantization: dict[str, tuple[float, int]] = {}
    strides, dilations, paddings, acts = [], [], set(), {}
    names = match_layers(graph)
    for index, hf in names.items():
        op = graph.ops[index]
        tensors.update(_conv_tensors(graph, op, hf))
        if has(op, "convolution"):
            paddings.add(_effective_padding(graph, op))
        if has(op, "depthwise"):
            strides.append(op["stride"][0])
            dilations.append(op["dilation"][0])
        if not hf.startswith("segmentation_head"):
            acts[hf] = FUSED_ACTIVATIONS.get(op["activation"], "unknown")
        quant = graph.quantization(op["outputs"][0])
        if quant is not None:
            quantization[hf] = (quant.tensor_scale, quant.tensor_zero_point)
    for index, block in residual_adds(graph, names).items():
        quant = graph.quantization(graph.ops[index]["outputs"][0])
        if quant is not None:
            quantization[block] = (quant.tensor_scale, quant.tensor_zero_point)
    input_index = graph.graph.Inputs(0)
    input_quant = graph.quantization(input_index)
    if input_quant is not None:
        quantization["pixel_values"] = (input_quant.tensor_scale, input_quant.tensor_zero_point)
    if weights_only:  # the spec's hyperparameters stand in: the most common activation and padding
        common = collections.Counter(a for k, a in acts.items() if not k.endswith("reduce_1x1") and k != "classifier")
        usual = common.most_common(1)[0][0] if common else "relu6"
        acts = {k: (usual if not k.endswith("reduce_1x1") and k != "classifier" else a) for k, a in acts.items()}
        paddings = {"SAME"}
    config = _infer_tflite_config(graph, tensors, strides, dilations, paddings, acts)
    if not weights_only:
        _refuse_what_the_float_model_ignores(graph, names, config)
    return tensors, config, quantization


def _effective_padding(graph: TFLiteGraph, op: dict[str, Any]) -> str:
    """A conv's padding as the float model applies it: a 1x1 kernel at stride 1 pads nothing, so
    VALID (what TensorFlow's converter sometimes writes for it) is the same as SAME there."""
    kernel = graph.shape(op["inputs"][1])[1:3]
    if op["padding"] == "VALID" and tuple(kernel) == (1, 1) and tuple(op["stride"]) == (1, 1):
        return "SAME"
    return op["padding"]


def _refuse_what_the_float_model_ignores(graph: TFLiteGraph, names: dict[int, str], config: dict[str, Any]) -> None:
    """Every op of the file must be something the float model computes, with the options it
    computes: a fused activation where the layer has one and none where it is linear, the stride,
    dilation and kernel of the layer, residual ADDs exactly where the block has a skip path, each
    layer reading the previous one. Anything else (RELU6 fused into a projection, an ADD on a
    block without a skip path, a stride the model would not apply, a layer wired elsewhere) is an
    error naming the op: the float import never drops part of a graph."""
    fields = {k: v for k, v in config.items() if k not in ("architectures", "id2label")}
    cfg = MobileNetV2Config(**fields)
    task = "segmentation" if "MobileNetV2ForSemanticSegmentation" in config["architectures"] else "classification"
    specs = {spec.name: spec for spec in layer_specs(cfg, task)}
    index_of = {hf: i for i, hf in names.items()}
    producer = {op["outputs"][0]: i for i, op in enumerate(graph.ops)}
    adds = residual_adds(graph, names)

    def fail(index: int, message: str) -> None:
        op = graph.ops[index]
        layer = names.get(index) or adds.get(index)
        label = f" ({layer})" if layer else ""
        raise WeightFileError(
            f"{graph.where}: op {index} {op['type']}{label}, tensor {graph.name(op['outputs'][0])!r}: {message}; the "
            "float model does not compute that, so npmnv2 refuses the file rather than drop it."
        )

    for index, hf in names.items():
        op, spec = graph.ops[index], specs.get(hf)
        if spec is None:
            continue
        wanted = FUSED_CODES[spec.activation]
        if op.get("activation", 0) != wanted:
            fail(
                index,
                f"fused activation {ACTIVATION_NAMES.get(op.get('activation'), op.get('activation'))} where "
                f"the layer has {ACTIVATION_NAMES[wanted]}",
            )
        if has(op, "convolution"):
            kernel = graph.shape(op["inputs"][1])[1]
            if (op["stride"][0], op["dilation"][0], kernel) != (spec.stride, spec.dilation, spec.kernel_size):
                fail(
                    index,
                    f"stride {op['stride'][0]}, dilation {op['dilation'][0]} and a {kernel}x{kernel} kernel "
                    f"where the layer has stride {spec.stride}, dilation {spec.dilation}, {spec.kernel_size}x"
                    f"{spec.kernel_size}",
                )
    residual = {block.name for block in backbone_spec(cfg).layers if block.residual}
    for index, op in enumerate(graph.ops):
        if has(op, "adds") and (index not in adds or adds[index] not in residual):
            fail(index, "an ADD that is not the residual connection of a block with a skip path")
        if has(op, "adds") and op.get("activation"):
            fail(index, f"fused activation {ACTIVATION_NAMES.get(op['activation'])} on a residual ADD")
        if has(op, "pools") and op.get("activation"):
            fail(index, "a fused activation on the pooling")
        if op_is(op, SOFTMAX) and op["beta"] != 1.0:
            fail(index, f"softmax beta {op['beta']!r} (the float model's probabilities use beta 1)")
    missing = residual - set(adds.values())
    if missing:
        raise WeightFileError(
            f"{graph.where}: blocks {sorted(missing)} have no residual ADD; MobileNetV2 adds their input."
        )

    # Wiring: each backbone layer reads the previous layer's output (or the previous block's sum).
    order = [c.name for c in backbone_spec(cfg).convs() if c.name in index_of]
    block_of = {c.name: b.name for b in backbone_spec(cfg).blocks for c in b.convs}
    add_of = {block: i for i, block in adds.items()}
    for previous, layer in itertools.pairwise(order):
        source = producer.get(graph.ops[index_of[layer]]["inputs"][0], -1)
        allowed = {index_of[previous], add_of.get(block_of.get(previous), -2)}
        if source not in allowed:
            fail(
                index_of[layer],
                f"it reads {graph.ops[source]['type'] if source >= 0 else 'a graph input'} instead "
                f"of the output of {previous}",
            )
    for index, block in adds.items():
        expand = index_of.get(f"{block}.expand_1x1")
        block_input = graph.ops[expand]["inputs"][0] if expand is not None else None
        projection = graph.ops[index_of[f"{block}.reduce_1x1"]]["outputs"][0]
        if sorted(graph.ops[index]["inputs"]) != sorted([projection, block_input]):
            fail(index, "it does not add the block's input to its projection")
    if task == "classification":  # conv_1x1 -> pool -> (reshape) -> classifier
        pools = [i for i, op in enumerate(graph.ops) if has(op, "pools")]
        if len(pools) != 1 or producer.get(graph.ops[pools[0]]["inputs"][0]) != index_of.get("conv_1x1"):
            raise WeightFileError(
                f"{graph.where}: the classifier head is not conv_1x1 -> one pooling op -> classifier."
            )
        source = producer.get(graph.ops[index_of["classifier"]]["inputs"][0], -1)
        if source >= 0 and op_is(graph.ops[source], RESHAPE):
            source = producer.get(graph.ops[source]["inputs"][0], -1)
        if source != pools[0]:
            fail(index_of["classifier"], "the classifier does not read the pooled features")
    _refuse_other_wiring(graph, index_of, producer, fail)


INPUT_RANGE_SLACK = 0.02  # how far the real range a quantized input holds may lie from [-1, 1]


def _refuse_other_wiring(graph: TFLiteGraph, index_of: dict[str, int], producer: dict[int, int], fail: Any) -> None:
    """The rest of what the integer model honours and the float model would not: the DeepLabV3
    concatenation's order (image pool first, then the 1x1 branch), an ARG_MAX over the classes (the
    last axis), an input quantized for real values in [-1, 1] (the float model is fed MobileNetV2's
    [-1, 1] pixels), and graph outputs computed from the classifier (not, say, from the pooling)."""

    def source(tensor: int, through: Iterable[str] = (QUANTIZE.name, DEQUANTIZE.name, RESHAPE.name)) -> int:
        """The op that made `tensor`, past the ops `through` (names) that only pass it on (-1: none)."""
        at = producer.get(tensor, -1)
        while at >= 0 and graph.ops[at]["type"] in through:
            at = producer.get(graph.ops[at]["inputs"][0], -1)
        return at

    for index, op in enumerate(graph.ops):
        if has(op, "joins") and "segmentation_head.conv_aspp" in index_of:
            first, second = (source(t) for t in op["inputs"][:2])
            pooled = first >= 0 and op_is(graph.ops[first], RESIZE_BILINEAR)
            pooled = pooled and source(graph.ops[first]["inputs"][0]) == index_of["segmentation_head.conv_pool"]
            if second != index_of["segmentation_head.conv_aspp"] or not pooled:
                fail(index, "inputs in another order than the image pool's (resized), then the 1x1 branch's")
        if op_is(op, ARG_MAX):
            rank = len(graph.shape(op["inputs"][0]))
            axis = int(np.asarray(graph.raw(op["inputs"][1])).ravel()[0])
            if rank and axis % rank != rank - 1:
                fail(index, f"an argmax over axis {axis} of a {rank}-D tensor, not over its classes (the last axis)")
    feed = graph.graph.Inputs(0)
    held = feed if graph.quantization(feed) is not None else None
    if held is None:  # a float input quantized by the graph's first op
        held = next((op["outputs"][0] for op in graph.ops if op_is(op, QUANTIZE) and op["inputs"][0] == feed), None)
    quant = None if held is None else graph.quantization(held)
    dtype = None if held is None else graph.type_of(held)
    if quant is not None and dtype is not None:
        info = np.iinfo(dtype)
        low = (info.min - quant.tensor_zero_point) * quant.tensor_scale
        high = (info.max - quant.tensor_zero_point) * quant.tensor_scale
        if abs(low + 1) > INPUT_RANGE_SLACK or abs(high - 1) > INPUT_RANGE_SLACK:
            reader = next(i for i, op in enumerate(graph.ops) if held in op["inputs"] or held in op["outputs"])
            fail(
                reader,
                f"its input {graph.name(held)!r} is quantized with scale {quant.tensor_scale:.6g} and zero point "
                f"{quant.tensor_zero_point} (real values {low:.3g} .. {high:.3g}), but the float model is fed "
                "MobileNetV2's pixels in [-1, 1] (QuantizedMobileNetV2 runs this file as it is)",
            )
    classifier = index_of.get("classifier", index_of.get("segmentation_head.classifier"))
    for k in range(graph.graph.OutputsLength()):
        out = graph.graph.Outputs(k)
        at = source(out, PASSES_ON)  # ops a graph may apply to the network's output (`TfliteOp.passes_on`)
        if at != classifier:
            where = graph.ops[at]["type"] if at >= 0 else "the input"
            raise WeightFileError(
                f"{graph.where}: graph output {graph.name(out)!r} comes from {where} (op {at}), not from the "
                "classifier; the float model computes the logits, so npmnv2 refuses the file rather than answer "
                "for another tensor."
            )


def _infer_tflite_config(graph, tensors, strides, dilations, paddings, acts) -> dict[str, Any]:
    if (
        "conv_stem.first_conv.convolution.weight" not in tensors
        or "layer.15.reduce_1x1.convolution.weight" not in tensors
    ):
        raise WeightFileError(f"{graph.where}: the graph lacks the MobileNetV2 stem or its last block.")
    if paddings != {"SAME"}:
        raise WeightFileError(f"{graph.where}: convolutions use {sorted(map(str, paddings))} padding; expected SAME.")
    backbone_acts = {a for k, a in acts.items() if not k.endswith("reduce_1x1") and k != "classifier"}
    if len(backbone_acts) != 1 or None in backbone_acts or "unknown" in backbone_acts:
        raise WeightFileError(f"{graph.where}: unexpected fused activations {backbone_acts} in the backbone.")
    segmentation = any(k.startswith("segmentation_head.") for k in tensors)
    # Output stride: the stem conv's stride 2 times the strides of the depthwise convs.
    output_stride = 2 * math.prod(strides)
    fields = infer_config(tensors, output_stride=output_stride, hidden_act=backbone_acts.pop())
    if fields is None:
        raise WeightFileError(
            f"{graph.where}: the layer shapes fit no MobileNetV2 config npmnv2 knows "
            "(depth multipliers 0.35-1.4, divisors 8 or 1, expansion 6 or 4)."
        )
    if "conv_1x1.convolution.weight" not in tensors:
        c_out = backbone_spec(MobileNetV2Config(**fields)).conv_1x1.c_out
        tensors.update(_unused_conv_1x1(tensors["layer.15.reduce_1x1.convolution.weight"].shape[0], c_out))
    if output_stride < 32 and max(dilations) == 1:
        raise WeightFileError(f"{graph.where}: output stride {output_stride} without dilated convolutions.")
    n, h, w, c = graph.shape(graph.graph.Inputs(0))
    labels = graph.labels()
    if segmentation:
        names = PASCAL_VOC_LABELS if fields["num_labels"] == len(PASCAL_VOC_LABELS) else None
    else:
        names = labels if labels and len(labels) == fields["num_labels"] else None
    architecture = "MobileNetV2ForSemanticSegmentation" if segmentation else "MobileNetV2ForImageClassification"
    config = {
        **fields,
        "output_stride": output_stride,
        "tf_padding": True,
        "image_size": h if h == w else [h, w],
        "architectures": [architecture],
    }
    if names:
        config["id2label"] = dict(enumerate(names))
    return config


def _unused_conv_1x1(c_in: int, c_out: int) -> dict[str, np.ndarray]:
    """DeepLab exports stop before the final 1x1 conv, which transformers' checkpoint format still has.

    The segmentation model never runs it; it is filled with zeros (and an identity batch norm) so
    the checkpoint is complete and loads in transformers.
    """
    return {
        "conv_1x1.convolution.weight": np.zeros((c_out, c_in, 1, 1)),
        **_prefixed("conv_1x1", identity_batch_norm(np.zeros(c_out), 1e-3)),
    }


def read_tflite_input_size(path: str | Path) -> tuple[int, int]:
    """(height, width) of a TFLite model's input tensor (N, H, W, C)."""
    graph = TFLiteGraph(Path(path))
    try:
        shape = graph.shape(graph.graph.Inputs(0))
    except Exception as err:  # a corrupt flatbuffer
        raise WeightFileError(f"{graph.where} is corrupt ({type(err).__name__}: {err}).") from None
    if len(shape) != 4:
        raise WeightFileError(f"{graph.where}: input shape {shape} is not (N, H, W, C).")
    return shape[1], shape[2]

"""A `.tflite` file read as a graph (`TFLiteGraph`): its ops as records (type, tensors, the options
they carry), its tensors' names, shapes, types and quantization, its constants and labels.

The flatbuffer is read with the `tflite` package (optional extra `npmnv2[tflite]`), after the
validator (`npmnv2.tflite.validate`) has checked every offset, type and op; the facts of each op
come from `npmnv2.tflite.ops.TFLITE_OPS`. Nothing is executed: this only reads arrays.
"""

from __future__ import annotations

import hashlib
import io
import math
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..formats.errors import WeightFileError, regular_file
from ..ops.quantization import QuantParams
from .ops import (
    DEQUANTIZE,
    op_is,
    tflite_op,
)
from .structure import (
    check_structure,
    operator_codes,
    options_vector_ok,
)
from .validate import validate

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
    shapes and int32 bounds; see `npmnv2.tflite.validate`) before anything computes on it
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

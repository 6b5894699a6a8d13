"""Edit a real .tflite file in place, field by field: the crafted files of the hostile-input tests
and the structure-aware fuzz test.

A flatbuffer field that is present can be overwritten where it is; one that is absent (flatbuffers
omit fields that hold their default, e.g. a fused activation of NONE) is set by appending a new
options table at the end of the file and pointing the op at it. Offsets only ever point forward,
so an appended table is always reachable.
"""

from __future__ import annotations

import struct
from pathlib import Path

import tflite

OPTIONS_CLASS = {
    "CONV_2D": tflite.Conv2DOptions,
    "DEPTHWISE_CONV_2D": tflite.DepthwiseConv2DOptions,
    "ADD": tflite.AddOptions,
    "AVERAGE_POOL_2D": tflite.Pool2DOptions,
    "SOFTMAX": tflite.SoftmaxOptions,
    "CONCATENATION": tflite.ConcatenationOptions,
    "RESIZE_BILINEAR": tflite.ResizeBilinearOptions,
    "MEAN": tflite.ReducerOptions,
    "FULLY_CONNECTED": tflite.FullyConnectedOptions,
}
# (vtable offset, struct format) of the option fields the tests set, per op type.
FIELDS = {
    "CONV_2D": {
        "padding": (4, "<b"),
        "stride_w": (6, "<i"),
        "stride_h": (8, "<i"),
        "activation": (10, "<b"),
        "dilation_w": (12, "<i"),
        "dilation_h": (14, "<i"),
    },
    "DEPTHWISE_CONV_2D": {
        "padding": (4, "<b"),
        "stride_w": (6, "<i"),
        "stride_h": (8, "<i"),
        "depth_multiplier": (10, "<i"),
        "activation": (12, "<b"),
        "dilation_w": (14, "<i"),
        "dilation_h": (16, "<i"),
    },
    "ADD": {"activation": (4, "<b")},
    "AVERAGE_POOL_2D": {
        "padding": (4, "<b"),
        "stride_w": (6, "<i"),
        "stride_h": (8, "<i"),
        "filter_w": (10, "<i"),
        "filter_h": (12, "<i"),
        "activation": (14, "<b"),
    },
    "SOFTMAX": {"beta": (4, "<f")},
    "CONCATENATION": {"axis": (4, "<i"), "activation": (6, "<b")},
    "RESIZE_BILINEAR": {"align_corners": (8, "<b"), "half_pixel_centers": (10, "<b")},
    "MEAN": {"keep_dims": (4, "<b")},
    "FULLY_CONNECTED": {"activation": (4, "<b")},
}


class TFLiteEdit:
    """A mutable copy of a .tflite file."""

    def __init__(self, path: str | Path) -> None:
        self.buf = bytearray(Path(path).read_bytes())
        self.reload()

    def reload(self) -> None:
        self.model = tflite.Model.GetRootAsModel(self.buf, 0)
        self.graph = self.model.Subgraphs(0)

    # ------------------------------------------------------------ finding things
    def op_type(self, i: int) -> str:
        code = self.model.OperatorCodes(self.graph.Operators(i).OpcodeIndex())
        names = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}
        return names[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())]

    def ops_of(self, kind: str) -> list[int]:
        return [i for i in range(self.graph.OperatorsLength()) if self.op_type(i) == kind]

    def op_output(self, i: int) -> int:
        return self.graph.Operators(i).Outputs(0)

    def op_input(self, i: int, k: int) -> int:
        return self.graph.Operators(i).Inputs(k)

    # ------------------------------------------------------------ low-level writes
    def _field_pos(self, obj, vt: int) -> int:
        offset = obj._tab.Offset(vt)
        if not offset:
            raise KeyError(f"field at vtable offset {vt} is absent")
        return obj._tab.Pos + offset

    def set_field(self, obj, vt: int, fmt: str, value) -> None:
        struct.pack_into(fmt, self.buf, self._field_pos(obj, vt), value)

    def set_element(self, obj, vt: int, index: int, fmt: str, value) -> None:
        start = obj._tab.Vector(obj._tab.Offset(vt))
        struct.pack_into(fmt, self.buf, start + index * struct.calcsize(fmt), value)

    def set_length(self, obj, vt: int, length: int) -> None:
        start = obj._tab.Vector(obj._tab.Offset(vt)) - 4
        struct.pack_into("<I", self.buf, start, length)

    def append_table(self, fields: dict[int, tuple[str, object]]) -> int:
        """Append a table with the given {vtable offset: (format, value)} fields; returns its position."""
        while len(self.buf) % 8:
            self.buf.append(0)
        vt_size = max(fields) + 2 if fields else 4
        layout, table_size = {}, 4
        for vt, (fmt, _) in sorted(fields.items()):
            size = struct.calcsize(fmt)
            table_size += (-table_size) % size
            layout[vt] = table_size
            table_size += size
        vtable = bytearray(struct.pack("<HH", vt_size, table_size) + bytes(vt_size - 4))
        for vt, offset in layout.items():
            struct.pack_into("<H", vtable, vt, offset)
        vtable_pos = len(self.buf)
        self.buf += vtable
        while len(self.buf) % 8:
            self.buf.append(0)
        table_pos = len(self.buf)
        table = bytearray(table_size)
        struct.pack_into("<i", table, 0, table_pos - vtable_pos)
        for vt, (fmt, value) in fields.items():
            struct.pack_into(fmt, table, layout[vt], value)
        self.buf += table
        return table_pos

    # ------------------------------------------------------------ what the tests change
    def set_options(self, i: int, **values) -> None:
        """Set op i's options fields by name (see FIELDS): in place where present, else by
        appending a copy of its options table with the new values."""
        kind = self.op_type(i)
        op = self.graph.Operators(i)
        table = op.BuiltinOptions()
        options = OPTIONS_CLASS[kind]()
        options.Init(table.Bytes, table.Pos)
        current = {}
        for vt, fmt in FIELDS[kind].values():
            offset = options._tab.Offset(vt)
            if offset:
                current[vt] = (fmt, struct.unpack_from(fmt, self.buf, options._tab.Pos + offset)[0])
        for name, value in values.items():
            vt, fmt = FIELDS[kind][name]
            current[vt] = (fmt, value)
        new = self.append_table(current)
        field = self._field_pos(op, 12)  # Operator.builtin_options
        struct.pack_into("<I", self.buf, field, new - field)
        self.reload()

    def set_options_type(self, i: int, value: int) -> None:
        self.set_field(self.graph.Operators(i), 10, "<B", value)

    def set_scale(self, t: int, value: float, index: int = 0) -> None:
        self.set_element(self.graph.Tensors(t).Quantization(), 8, index, "<f", value)

    def set_zero_point(self, t: int, value: int, index: int = 0) -> None:
        self.set_element(self.graph.Tensors(t).Quantization(), 10, index, "<q", value)

    def set_op_input(self, i: int, k: int, tensor: int) -> None:
        self.set_element(self.graph.Operators(i), 6, k, "<i", tensor)

    def set_op_output(self, i: int, tensor: int) -> None:
        self.set_element(self.graph.Operators(i), 8, 0, "<i", tensor)

    def set_builtin_code(self, code_index: int, value: int) -> None:
        code = self.model.OperatorCodes(code_index)
        if code._tab.Offset(10):  # builtin_code; files that predate it (or hold ADD = 0) omit it
            self.set_field(code, 10, "<i", value)
        self.set_field(code, 4, "<b", min(value, 127))

    def set_op_version(self, code_index: int, value: int) -> None:
        """Operator code `code_index`'s version (OperatorCode.version, default 1 when absent)."""
        self.set_field(self.model.OperatorCodes(code_index), 8, "<i", value)

    def set_version(self, value: int) -> None:
        self.set_field(self.model, 4, "<I", value)

    def set_tensor_type(self, t: int, value: int) -> None:
        self.set_field(self.graph.Tensors(t), 6, "<b", value)

    def set_tensor_buffer(self, t: int, value: int) -> None:
        self.set_field(self.graph.Tensors(t), 8, "<I", value)

    def set_shape(self, t: int, index: int, value: int) -> None:
        self.set_element(self.graph.Tensors(t), 4, index, "<i", value)

    def data_pos(self, t: int) -> int:
        """Where tensor t's constant data starts."""
        buffer = self.model.Buffers(self.graph.Tensors(t).Buffer())
        return buffer._tab.Vector(buffer._tab.Offset(4))

    def set_data(self, t: int, index: int, fmt: str, value) -> None:
        struct.pack_into(fmt, self.buf, self.data_pos(t) + index * struct.calcsize(fmt), value)

    def save(self, path: str | Path) -> Path:
        Path(path).write_bytes(bytes(self.buf))
        return Path(path)

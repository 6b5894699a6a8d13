"""Bounds-check a TFLite flatbuffer's structure before anything reads it.

A flatbuffer is a tree of tables that point at each other with 32-bit offsets, and of vectors
that announce their own length. Nothing in the format stops a file from pointing outside itself,
or from declaring a list of 100 tensors that holds 26: the generated readers (the `tflite`
package) then read whatever bytes sit there, and a negative index reads the length field as an
offset. `check_structure` walks every table, vector and string npmnv2 reads, checks that each
lies inside the file, and refuses fields npmnv2 does not understand (sparse tensors, custom
options, weights stored outside the flatbuffer). After it passes, every accessor npmnv2 calls on
the `tflite` objects reads inside the file.

Layout (flatbuffers' binary format): a table at `pos` starts with an int32 `pos - vtable`; the
vtable holds uint16 [vtable size, table size, offset of field 0, field 1, ...], each offset
relative to `pos` (0: absent). A vector or string field holds a uint32 offset, relative to the
field, to a uint32 length followed by the elements. Field i of a table sits at vtable entry 4 + 2i.
"""

from __future__ import annotations

import struct

from ..formats.errors import WeightFileError

# TFLite's ActivationFunctionType (schema.fbs): every code's name, and the fused activations npmnv2
# computes, as its `ops` function names (None: no activation). The validator refuses the others.
ACTIVATION_NAMES = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6", 4: "TANH", 5: "SIGN_BIT", 6: "SIGMOID"}
FUSED_ACTIVATIONS = {0: None, 1: "relu", 3: "relu6"}
FUSED_CODES = {name: code for code, name in FUSED_ACTIVATIONS.items()}  # None -> 0, "relu" -> 1, "relu6" -> 3

# Hard limits on list lengths: far above any MobileNetV2 (174 tensors, 65 ops), far below what
# would make reading the lists slow.
MAX_LIST = 1 << 16
MAX_RANK = 8


class _Table:
    """One table: where it is, and where its vtable says each field is."""

    def __init__(self, reader: _Reader, pos: int, what: str) -> None:
        self.reader, self.pos, self.what = reader, pos, what
        buf = reader.buf
        reader.need(pos, 4, what)
        vtable = pos - reader.i32(pos)
        reader.need(vtable, 4, f"{what}'s vtable")
        self.vtable_size, self.table_size = struct.unpack_from("<HH", buf, vtable)
        if self.vtable_size < 4 or self.vtable_size % 2:
            reader.fail(f"{what}'s vtable has an invalid size {self.vtable_size}")
        reader.need(vtable, self.vtable_size, f"{what}'s vtable")
        reader.need(pos, max(self.table_size, 4), what)
        self.vtable = vtable

    def field(self, index: int, size: int, name: str) -> int | None:
        """Absolute position of field `index` (`size` bytes), or None when the field is absent."""
        entry = 4 + 2 * index
        if entry >= self.vtable_size:
            return None
        offset = struct.unpack_from("<H", self.reader.buf, self.vtable + entry)[0]
        if offset == 0:
            return None
        if offset + size > self.table_size:
            self.reader.fail(f"{self.what}: field {name} lies outside its table")
        return self.pos + offset

    def present(self, index: int) -> bool:
        return self.field(index, 0, "?") is not None

    def vector(self, index: int, element_size: int, name: str, max_length: int = MAX_LIST) -> tuple[int, int]:
        """(start, length) of vector field `index`, checked to lie inside the file; (0, 0) if absent."""
        at = self.field(index, 4, name)
        if at is None:
            return 0, 0
        start = at + self.reader.u32(at)
        self.reader.need(start, 4, f"{self.what}.{name}")
        length = self.reader.u32(start)
        if length > max_length:
            self.reader.fail(f"{self.what}.{name} declares {length} elements (at most {max_length} allowed)")
        self.reader.need(start + 4, length * element_size, f"{self.what}.{name} ({length} elements)")
        return start + 4, length

    def tables(self, index: int, name: str) -> list[_Table]:
        """The tables of a vector-of-tables field, each checked."""
        start, length = self.vector(index, 4, name)
        return [
            _Table(self.reader, p + self.reader.u32(p), f"{self.what}.{name}[{i}]")
            for i, p in enumerate(range(start, start + 4 * length, 4))
        ]

    def table(self, index: int, name: str) -> _Table | None:
        at = self.field(index, 4, name)
        return None if at is None else _Table(self.reader, at + self.reader.u32(at), f"{self.what}.{name}")

    def string(self, index: int, name: str) -> None:
        self.vector(index, 1, name, max_length=1 << 20)


class _Reader:
    def __init__(self, buf: bytes, where: str) -> None:
        self.buf, self.where = buf, where

    def fail(self, message: str) -> None:
        raise WeightFileError(
            f"{self.where} is not a valid TFLite flatbuffer: {message}. The file is corrupt or crafted."
        )

    def need(self, pos: int, size: int, what: str) -> None:
        if pos < 0 or size < 0 or pos + size > len(self.buf):
            self.fail(f"{what} points outside the file (bytes {pos}..{pos + size} of {len(self.buf)})")

    def u32(self, pos: int) -> int:
        self.need(pos, 4, "an offset")
        return struct.unpack_from("<I", self.buf, pos)[0]

    def i32(self, pos: int) -> int:
        self.need(pos, 4, "an offset")
        return struct.unpack_from("<i", self.buf, pos)[0]


# Field numbers of the schema (tensorflow/lite/schema/schema.fbs) that npmnv2 reads.
MODEL = {"version": 0, "operator_codes": 1, "subgraphs": 2, "description": 3, "buffers": 4, "metadata": 6}
SUBGRAPH = {"tensors": 0, "inputs": 1, "outputs": 2, "operators": 3, "name": 4}
TENSOR = {
    "shape": 0,
    "type": 1,
    "buffer": 2,
    "name": 3,
    "quantization": 4,
    "is_variable": 5,
    "sparsity": 6,
    "shape_signature": 7,
}
QUANTIZATION = {
    "min": 0,
    "max": 1,
    "scale": 2,
    "zero_point": 3,
    "details_type": 4,
    "details": 5,
    "quantized_dimension": 6,
}
OPERATOR = {
    "opcode_index": 0,
    "inputs": 1,
    "outputs": 2,
    "builtin_options_type": 3,
    "builtin_options": 4,
    "custom_options": 5,
    "mutating_variable_inputs": 7,
    "intermediates": 8,
    "large_custom_options_offset": 9,
    "builtin_options_2_type": 11,
}
OPERATOR_CODE = {"deprecated_builtin_code": 0, "custom_code": 1, "version": 2, "builtin_code": 3}
BUFFER = {"data": 0, "offset": 1, "size": 2}
METADATA = {"name": 0, "buffer": 1}


def operator_codes(buf: bytes, where: str) -> list[tuple[int, int]]:
    """(builtin operator, version) of every operator code, read from the raw table as the interpreter
    resolves them (schema_utils GetBuiltinCode): the larger of `builtin_code` (int32, 0 when absent)
    and `deprecated_builtin_code` (int8, 0 when absent); version 1 when absent. The `tflite`
    package's own BuiltinCode() returns the deprecated field whenever the real one is below 127, so a
    file whose two fields disagree (ADD in one, MUL in the other) would be read as another op than
    the interpreter runs. Call after `check_structure`."""
    reader = _Reader(buf, where)
    model = _Table(reader, reader.u32(0), "the model")
    codes = []
    for code in model.tables(MODEL["operator_codes"], "operator_codes"):
        deprecated = code.field(OPERATOR_CODE["deprecated_builtin_code"], 1, "deprecated_builtin_code")
        builtin = code.field(OPERATOR_CODE["builtin_code"], 4, "builtin_code")
        version = code.field(OPERATOR_CODE["version"], 4, "version")
        old = struct.unpack_from("<b", buf, deprecated)[0] if deprecated is not None else 0
        new = reader.i32(builtin) if builtin is not None else 0
        codes.append((max(old, new), reader.i32(version) if version is not None else 1))
    return codes


def check_structure(buf: bytes, where: str) -> None:
    """Refuse a flatbuffer any of whose tables, vectors or strings that npmnv2 reads lies outside
    the file, whose lists are longer than MAX_LIST, or that uses fields npmnv2 does not read
    (sparsity, custom options, intermediates, variable mutation, external buffers)."""
    reader = _Reader(buf, where)
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        reader.fail("it lacks the TFL3 identifier at bytes 4..8")
    model = _Table(reader, reader.u32(0), "the model")
    model.field(MODEL["version"], 4, "version")
    model.string(MODEL["description"], "description")
    for code in model.tables(MODEL["operator_codes"], "operator_codes"):
        code.field(OPERATOR_CODE["deprecated_builtin_code"], 1, "deprecated_builtin_code")
        code.field(OPERATOR_CODE["builtin_code"], 4, "builtin_code")
        code.field(OPERATOR_CODE["version"], 4, "version")
        code.string(OPERATOR_CODE["custom_code"], "custom_code")
    for buffer in model.tables(MODEL["buffers"], "buffers"):
        buffer.vector(BUFFER["data"], 1, "data", max_length=1 << 31)
        offset = buffer.field(BUFFER["offset"], 8, "offset")
        if offset is not None and struct.unpack_from("<Q", buf, offset)[0] > 1:
            reader.fail(f"{buffer.what} stores its data outside the flatbuffer, which npmnv2 does not read")
    for entry in model.tables(MODEL["metadata"], "metadata"):
        entry.string(METADATA["name"], "name")
        entry.field(METADATA["buffer"], 4, "buffer")
    subgraphs = model.tables(MODEL["subgraphs"], "subgraphs")
    for subgraph in subgraphs:
        _check_subgraph(reader, subgraph)


def _check_subgraph(reader: _Reader, subgraph: _Table) -> None:
    for name in ("inputs", "outputs"):
        subgraph.vector(SUBGRAPH[name], 4, name)
    subgraph.string(SUBGRAPH["name"], "name")
    for tensor in subgraph.tables(SUBGRAPH["tensors"], "tensors"):
        tensor.vector(TENSOR["shape"], 4, "shape", max_length=MAX_RANK)
        tensor.vector(TENSOR["shape_signature"], 4, "shape_signature", max_length=MAX_RANK)
        tensor.field(TENSOR["type"], 1, "type")
        tensor.field(TENSOR["buffer"], 4, "buffer")
        tensor.field(TENSOR["is_variable"], 1, "is_variable")
        tensor.string(TENSOR["name"], "name")
        if tensor.present(TENSOR["sparsity"]):
            reader.fail(f"{tensor.what} is sparse, which npmnv2 does not read")
        quant = tensor.table(TENSOR["quantization"], "quantization")
        if quant is not None:
            quant.vector(QUANTIZATION["min"], 4, "min")
            quant.vector(QUANTIZATION["max"], 4, "max")
            quant.vector(QUANTIZATION["scale"], 4, "scale")
            quant.vector(QUANTIZATION["zero_point"], 8, "zero_point")
            quant.field(QUANTIZATION["quantized_dimension"], 4, "quantized_dimension")
            if quant.present(QUANTIZATION["details"]):
                reader.fail(f"{quant.what} has custom quantization details, which npmnv2 does not read")
    for op in subgraph.tables(SUBGRAPH["operators"], "operators"):
        op.field(OPERATOR["opcode_index"], 4, "opcode_index")
        op.field(OPERATOR["builtin_options_type"], 1, "builtin_options_type")
        op.vector(OPERATOR["inputs"], 4, "inputs", max_length=64)
        op.vector(OPERATOR["outputs"], 4, "outputs", max_length=64)
        options = op.table(OPERATOR["builtin_options"], "builtin_options")
        if options is not None:  # its scalars are checked against the table's size when read
            _check_options_table(options)
        for name in (
            "custom_options",
            "mutating_variable_inputs",
            "intermediates",
            "large_custom_options_offset",
            "builtin_options_2_type",
        ):
            if op.present(OPERATOR[name]):
                reader.fail(f"{op.what} has {name}, which npmnv2 does not read")


def _check_options_table(options: _Table) -> None:
    """Every field an options table declares lies inside it (a field holds at most 8 bytes; the
    one vector, ReshapeOptions.new_shape, is checked where it is read)."""
    for index in range((options.vtable_size - 4) // 2):
        options.field(index, 1, f"field {index}")


def options_vector_ok(buf: bytes, where: str, table_pos: int, index: int, element_size: int) -> None:
    """Check a vector inside an options table (ReshapeOptions.new_shape) before it is read."""
    reader = _Reader(buf, where)
    _Table(reader, table_pos, "an op's options").vector(index, element_size, "new_shape", max_length=MAX_RANK)

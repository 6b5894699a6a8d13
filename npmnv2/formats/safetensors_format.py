"""The `.safetensors` format, read and written by the `safetensors` package; when the package refuses a
file, the header is re-read only to say which tensor and which numbers are wrong.
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import safetensors
import safetensors.numpy

from .atomic import write_file_atomically
from .errors import WeightFileError, regular_file

# safetensors dtype names -> numpy; BF16 has no numpy type: it is read as uint16 and widened.
_SAFETENSORS_DTYPES = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "BF16": np.uint16,
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U8": np.uint8,
    "BOOL": np.bool_,
}


_SAFETENSORS_NAMES = {np.dtype(v): k for k, v in _SAFETENSORS_DTYPES.items() if k != "BF16"}


def bfloat16_to_float32(bits: np.ndarray) -> np.ndarray:
    """bfloat16 is the top half of a float32: shift the 16 stored bits up.

    >>> bfloat16_to_float32(np.array([0x3F80], dtype=np.uint16))
    array([1.], dtype=float32)
    """
    return (bits.astype(np.uint32) << 16).view(np.float32)


def load_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a .safetensors file with the `safetensors` package, as NumPy arrays.

    The package checks the header (valid JSON, dtypes, shapes, offsets that tile the data section
    exactly); its errors are reported as WeightFileError naming the file. BF16 tensors are
    returned as float32 (NumPy has no bfloat16).
    """
    path = regular_file(path, "safetensors file")
    where = f"safetensors file {str(path)!r}"
    raw = path.read_bytes()
    try:
        entries = safetensors.deserialize(raw)
    except safetensors.SafetensorError as err:
        raise WeightFileError(f"{where} {_safetensors_problem(raw, str(err))}") from None
    tensors = {}
    for name, entry in entries:
        dtype_name = entry["dtype"].upper()
        if dtype_name not in _SAFETENSORS_DTYPES:
            raise WeightFileError(
                f"{where}: tensor {name!r} has dtype {dtype_name}, which npmnv2 does not read; "
                f"supported: {', '.join(_SAFETENSORS_DTYPES)}."
            )
        dtype = np.dtype(_SAFETENSORS_DTYPES[dtype_name]).newbyteorder("<")
        array = np.frombuffer(entry["data"], dtype=dtype).reshape(entry["shape"])
        tensors[name] = bfloat16_to_float32(array) if dtype_name == "BF16" else array.astype(dtype.newbyteorder("="))
    return tensors


def _safetensors_problem(raw: bytes, library_says: str) -> str:
    """Why the `safetensors` package refused a file, in words that name the tensor and the numbers.

    Runs only after the package has refused the file: it reads the header again to explain the
    failure (the package's own message is kept at the end).
    """
    tail = f" (safetensors: {library_says})"
    if len(raw) < 8:
        return f"is truncated: {len(raw)} bytes, not even the 8-byte header length.{tail}"
    (n,) = struct.unpack("<Q", raw[:8])
    if n > len(raw) - 8:
        return f"is truncated or corrupt: its header claims {n} bytes, the file has {len(raw) - 8} after it.{tail}"
    try:
        header = json.loads(raw[8 : 8 + n])
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        why = "nested too deeply" if isinstance(err, RecursionError) else str(err)
        return f"has a header that is not valid JSON ({why}); is it really safetensors?{tail}"
    if not isinstance(header, dict):
        return f"has a header that is not a JSON object of tensors.{tail}"
    data_size = len(raw) - 8 - n
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype_name, shape, (begin, end) = info["dtype"], list(info["shape"]), info["data_offsets"]
        except (TypeError, KeyError, ValueError):
            return f"has an entry {name!r} without a dtype, a shape and two data_offsets.{tail}"
        if not all(type(v) is int and v >= 0 for v in shape):
            return f"gives tensor {name!r} the shape {shape}; a shape is a list of non-negative integers.{tail}"
        if not (type(begin) is int and type(end) is int and 0 <= begin <= end <= data_size):
            return (
                f"says tensor {name!r} claims bytes {begin}..{end} but the data section has {data_size} bytes "
                f"(a truncated file or a header that lies).{tail}"
            )
        if dtype_name in _SAFETENSORS_DTYPES:
            needed = math.prod(shape) * np.dtype(_SAFETENSORS_DTYPES[dtype_name]).itemsize
            if end - begin != needed:
                return (
                    f"says tensor {name!r} of dtype {dtype_name} and shape {shape} needs {needed} bytes, "
                    f"the header gives it {end - begin}.{tail}"
                )
    return f"is not a valid safetensors file; it is truncated, corrupt, or its header does not match its data.{tail}"


def save_safetensors(tensors: Mapping[str, np.ndarray], path: str | os.PathLike) -> None:
    """Write tensors as .safetensors with `{"format": "pt"}` metadata, as transformers does
    (the `safetensors` package builds the bytes; the file is written atomically)."""
    write_file_atomically(Path(path), safetensors_bytes(tensors))


def safetensors_bytes(tensors: Mapping[str, np.ndarray]) -> bytes:
    """The bytes of a .safetensors file holding `tensors`, built by the `safetensors` package."""
    arrays = {}
    for name, value in tensors.items():
        array = np.ascontiguousarray(value) if np.ndim(value) else np.asarray(value)
        if array.dtype not in _SAFETENSORS_NAMES:
            raise TypeError(
                f"save_safetensors: tensor {name!r} has dtype {array.dtype}, which safetensors cannot hold."
            )
        arrays[name] = array
    return safetensors.numpy.save(arrays, metadata={"format": "pt"})

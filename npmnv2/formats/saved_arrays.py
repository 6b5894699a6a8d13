"""Read `.npz` and `.npy` files a user hands in: never unpickled, and within a size budget.

An `.npz` is a zip of `.npy` members; a 1.4 MB zip can decompress to gigabytes. `read_npz` reads
each member's `.npy` header (shape and dtype) before its data, and refuses the file when the
arrays would add up to more than `budget` bytes, when a member declares another size than its
header implies, or when a member holds Python objects.
"""

from __future__ import annotations

import math
import os
import zipfile
from pathlib import Path

import numpy as np

from .errors import WeightFileError, regular_file

BUDGET = 2 << 30  # bytes of arrays one file may hold (a MobileNetV2 trace at 224 is ~60 MB)


def _header(stream, where: str, member: str) -> tuple[tuple[int, ...], np.dtype, bool]:
    try:
        version = np.lib.format.read_magic(stream)
        readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
        if version not in readers:
            raise ValueError(f".npy format version {version} (npmnv2 reads 1.0 and 2.0)")
        shape, fortran, dtype = readers[version](stream)
    except (ValueError, OSError, EOFError) as err:
        raise WeightFileError(f"{where}: {member} is not a NumPy .npy array ({err}).") from None
    if dtype.hasobject:
        raise WeightFileError(
            f"{where}: {member} holds Python objects, which are never unpickled; save plain numeric arrays."
        )
    return shape, dtype, fortran


def read_npz(path: str | os.PathLike, what: str, budget: int = BUDGET) -> dict[str, np.ndarray]:
    """name -> array of an `.npz` file, checked against `budget` bytes before anything is decompressed."""
    path = regular_file(path, what)
    where = f"{what} {str(path)!r}"
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise WeightFileError(f"{where} is not an .npz file ({err}); write one with np.savez.") from None
    with archive:
        infos = archive.infolist()
        total = sum(info.file_size for info in infos)
        if total > budget:
            raise WeightFileError(
                f"{where} decompresses to {total:,} bytes, over the budget of {budget:,} bytes; an .npz of "
                "MobileNetV2 tensors is far smaller."
            )
        arrays = {}
        for info in infos:
            if not info.filename.endswith(".npy"):
                raise WeightFileError(f"{where}: member {info.filename!r} is not an .npy array.")
            try:
                with archive.open(info) as stream:
                    shape, dtype, fortran = _header(stream, where, repr(info.filename))
                    size = math.prod(shape) * dtype.itemsize
                    if size > info.file_size:
                        raise WeightFileError(
                            f"{where}: member {info.filename!r} announces a {shape} {dtype} array ({size:,} bytes) "
                            f"but holds {info.file_size:,} bytes."
                        )
                    data = stream.read(size)
            except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError) as err:
                raise WeightFileError(f"{where}: member {info.filename!r} cannot be read ({err}).") from None
            if len(data) != size:
                raise WeightFileError(f"{where}: member {info.filename!r} is truncated.")
            array = np.frombuffer(data, dtype=dtype)
            arrays[info.filename.removesuffix(".npy")] = (
                array.reshape(shape[::-1]).T if fortran else array.reshape(shape)
            ).copy()
    return arrays


def read_npy(path: str | os.PathLike, what: str, budget: int = BUDGET) -> np.ndarray:
    """One `.npy` array, its header checked against `budget` before its data is read."""
    path = regular_file(path, what)
    where = f"{what} {str(path)!r}"
    with Path(path).open("rb") as stream:
        shape, dtype, fortran = _header(stream, where, "the file")
        size = math.prod(shape) * dtype.itemsize
        if size > budget:
            raise WeightFileError(f"{where} announces a {shape} {dtype} array of {size:,} bytes, over the budget.")
        data = stream.read(size)
    if len(data) != size:
        raise WeightFileError(f"{where} is truncated: its header announces {size:,} bytes of data.")
    array = np.frombuffer(data, dtype=dtype)
    return (array.reshape(shape[::-1]).T if fortran else array.reshape(shape)).copy()

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

BUDGET = 2 << 30  # bytes of arrays one file may hold (a DeepLabV3 trace at 513, output stride 8: ~1 GiB)
MAX_RATIO = 200  # how many times its compressed size a large .npz may unpack to (real tensors: a few times)
RATIO_FROM = 64 << 20  # ... once it unpacks to more than this (a small file of zeros is harmless)
CHUNK = 1 << 20  # bytes read at a time straight into the array (no second copy of a member)


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
        packed = max(1, sum(info.compress_size for info in infos))
        if total > RATIO_FROM and total > MAX_RATIO * packed:
            raise WeightFileError(
                f"{where} decompresses to {total:,} bytes from {packed:,} ({total // packed:,}-fold): a zip bomb, not "
                f"tensors (real activations compress a few-fold; npmnv2 reads at most {MAX_RATIO}-fold)."
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
                    array = _read_into(stream, shape, dtype, fortran)
            except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError) as err:
                raise WeightFileError(f"{where}: member {info.filename!r} cannot be read ({err}).") from None
            if array is None:
                raise WeightFileError(f"{where}: member {info.filename!r} is truncated.")
            arrays[info.filename.removesuffix(".npy")] = array
    return arrays


def _read_into(stream, shape: tuple[int, ...], dtype: np.dtype, fortran: bool) -> np.ndarray | None:
    """The array a stream holds after its header, read CHUNK bytes at a time into the array itself
    (memory: the array, not the array and a copy of its bytes); None when the stream ends early."""
    array = np.empty(shape[::-1] if fortran else shape, dtype=dtype)
    view = memoryview(array.reshape(-1).view(np.uint8))
    filled = 0
    while filled < len(view):
        chunk = stream.read(min(CHUNK, len(view) - filled))
        if not chunk:
            return None
        view[filled : filled + len(chunk)] = chunk
        filled += len(chunk)
    return array.T if fortran else array


def read_npy(path: str | os.PathLike, what: str, budget: int = BUDGET) -> np.ndarray:
    """One `.npy` array, its header checked against `budget` before its data is read."""
    path = regular_file(path, what)
    where = f"{what} {str(path)!r}"
    with Path(path).open("rb") as stream:
        shape, dtype, fortran = _header(stream, where, "the file")
        size = math.prod(shape) * dtype.itemsize
        if size > budget:
            raise WeightFileError(f"{where} announces a {shape} {dtype} array of {size:,} bytes, over the budget.")
        array = _read_into(stream, shape, dtype, fortran)
    if array is None:
        raise WeightFileError(f"{where} is truncated: its header announces {size:,} bytes of data.")
    return array

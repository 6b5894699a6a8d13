"""PyTorch `.bin` checkpoints (a zip holding a pickle and raw storages), read without torch.

The pickle is read by an unpickler that can only rebuild tensors: every other global is refused
before it runs, the few allowed functions cannot be changed by the pickle, storages are read lazily
and checked against their zip members, and every offset, size and stride is checked before a view
is built (see docs/security.md).
"""

from __future__ import annotations

import functools
import io
import math
import os
import pickle
import zipfile
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import numpy as np

from .errors import WeightFileError, regular_file
from .safetensors_format import bfloat16_to_float32

# torch storage classes (as pickled) -> numpy
_TORCH_STORAGES = {
    "DoubleStorage": np.float64,
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "BFloat16Storage": np.uint16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class _Allowed:
    """One of the few functions a weight pickle may call, wrapped so that the pickle cannot change
    it: a pickle's BUILD opcode sets attributes on the object it builds (for a bare function,
    `__defaults__` or `__code__`, for the rest of the process). This wrapper refuses that."""

    __slots__ = ("_function", "_where")

    def __init__(self, function: Any, where: str) -> None:
        object.__setattr__(self, "_function", function)
        object.__setattr__(self, "_where", where)

    def __call__(self, *args: Any) -> Any:
        return self._function(*args)

    def __setstate__(self, state: Any) -> None:
        raise WeightFileError(
            f"{self._where}: its pickle tries to change the function "
            f"{getattr(self._function, 'func', self._function).__name__} (a BUILD on it); "
            "a weight file only builds tensors, so it was refused."
        )

    def __setattr__(self, name: str, value: Any) -> None:
        self.__setstate__(None)


class _TensorOnlyUnpickler(pickle.Unpickler):
    """Rebuilds the tensors of a `torch.save` file and refuses every other global.

    A pickle can name any importable function and call it while loading; this unpickler
    answers only the handful of names a state dict needs, with NumPy stand-ins, and reads a
    storage from the archive only when the pickle references it.
    """

    def __init__(self, file: io.BytesIO, archive: zipfile.ZipFile, prefix: str, where: str) -> None:
        super().__init__(file)
        self._archive, self._prefix, self._where = archive, prefix, where
        self._archive_size = archive.fp.seek(0, os.SEEK_END) if archive.fp is not None else 0
        self._storages: dict[str, np.ndarray] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in (("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_tensor")):
            return _Allowed(functools.partial(_rebuild_tensor, where=self._where), self._where)
        if (module, name) == ("torch._utils", "_rebuild_parameter"):
            return _Allowed(_rebuild_parameter, self._where)
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if module == "torch" and name in _TORCH_STORAGES:
            return _TORCH_STORAGES[name]
        raise WeightFileError(
            f"{self._where}: refused to load the global {module}.{name}; a weight file may only contain tensors. "
            "This file could run code when loaded: do not open it with torch.load either."
        )

    def persistent_load(self, pid: Any) -> np.ndarray:
        # pid = ("storage", storage dtype, key, location, numel)
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise WeightFileError(f"{self._where}: unexpected persistent id {pid!r}.")
        _, dtype, key, _location, numel = pid
        if not any(dtype is t for t in _TORCH_STORAGES.values()):
            raise WeightFileError(
                f"{self._where}: storage {key!r} has the type {dtype!r}; only torch's number storages "
                f"({', '.join(_TORCH_STORAGES)}) are allowed."
            )
        if not isinstance(key, str) or type(numel) is not int or numel < 0:
            raise WeightFileError(f"{self._where}: storage key {key!r} or size {numel!r} is invalid.")
        if key not in self._storages:
            self._storages[key] = self._read_storage(key, np.dtype(dtype), numel)
        storage = self._storages[key]
        if storage.size < numel:
            raise WeightFileError(f"{self._where}: storage {key!r} has {storage.size} elements, needs {numel}.")
        return storage

    def _read_storage(self, key: str, dtype: np.dtype, numel: int) -> np.ndarray:
        """One storage member, read only now that the pickle references it. torch writes members
        uncompressed; a compressed one, or one smaller than it claims, is refused before reading."""
        name = f"{self._prefix}data/{key}"
        try:
            info = self._archive.getinfo(name)
        except KeyError:
            raise WeightFileError(
                f"{self._where}: storage {key!r} is missing from the archive (truncated file?)."
            ) from None
        if info.compress_type != zipfile.ZIP_STORED:
            raise WeightFileError(
                f"{self._where}: storage {key!r} is compressed; torch.save stores tensors uncompressed, so this "
                "file was not written by torch (refused: a small compressed member can expand without bound)."
            )
        _check_member_size(info, self._archive_size, self._where)
        needed = numel * dtype.itemsize
        if info.file_size < needed:
            raise WeightFileError(f"{self._where}: storage {key!r} has {info.file_size} bytes, needs {needed}.")
        try:
            raw = self._archive.read(name)
        except (zipfile.BadZipFile, EOFError, OSError, ValueError, NotImplementedError) as err:
            raise WeightFileError(f"{self._where} is corrupt ({err}).") from None
        storage = np.frombuffer(raw, dtype=dtype.newbyteorder("<"), count=numel)
        return bfloat16_to_float32(storage) if dtype == np.uint16 else storage


def _rebuild_tensor(storage: np.ndarray, offset: Any, size: Any, stride: Any, *_: Any, where: str = "") -> np.ndarray:
    """torch._utils._rebuild_tensor_v2 for NumPy: the strided tensor inside a flat storage, copied.

    The pickle says where the tensor lies: `offset` elements into the storage, then `size[k]`
    steps of `stride[k]` elements along each axis. A hostile pickle can lie, so before anything
    is read: every number must be a non-negative int, stride 0 only on axes of length <= 1, and
    the last element, offset + sum((size - 1) * stride), inside the storage. The view is then
    made by `np.ndarray(..., buffer=...)`, which checks the bounds once more.
    """
    if not isinstance(storage, np.ndarray):
        raise WeightFileError(f"{where}: a tensor is rebuilt from {type(storage).__name__}, not a storage.")
    if not (isinstance(size, tuple) and isinstance(stride, tuple) and len(size) == len(stride)):
        raise WeightFileError(f"{where}: a tensor has size {size!r} and stride {stride!r}; expected two tuples.")
    numbers = (offset, *size, *stride)
    if not all(type(v) is int and v >= 0 for v in numbers):
        raise WeightFileError(
            f"{where}: a tensor has offset {offset!r}, size {size!r}, stride {stride!r}; every one must be a "
            "non-negative integer (negative strides or offsets would read outside the storage)."
        )
    if any(st == 0 and n > 1 for n, st in zip(size, stride, strict=True)):
        raise WeightFileError(
            f"{where}: a tensor of size {size} repeats one element along an axis (stride 0); torch never saves that."
        )
    if math.prod(size) == 0:
        return np.zeros(size, storage.dtype)
    last = offset + sum((n - 1) * st for n, st in zip(size, stride, strict=True))
    if last >= storage.size:
        raise WeightFileError(
            f"{where}: a tensor of size {size} at offset {offset} needs {last + 1} storage elements, "
            f"the storage has {storage.size}."
        )
    itemsize = storage.itemsize
    view = np.ndarray(
        size, storage.dtype, buffer=storage, offset=offset * itemsize, strides=tuple(st * itemsize for st in stride)
    )
    return view.copy()


def _rebuild_parameter(data: np.ndarray, *_: Any) -> np.ndarray:
    return data


def _check_member_size(info: zipfile.ZipInfo, archive_size: int, where: str) -> None:
    """Refuse a member whose stored size exceeds the whole archive: zipfile reads a member with
    buffers of its stored size, so a corrupt size field would allocate that much before failing."""
    if info.compress_size > archive_size:
        raise WeightFileError(
            f"{where}: member {info.filename!r} claims {info.compress_size} stored bytes, more than the whole "
            f"file ({archive_size} bytes); the archive is corrupt."
        )


def _check_memo_indices(payload: bytes, where: str) -> None:
    """Refuse a pickle whose memo indices exceed its opcode count, before unpickling it.

    The C unpickler grows its memo table to twice the largest index a PUT names: one corrupt
    4-byte index (LONG_BINPUT) would allocate up to 32 GB. torch numbers its memo entries 0, 1,
    2, ..., so every index is below the number of opcodes. The stream is only parsed here
    (`pickletools.genops`), never run.
    """
    import pickletools

    try:
        ops = list(pickletools.genops(payload))
    except Exception as err:  # a broken stream: the unpickler would fail on it too
        raise WeightFileError(f"{where}: its pickle is corrupt ({type(err).__name__}: {err}).") from None
    for op, arg, _ in ops:
        if op.name in ("PUT", "BINPUT", "LONG_BINPUT") and not 0 <= int(arg) <= len(ops):
            raise WeightFileError(
                f"{where}: its pickle stores memo entry {arg} in a stream of {len(ops)} opcodes; torch.save "
                "numbers them from 0, so the file is corrupt (refused before the index could allocate memory)."
            )


def load_pytorch_bin(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a `torch.save` zip archive (`pytorch_model.bin`) into NumPy arrays, without torch.

    Only tensors (and the dicts holding them) are allowed; any other pickled global raises
    WeightFileError naming it, before anything runs. Only the storages the pickle references are
    read, each checked against its declared size; compressed members are refused. The legacy
    pre-1.6 (non-zip) format is not read.
    """
    path = regular_file(path, "PyTorch file")
    where = f"PyTorch file {str(path)!r}"
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, ValueError, EOFError, NotImplementedError):  # the last: a corrupt version field
        raise WeightFileError(
            f"{where} is not a zip archive: it is truncated, corrupt, or the legacy pre-1.6 torch format "
            "(re-save it with torch.save in torch >= 1.6, or convert it to safetensors)."
        ) from None
    with archive:
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pickles) != 1:
            raise WeightFileError(f"{where}: expected one data.pkl in the archive, found {len(pickles)}.")
        info = archive.getinfo(pickles[0])
        _check_member_size(info, path.stat().st_size, where)
        if info.file_size > path.stat().st_size * 4 + 2**20:
            raise WeightFileError(f"{where}: its data.pkl claims {info.file_size} bytes, far more than the file holds.")
        try:
            payload = archive.read(pickles[0])
        except (zipfile.BadZipFile, EOFError, OSError, ValueError, NotImplementedError) as err:
            raise WeightFileError(f"{where} is corrupt ({err}).") from None
        prefix = pickles[0][: -len("data.pkl")]
        _check_memo_indices(payload, where)
        try:
            obj = _TensorOnlyUnpickler(io.BytesIO(payload), archive, prefix, where).load()
        except WeightFileError:
            raise
        except Exception as err:  # a broken pickle stream raises many kinds of errors
            raise WeightFileError(f"{where}: its pickle is corrupt ({type(err).__name__}: {err}).") from None
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, np.ndarray) for v in obj.values()):
        raise WeightFileError(f"{where} does not hold a state dict (a mapping of names to tensors).")
    return dict(obj)

"""Checkpoint input and output: safetensors, PyTorch `.bin`, checkpoint folders, the hub, TFLite.

No file is trusted (see docs/security.md). `.safetensors` files are parsed by the `safetensors`
package, whose header checks are strict; a PyTorch pickle is read by an unpickler that can only
rebuild tensors (it refuses every other global, so no code hidden in a file runs). Nothing here
imports torch.
"""

from __future__ import annotations

import functools
import io
import json
import math
import os
import pickle
import re
import shutil
import stat
import struct
import tempfile
import zipfile
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import safetensors
import safetensors.numpy

from .data_files import DEFAULT_MODEL, creation_mode, default_model_path

SAFETENSORS_NAME = "model.safetensors"
PYTORCH_NAME = "pytorch_model.bin"
CONFIG_NAME = "config.json"

# ============================================================================ dtypes

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


def bfloat16_to_float32(bits: np.ndarray) -> np.ndarray:
    """bfloat16 is the top half of a float32: shift the 16 stored bits up.

    >>> bfloat16_to_float32(np.array([0x3F80], dtype=np.uint16))
    array([1.], dtype=float32)
    """
    return (bits.astype(np.uint32) << 16).view(np.float32)


class WeightFileError(ValueError):
    """A weight file that is corrupt, truncated, of the wrong kind, or not allowed."""


# ============================================================================ safetensors


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
    _write_atomically(Path(path), safetensors_bytes(tensors))


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


def _write_atomically(path: Path, payload: bytes) -> None:
    """Write one file atomically (see `write_folder`)."""
    write_folder(path.parent, {path.name: payload}, create=False)


def write_folder(
    directory: str | os.PathLike, files: Mapping[str, bytes], *, remove: tuple[str, ...] = (), create: bool = True
) -> Path:
    """Write several files into a folder, all or nothing, never through a planted link.

    Each file is first written to a new temporary file in the folder (`tempfile.mkstemp`: a fresh
    random name, created exclusively, so a symlink planted at a predictable name is never
    followed), then all are renamed into place (`os.replace`, which replaces a link at the
    destination instead of writing through it). If any write fails, every temporary file is
    removed, and so is the folder when this call created it. `remove` names files to delete
    after the new ones are in place (a stale `pytorch_model.bin` that would shadow new weights).
    """
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise FileExistsError(f"{str(directory)!r} exists and is not a folder; choose a folder to write into.")
    created = not directory.exists()
    if created and not create:
        raise FileNotFoundError(f"folder {str(directory)!r} does not exist.")
    directory.mkdir(parents=True, exist_ok=True)
    staged: dict[str, str] = {}
    try:
        for name, payload in files.items():
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
            staged[name] = tmp
            with os.fdopen(fd, "wb") as handle:
                handle.write(payload)
            os.chmod(tmp, creation_mode())  # mkstemp makes 0600; a written file gets the umask's mode
    except BaseException:
        for tmp in staged.values():
            Path(tmp).unlink(missing_ok=True)
        if created:
            shutil.rmtree(directory, ignore_errors=True)
        raise
    for name, tmp in staged.items():
        os.replace(tmp, directory / name)
    for name in remove:
        stale = directory / name
        if stale.is_file() or stale.is_symlink():
            stale.unlink()
    return directory


# ============================================================================ PyTorch .bin (zip + pickle)


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


def regular_file(path: str | os.PathLike, what: str) -> Path:
    """`path` as a Path, or a WeightFileError when it is not a regular file: a FIFO would block
    forever, /dev/zero would be read until memory runs out."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except OSError as err:
        raise WeightFileError(f"{what} {str(path)!r} cannot be read ({err.strerror}).") from None
    if not stat.S_ISREG(mode):
        raise WeightFileError(
            f"{what} {str(path)!r} is not a regular file (a folder, a device or a pipe); give a weight file."
        )
    return path


# ============================================================================ sources


def load_tensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a .safetensors or .bin file into a dict of NumPy arrays."""
    path = regular_file(path, "weight file")
    if path.suffix == ".safetensors":
        return load_safetensors(path)
    if path.suffix in (".bin", ".pt", ".pth"):
        return load_pytorch_bin(path)
    raise WeightFileError(f"{str(path)!r}: unknown weight file type; expected .safetensors, .bin or .tflite.")


HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def download_from_hub(repo_id: str) -> Path:
    """Fetch a transformers checkpoint folder from the Hugging Face hub (or its local cache).

    Uses huggingface_hub's normal cache (HF_HOME / HF_HUB_CACHE); with HF_HUB_OFFLINE=1 only the
    cache is read.
    """
    alternatives = (
        "Use local weights instead (--weights on the command line): the embedded classifier 'npmnv2/default', a "
        ".tflite file (`npmnv2 data fetch` downloads Coral's classifier and DeepLabV3 models), a transformers "
        "checkpoint folder (config.json + model.safetensors), or a .safetensors/.bin file with config=."
    )
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise WeightFileError(
            f"{repo_id!r} looks like a hub id, but huggingface_hub is not installed "
            f"(pip install 'npmnv2[hub]'). {alternatives}"
        ) from None
    patterns = [CONFIG_NAME, SAFETENSORS_NAME, PYTORCH_NAME, "preprocessor_config.json"]
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns))
    except Exception as err:  # offline, not cached, unknown repo, network down ...
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
        if offline:
            why = "offline (HF_HUB_OFFLINE is set) and not in the local cache"
        else:
            why = f"not in the local cache and the hub could not be reached or refused ({type(err).__name__})"
        raise WeightFileError(f"could not get {repo_id!r} from the hub: {why}. {alternatives}") from None


def resolve_checkpoint(source: str | os.PathLike) -> Path:
    """A local path as it is; "npmnv2/default", the embedded classifier; a hub id (owner/name) that is
    not a local path, downloaded."""
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(
            f"weights source must be a path or a hub id such as 'google/mobilenet_v2_1.0_224', got "
            f"{type(source).__name__} {source!r}."
        )
    if source == DEFAULT_MODEL:  # the classifier shipped inside the package
        return default_model_path()
    path = Path(source)
    if path.exists():
        return path
    if isinstance(source, str) and HUB_ID.match(source):
        return download_from_hub(source)
    raise FileNotFoundError(
        f"weights source {os.fspath(source)!r} does not exist; give a checkpoint folder, a .safetensors/.bin/.tflite "
        f"file, {DEFAULT_MODEL!r} (the embedded classifier), or a hub id such as 'google/mobilenet_v2_1.0_224'."
    )


def read_checkpoint(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any] | None]:
    """The tensors and the config.json dict (or None) of a folder or a single weight file."""
    if path.is_dir():
        config_path = path / CONFIG_NAME
        if (path / SAFETENSORS_NAME).is_file():
            weights_path = path / SAFETENSORS_NAME
        elif (path / PYTORCH_NAME).is_file():
            weights_path = path / PYTORCH_NAME
        else:
            raise WeightFileError(f"checkpoint folder {str(path)!r} has neither {SAFETENSORS_NAME} nor {PYTORCH_NAME}.")
    else:
        weights_path, config_path = path, path.with_name(CONFIG_NAME)
    config = read_json_object(config_path, "config") if config_path.exists() else None
    return load_tensors(weights_path), config


def read_json_object(path: Path, what: str) -> dict[str, Any]:
    """A JSON file that must hold one object (config.json, preprocessor_config.json), or a clear error."""
    path = regular_file(path, f"{what} file")
    if path.stat().st_size > 16 * 2**20:
        raise WeightFileError(f"{what} file {str(path)!r} is {path.stat().st_size:,} bytes; a {what} is a few KiB.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise WeightFileError(f"{what} file {str(path)!r} is not valid JSON ({err}).") from None
    except RecursionError:
        raise WeightFileError(f"{what} file {str(path)!r} nests its JSON too deeply to be a {what}.") from None
    if not isinstance(data, dict):
        raise WeightFileError(
            f"{what} file {str(path)!r} holds {type(data).__name__ if data is not None else 'null'}, not a JSON "
            f"object of {what} fields."
        )
    return data


def checkpoint_files(tensors: Mapping[str, np.ndarray], config: dict[str, Any]) -> dict[str, bytes]:
    """The bytes of a transformers checkpoint folder: model.safetensors and config.json."""
    return {SAFETENSORS_NAME: safetensors_bytes(tensors), CONFIG_NAME: json_bytes(config)}


def json_bytes(data: Any) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()


# ============================================================================ TF-slim scope names

# TF-slim / TFLite scope -> transformers module path (relative to the backbone for MobilenetV2/*).
# `expanded_conv_N` (N = 1..16) is `layer.{N-1}`; the unnumbered `expanded_conv` is the stem.
TF_SCOPE_TO_HF = {
    "MobilenetV2/Conv": "conv_stem.first_conv",
    "MobilenetV2/expanded_conv/expand": "conv_stem.expand_1x1",
    "MobilenetV2/expanded_conv/depthwise": "conv_stem.conv_3x3",
    "MobilenetV2/expanded_conv/project": "conv_stem.reduce_1x1",
    "MobilenetV2/Conv_1": "conv_1x1",
    "MobilenetV2/Logits/Conv2d_1c_1x1": "classifier",
    "image_pooling": "segmentation_head.conv_pool",
    "aspp0": "segmentation_head.conv_aspp",
    "concat_projection": "segmentation_head.conv_projection",
    "logits/semantic": "segmentation_head.classifier",
}
_BLOCK_PARTS = {"expand": "expand_1x1", "depthwise": "conv_3x3", "project": "reduce_1x1"}
_TF_SCOPE = re.compile(
    r"(MobilenetV2/(?:Conv_1|Conv|Logits/Conv2d_1c_1x1|expanded_conv(?:_\d+)?/(?:expand|depthwise|project))"
    r"|image_pooling|aspp0|concat_projection|logits/semantic)(?=/|;|$)"
)


def tf_scope_to_hf(tensor_name: str) -> tuple[str, str] | None:
    """(TF-slim scope, transformers module path) of the first known scope in a TF tensor name.

    >>> tf_scope_to_hf("MobilenetV2/expanded_conv_12/depthwise/depthwise_Fold;MobilenetV2/x")
    ('MobilenetV2/expanded_conv_12/depthwise', 'layer.11.conv_3x3')
    """
    match = _TF_SCOPE.search(tensor_name)
    if match is None:
        return None
    scope = match.group(1)
    if scope in TF_SCOPE_TO_HF:
        return scope, TF_SCOPE_TO_HF[scope]
    block, part = scope.split("/")[1:]
    return scope, f"{_layer_of(block)}.{_BLOCK_PARTS[part]}"


def _layer_of(block: str) -> str:
    """TF-slim "expanded_conv_N" -> transformers "layer.{N-1}"."""
    return f"layer.{int(block.rsplit('_', 1)[1]) - 1}"


def residual_add_layer(tensor_name: str) -> str | None:
    """The transformers block whose residual add produced a TF tensor, or None.

    >>> residual_add_layer("MobilenetV2/expanded_conv_14/add")
    'layer.13'
    """
    if not tensor_name.startswith("MobilenetV2/expanded_conv_"):
        return None
    return _layer_of(tensor_name.split("/")[1])

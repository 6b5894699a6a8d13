"""Hostile and malformed inputs, each built here at test time (nothing hostile is committed),
plus property-based fuzzing of the three parsers: the `.bin` pickle and zip reader, the
safetensors header, and the TFLite flatbuffer reader. See docs/security.md."""

from __future__ import annotations

import io
import json
import os
import pickle
import struct
import subprocess
import sys
import tracemalloc
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import CORAL_CLASSIFIER, tiny_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import npmnv2
from npmnv2 import MobileNetV2Config
from npmnv2 import MobileNetV2ForImageClassification as Cls
from npmnv2.formats.errors import WeightFileError
from npmnv2.formats.safetensors_format import load_safetensors
from npmnv2.formats.torch_bin import load_pytorch_bin
from npmnv2.image_processing_mobilenet_v2 import ImageLoadError, MobileNetV2ImageProcessor

CLI = [sys.executable, "-m", "npmnv2.cli"]
FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout)


# ============================================================================ building hostile .bin files


class Storage:
    def __init__(self, key: str, numel: int, dtype: type = torch.FloatStorage) -> None:
        self.key, self.numel, self.dtype = key, numel, dtype


class Tensor:
    def __init__(self, storage: Storage, offset, size, stride) -> None:
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            return ("storage", obj.dtype, obj.key, "cpu", obj.numel)
        return None

    def reducer_override(self, obj):
        if isinstance(obj, Tensor):
            args = (obj.storage, obj.offset, obj.size, obj.stride, False, OrderedDict())
            return torch._utils._rebuild_tensor_v2, args
        return NotImplemented


def bin_file(path: Path, state: dict, storages: dict[str, bytes], *, compress: set[str] = frozenset()) -> Path:
    """A torch.save-style zip: archive/data.pkl plus archive/data/<key> members."""
    buffer = io.BytesIO()
    _Pickler(buffer, protocol=2).dump(OrderedDict(state))
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", buffer.getvalue())
        for key, raw in storages.items():
            kind = zipfile.ZIP_DEFLATED if key in compress else zipfile.ZIP_STORED
            archive.writestr(f"archive/data/{key}", raw, compress_type=kind)
    return path


def raw_pickle_bin(path: Path, payload: bytes, storages: dict[str, bytes] | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", payload)
        for key, raw in (storages or {}).items():
            archive.writestr(f"archive/data/{key}", raw)
    return path


FLOATS = np.arange(12800, dtype=np.float32).tobytes()


@pytest.mark.parametrize(
    ("offset", "size", "stride"),
    [
        (0, (10, 1280), (-1280, 1)),  # negative stride: reads before the storage
        (-1, (10, 1280), (1280, 1)),  # negative offset (Python slicing storage[-1:])
        (5, (2, 2), (1000, -995)),  # strides that cancel: the far end passes a one-ended check
        (0, (10, 10, 10, 1280), (10**7, -(10**7), 1280, 1)),  # crashed the process
        (0, (2, 1280), (-(2**40), 1)),  # crashed the process
        (0, (3, 4), (4.0, 1)),  # not an int
    ],
)
def test_bin_tensor_outside_its_storage_is_refused(tmp_path, offset, size, stride):
    storage = Storage("0", 12800)
    path = bin_file(tmp_path / "evil.bin", {"w": Tensor(storage, offset, size, stride)}, {"0": FLOATS})
    with pytest.raises(WeightFileError, match=r"non-negative integer|needs .* storage elements"):
        load_pytorch_bin(path)


def test_convert_of_an_out_of_bounds_bin_writes_nothing(tmp_path):
    config = tiny_config(num_labels=10)
    state = Cls(config).state_dict()
    storages, tensors = {}, {}
    for i, (name, value) in enumerate(state.items()):
        value = np.asarray(value, np.float32)
        storages[str(i)] = value.tobytes()
        storage = Storage(str(i), value.size)
        tensors[name] = Tensor(storage, 0, value.shape, tuple(s // 4 for s in value.strides))
    key = next(k for k, v in state.items() if k == "classifier.weight")
    tensors[key] = Tensor(tensors[key].storage, 0, (10, 1280), (-1280, 1))
    folder = tmp_path / "ckpt"
    folder.mkdir()
    bin_file(folder / "pytorch_model.bin", tensors, storages)
    config.to_json_file(folder / "config.json")
    result = run_cli("convert", str(folder), str(tmp_path / "out"))
    assert result.returncode == 1 and "non-negative integer" in result.stderr
    assert not (tmp_path / "out").exists()


def test_bin_stride_zero_that_would_blow_up_memory_is_refused(tmp_path):
    storage = Storage("0", 4)
    path = bin_file(tmp_path / "zero.bin", {"w": Tensor(storage, 0, (40000, 40000), (0, 0))}, {"0": FLOATS[:16]})
    with pytest.raises(WeightFileError, match="stride 0"):
        load_pytorch_bin(path)


def test_bin_reads_only_referenced_storages_and_refuses_compressed_ones(tmp_path):
    storage = Storage("0", 4)
    bomb = bytes(64 * 2**20)  # deflates to ~64 KiB
    path = bin_file(
        tmp_path / "bomb.bin", {"w": Tensor(storage, 0, (4,), (1,))}, {"0": FLOATS[:16], "9": bomb}, compress={"9"}
    )
    assert path.stat().st_size < 2**20
    tracemalloc.start()
    loaded = load_pytorch_bin(path)  # member 9 is never referenced: never decompressed
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert loaded["w"].tolist() == [0, 1, 2, 3] and peak < 8 * 2**20
    tensors = {"w": Tensor(storage, 0, (4,), (1,))}
    path = bin_file(tmp_path / "deflated.bin", tensors, {"0": FLOATS[:16]}, compress={"0"})
    with pytest.raises(WeightFileError, match="compressed"):
        load_pytorch_bin(path)


def test_bin_storage_larger_than_its_member_is_refused(tmp_path):
    path = bin_file(tmp_path / "big.bin", {"w": Tensor(Storage("0", 10**9), 0, (4,), (1,))}, {"0": FLOATS[:16]})
    with pytest.raises(WeightFileError, match="has 16 bytes, needs 4000000000"):
        load_pytorch_bin(path)


def test_bin_build_on_an_allowed_function_is_refused(tmp_path):
    import npmnv2.formats.torch_bin as w

    defaults = w._rebuild_tensor.__defaults__
    # GLOBAL torch._utils._rebuild_tensor_v2; BUILD (None, {"__defaults__": (1,)})
    payload = b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\nN}X\x0c\x00\x00\x00__defaults__K\x01\x85s\x86b."
    with pytest.raises(WeightFileError, match="BUILD"):
        load_pytorch_bin(raw_pickle_bin(tmp_path / "build.bin", payload))
    assert w._rebuild_tensor.__defaults__ == defaults


def test_bin_storage_of_a_non_number_type_is_refused(tmp_path):
    path = bin_file(
        tmp_path / "type.bin", {"w": Tensor(Storage("0", 4, dtype=OrderedDict), 0, (4,), (1,))}, {"0": FLOATS[:16]}
    )
    with pytest.raises(WeightFileError, match="only torch's number storages"):
        load_pytorch_bin(path)


@pytest.mark.parametrize(
    "reduce",
    [
        lambda canary: (os.system, (f"touch {canary}",)),
        lambda canary: (eval, (f"open({str(canary)!r}, 'w')",)),
        lambda canary: (subprocess.Popen, (["touch", str(canary)],)),
    ],
)
def test_code_in_a_bin_never_runs(tmp_path, reduce):
    canary = tmp_path / "canary"

    class Payload:
        def __reduce__(self):
            return reduce(canary)

    path = raw_pickle_bin(tmp_path / "rce.bin", pickle.dumps({"w": Payload()}, protocol=2))
    with pytest.raises(WeightFileError, match="refused to load the global"):
        load_pytorch_bin(path)
    result = run_cli("convert", str(path), str(tmp_path / "out"), "--task", "classification")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert not canary.exists()


# ============================================================================ writes


def test_writes_never_follow_a_planted_symlink(tmp_path, coral_dir):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    dest = tmp_path / "d"
    dest.mkdir()
    for name in ("model.safetensors.tmp", "config.json.tmp", "model.safetensors", "config.json"):
        (dest / name).symlink_to(victim)
    model = Cls(tiny_config())
    model.save_pretrained(dest)
    assert victim.read_text() == "keep me"
    assert not (dest / "model.safetensors").is_symlink() and Cls.from_pretrained(dest).config.depth_multiplier == 0.35
    result = run_cli("convert", str(coral_dir / CORAL_CLASSIFIER), str(dest), "--overwrite")
    assert result.returncode == 0, result.stderr
    assert victim.read_text() == "keep me"


def test_a_failed_write_leaves_no_temporary_file_and_no_half_folder(tmp_path, monkeypatch):
    import npmnv2.formats.torch_bin as w

    real = os.fdopen
    calls = []

    def failing(fd, *args, **kwargs):
        calls.append(fd)
        if len(calls) == 2:
            os.close(fd)
            raise OSError(28, "No space left on device")
        return real(fd, *args, **kwargs)

    monkeypatch.setattr(w.os, "fdopen", failing)
    with pytest.raises(OSError, match="No space"):
        Cls(tiny_config()).save_pretrained(tmp_path / "new")
    assert not (tmp_path / "new").exists()
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "config.json").write_text("{}")
    calls.clear()
    with pytest.raises(OSError, match="No space"):
        Cls(tiny_config()).save_pretrained(tmp_path / "old")
    assert sorted(p.name for p in (tmp_path / "old").iterdir()) == ["config.json"]
    assert (tmp_path / "old" / "config.json").read_text() == "{}"


def test_convert_overwrite_removes_a_stale_bin(tmp_path, coral_dir):
    dest = tmp_path / "d"
    dest.mkdir()
    (dest / "pytorch_model.bin").write_bytes(b"stale")
    result = run_cli("convert", str(coral_dir / CORAL_CLASSIFIER), str(dest), "--overwrite")
    assert result.returncode == 0, result.stderr
    names = sorted(p.name for p in dest.iterdir())
    assert names == ["config.json", "model.safetensors", "preprocessor_config.json"]


# ============================================================================ resources


def test_a_thin_image_is_refused_before_resizing(tmp_path):
    Image.new("RGB", (1, 20000)).save(tmp_path / "thin.png")
    with pytest.raises(ImageLoadError, match="over the limit"):
        MobileNetV2ImageProcessor()(str(tmp_path / "thin.png"))


def test_a_huge_image_size_in_config_json_is_refused_clearly(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"image_size": 100000}))
    with pytest.raises(WeightFileError, match=r"config.json.*image_size=100000 is invalid: each side must be at most"):
        MobileNetV2ImageProcessor.from_pretrained(tmp_path)


def test_a_decompression_bomb_is_an_image_error(tmp_path):
    Image.new("1", (20000, 20000)).save(tmp_path / "bomb.png")  # 400 Mpx, a few KiB
    with pytest.raises(ImageLoadError, match="too large to open safely"):
        MobileNetV2ImageProcessor()(str(tmp_path / "bomb.png"))


def test_segment_works_at_a_bounded_size_and_keeps_the_mask_full_size(tmp_path, coral_dir):
    from npmnv2.cli import main

    Image.new("RGB", (3000, 2500), (90, 120, 200)).save(tmp_path / "big.png")
    weights = coral_dir / "deeplabv3_mnv2_dm05_pascal_quant.tflite"
    args = ["segment", str(tmp_path / "big.png"), "--weights", str(weights), "-o", str(tmp_path / "o.png")]
    tracemalloc.start()
    code = main([*args, "--mask", str(tmp_path / "m.png")])
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert code == 0
    assert Image.open(tmp_path / "m.png").size == (3000, 2500)
    # full-size float32 logits alone would be 3000 * 2500 * 21 * 4 bytes = 630 MB
    assert peak < 250 * 2**20, f"segment peaked at {peak / 2**20:.0f} MiB"


@pytest.mark.parametrize("special", ["fifo", "/dev/zero", "folder"])
def test_weights_that_are_not_regular_files_are_refused(tmp_path, special):
    if special == "fifo":
        path = tmp_path / "w.safetensors"
        os.mkfifo(path)
    elif special == "folder":
        path = tmp_path / "w.safetensors"
        path.mkdir()
    else:
        path = Path(special)
    with pytest.raises(WeightFileError, match="not a regular file"):
        load_safetensors(path)
    result = run_cli("classify", "--weights", str(path), timeout=60)
    assert result.returncode == 1 and "Traceback" not in result.stderr


# ============================================================================ silent acceptance


@pytest.mark.parametrize(("suffix", "value", "message"), [
    ("layer.3.conv_3x3.convolution.weight", np.nan, "NaN or infinite"),
    ("classifier.bias", np.inf, "NaN or infinite"),
    ("layer.3.conv_3x3.normalization.running_var", -1.0, "negative variances"),
])  # fmt: skip
def test_nan_weights_and_negative_variances_are_refused(suffix, value, message):
    config = tiny_config(num_labels=3)
    state = Cls(config).state_dict()
    key = next(k for k in state if k.endswith(suffix))
    state[key] = state[key].copy()
    state[key].flat[0] = value
    with pytest.raises(ValueError, match=message):
        Cls.from_state_dict(state, config)


def test_compare_refuses_empty_pickled_or_foreign_references_and_bad_tolerances(tmp_path, coral_dir):
    weights = str(coral_dir / CORAL_CLASSIFIER)
    image = str(coral_dir / "cat.bmp")
    np.savez(tmp_path / "empty.npz")
    np.savez(tmp_path / "other.npz", foo=np.zeros(3))
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.savez(tmp_path / "objects.npz", a=np.array([{"a": 1}], dtype=object))
    (tmp_path / "notes.txt").write_text("not tensors")
    for against, message in [
        ("empty.npz", "holds no tensors"),
        ("other.npz", "nothing was compared"),
        ("objects.npz", "never unpickled"),
        ("objects.npy", "single unnamed .npy array"),
        ("notes.txt", "not an .npz file"),
    ]:
        result = run_cli("compare", image, "--weights", weights, "--against", str(tmp_path / against))
        assert result.returncode == 1 and message in result.stderr, (against, result.stderr)
        assert "allow_pickle" not in result.stderr
    for tolerance in ("nan", "-1", "inf"):
        result = run_cli("compare", image, "--weights", weights, "--against", "torch", "--tolerance", tolerance)
        assert result.returncode != 0 and "finite number >= 0" in result.stderr


def test_a_tflite_missing_its_last_byte_is_refused(tmp_path, coral_dir):
    raw = (coral_dir / CORAL_CLASSIFIER).read_bytes()
    (tmp_path / "cut.tflite").write_bytes(raw[:-1])
    with pytest.raises(WeightFileError, match="truncated or corrupt"):
        Cls.from_pretrained(tmp_path / "cut.tflite")


def test_segment_and_trace_check_their_output_paths_before_running(tmp_path, coral_dir):
    image = tmp_path / "in.png"
    Image.new("RGB", (64, 64)).save(image)
    before = image.read_bytes()
    weights = str(coral_dir / "deeplabv3_mnv2_dm05_pascal_quant.tflite")
    result = run_cli("segment", str(image), "--weights", weights, "-o", str(image))
    assert result.returncode == 1 and "would destroy it" in result.stderr and image.read_bytes() == before
    (tmp_path / "dir").mkdir()
    result = run_cli("segment", str(image), "--weights", weights, "-o", str(tmp_path / "dir"))
    assert result.returncode == 1 and "is a folder" in result.stderr and not (tmp_path / "dir.png").exists()
    result = run_cli("segment", str(image), "--weights", weights, "-o", "/nonexistent/x.png")
    assert result.returncode == 1 and "does not exist" in result.stderr
    result = run_cli("trace", str(image), "--weights", weights, "--save", str(tmp_path / "dir"))
    assert result.returncode == 1 and "is a folder" in result.stderr and not (tmp_path / "dir.npz").exists()


# ============================================================================ unclear messages


def _safetensors_with_header(path: Path, header: bytes, data: bytes = b"") -> Path:
    path.write_bytes(struct.pack("<Q", len(header)) + header + data)
    return path


def test_bad_safetensors_headers_are_explained_naming_the_file(tmp_path):
    deep = _safetensors_with_header(tmp_path / "deep.safetensors", b"[" * 100000 + b"]" * 100000)
    with pytest.raises(WeightFileError, match=r"deep\.safetensors.*not valid JSON"):
        load_safetensors(deep)
    header = json.dumps({"w": {"dtype": "F32", "shape": [True, 4], "data_offsets": [0, 16]}}).encode()
    boolean = _safetensors_with_header(tmp_path / "bool.safetensors", header, bytes(16))
    with pytest.raises(WeightFileError, match=r"bool\.safetensors"):
        load_safetensors(boolean)


@pytest.mark.parametrize(("content", "message"), [
    ("[" * 100000 + "]" * 100000, "nests its JSON too deeply"),
    ("null", "holds null, not a JSON object"),
    (json.dumps({"label2id": {"cat": "x"}}), "label2id"),
])  # fmt: skip
def test_bad_config_json_is_explained(tmp_path, content, message):
    (tmp_path / "config.json").write_text(content)
    with pytest.raises(ValueError, match=message):
        MobileNetV2Config.from_json_file(tmp_path / "config.json")


def test_num_labels_zero_with_a_classifier_names_the_config_field(tmp_path):
    model = Cls(tiny_config(num_labels=5))
    model.save_pretrained(tmp_path / "ck")
    config = json.loads((tmp_path / "ck" / "config.json").read_text())
    config.pop("id2label"), config.pop("label2id")
    config["num_labels"] = 0
    (tmp_path / "ck" / "config.json").write_text(json.dumps(config))
    image = tmp_path / "x.png"
    Image.new("RGB", (64, 64)).save(image)
    result = run_cli("classify", str(image), "--weights", str(tmp_path / "ck"))
    assert result.returncode == 1 and "num_labels" in result.stderr and "another task" not in result.stderr


def test_api_misuse_gets_clear_errors():
    model = Cls(tiny_config())
    with pytest.raises(ValueError, match="holds no image"):
        model(np.zeros((0, 3, 64, 64), np.float32))
    with pytest.raises(TypeError, match="layers must be a step name"):
        model.trace(np.zeros((1, 3, 64, 64), np.float32), layers=5)
    with pytest.raises(ValueError, match="smaller than the minimum"):
        model.summary(-5)
    with pytest.raises(TypeError, match="image_size must be an int"):
        model.summary("224")
    with pytest.raises(TypeError, match="weights source must be a path"):
        Cls.from_pretrained(None)
    with pytest.raises(TypeError, match="parameter names must be strings"):
        Cls.from_state_dict({1: np.zeros(3)}, model.config)


# ============================================================================ fuzzing the three parsers


def _small_bin(tmp: Path) -> bytes:
    torch.save({"a": torch.arange(6.0).reshape(2, 3), "b": torch.ones(4, dtype=torch.float16)}, tmp)
    return tmp.read_bytes()


@FUZZ
@given(data=st.data())
def test_fuzzed_bin_files_fail_cleanly(tmp_path, data):
    raw = bytearray(_small_bin(tmp_path / "ok.bin"))
    for _ in range(data.draw(st.integers(1, 8))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        raw = raw[: data.draw(st.integers(0, len(raw)))]
    path = tmp_path / "fuzz.bin"
    path.write_bytes(bytes(raw))
    tracemalloc.start()
    try:
        load_pytorch_bin(path)
    except WeightFileError:
        pass
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < 64 * len(raw) + 4 * 2**20


def test_a_corrupt_member_size_is_refused_before_reading(tmp_path):
    """One flipped byte in data.pkl's stored size (found by the fuzz test above) made zipfile
    allocate 16 MB for a 1.7 kB file."""
    raw = bytearray(_small_bin(tmp_path / "ok.bin"))
    raw[raw.index(b"PK\x01\x02") + 23] = 1  # data.pkl's central-directory entry: compressed size + 2**24
    (tmp_path / "bad.bin").write_bytes(bytes(raw))
    tracemalloc.start()
    try:
        with pytest.raises(WeightFileError, match="more than the whole file"):
            load_pytorch_bin(tmp_path / "bad.bin")
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < 2**20


def test_a_huge_pickle_memo_index_is_refused_before_unpickling(tmp_path):
    """The C unpickler sizes its memo by the largest PUT index: LONG_BINPUT 2**31 would ask for 32 GB."""
    _small_bin(tmp_path / "ok.bin")
    with zipfile.ZipFile(tmp_path / "ok.bin") as archive:
        members = {i.filename: archive.read(i) for i in archive.infolist()}
    members["ok/data.pkl"] = b"\x80\x02}r" + struct.pack("<I", 2**31) + b"."
    with zipfile.ZipFile(tmp_path / "memo.bin", "w", zipfile.ZIP_STORED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    tracemalloc.start()
    try:
        with pytest.raises(WeightFileError, match="memo entry 2147483648"):
            load_pytorch_bin(tmp_path / "memo.bin")
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < 2**20


_DTYPES = st.sampled_from(["F32", "F16", "BF16", "F64", "I8", "U8", "BOOL", "X9", "f32", ""])
_NUMBER = st.one_of(st.integers(-5, 2**40), st.booleans(), st.floats(allow_nan=True), st.text(max_size=3), st.none())
_ENTRY = st.fixed_dictionaries(
    {},
    optional={
        "dtype": _DTYPES,
        "shape": st.lists(_NUMBER, max_size=4),
        "data_offsets": st.lists(_NUMBER, max_size=3),
    },
)


@FUZZ
@given(header=st.dictionaries(st.text(max_size=6), st.one_of(_ENTRY, _NUMBER), max_size=4), data=st.binary(max_size=64))
def test_fuzzed_safetensors_headers_fail_cleanly(tmp_path, header, data):
    path = _safetensors_with_header(tmp_path / "fuzz.safetensors", json.dumps(header).encode(), data)
    try:
        tensors = load_safetensors(path)
    except WeightFileError:
        return
    assert sum(t.nbytes for t in tensors.values()) <= 4 * len(data) + 64


@pytest.fixture(scope="module")
def coral_tflite(coral_dir) -> bytes:
    return (coral_dir / "deeplabv3_mnv2_dm05_pascal_quant.tflite").read_bytes()


@FUZZ
@given(data=st.data())
def test_fuzzed_tflite_files_fail_cleanly(tmp_path, coral_tflite, data):
    raw = bytearray(coral_tflite)
    head = min(len(raw) - 1, 64 * 1024)  # the flatbuffer tables sit near the start; flip bits there and anywhere
    for _ in range(data.draw(st.integers(1, 6))):
        where = data.draw(st.one_of(st.integers(0, head), st.integers(0, len(raw) - 1)))
        raw[where] ^= 1 << data.draw(st.integers(0, 7))
    path = tmp_path / "fuzz.tflite"
    path.write_bytes(bytes(raw))
    try:
        npmnv2.MobileNetV2ForSemanticSegmentation.from_pretrained(path)
    except (WeightFileError, ValueError):
        pass  # a clear error (ValueError: a config that the flipped shapes no longer fit)

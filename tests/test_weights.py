"""Weight files: transformers checkpoints both ways, safe .bin reading, corrupt files, the hub cache."""

from __future__ import annotations

import json
import os
import pickle
import struct
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch
import transformers
from conftest import CORAL_CLASSIFIER, FLOAT32_RTOL, tiny_config
from torch_peer import build_pair

import npmnv2
from npmnv2 import MobileNetV2Config, NpMnV2Warning
from npmnv2 import MobileNetV2ForImageClassification as Cls
from npmnv2 import MobileNetV2ForSemanticSegmentation as Seg
from npmnv2.formats.errors import WeightFileError
from npmnv2.formats.safetensors_format import load_safetensors, save_safetensors
from npmnv2.formats.torch_bin import load_pytorch_bin

X = np.random.default_rng(0).uniform(-1, 1, size=(2, 3, 96, 96)).astype(np.float32)


def close(a, b):
    b = np.asarray(b)
    assert np.abs(np.asarray(a) - b).max() <= FLOAT32_RTOL * max(1.0, np.abs(b).max())


@pytest.mark.parametrize(
    "cls,kwargs",
    [
        (Cls, dict(depth_multiplier=0.75, num_labels=7)),
        (Seg, dict(depth_multiplier=0.5, output_stride=16, num_labels=4)),
        (npmnv2.MobileNetV2Model, dict(first_layer_is_expansion=False)),
    ],
)
def test_save_pretrained_loads_in_transformers_with_identical_outputs(tmp_path, cls, kwargs):
    hf_model, model = build_pair(cls, kwargs)
    model.save_pretrained(tmp_path)
    hf_cls = type(hf_model)
    loaded, info = hf_cls.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    with torch.no_grad():
        theirs = loaded.eval()(torch.from_numpy(X))
    ours = model(X)
    field = "last_hidden_state" if cls is npmnv2.MobileNetV2Model else "logits"
    close(getattr(ours, field), getattr(theirs, field).numpy())


def test_transformers_checkpoint_folder_loads_from_safetensors_and_bin(tmp_path):
    hf_model, _ = build_pair(Cls, dict(num_labels=5))
    hf_model.save_pretrained(tmp_path / "st")
    ours = Cls.from_pretrained(tmp_path / "st")
    with torch.no_grad():
        expected = hf_model(torch.from_numpy(X)).logits.numpy()
    close(ours(X).logits, expected)
    (tmp_path / "bin").mkdir()
    torch.save(hf_model.state_dict(), tmp_path / "bin" / "pytorch_model.bin")
    (tmp_path / "bin" / "config.json").write_text((tmp_path / "st" / "config.json").read_text())
    close(Cls.from_pretrained(tmp_path / "bin")(X).logits, expected)


def test_single_file_needs_config_argument_or_config_json_beside(tmp_path):
    model = Cls(tiny_config(num_labels=3), seed=1)
    save_safetensors(model.state_dict(), tmp_path / "w.safetensors")
    with pytest.raises(ValueError, match=r"has no config.json beside it; pass config=MobileNetV2Config"):
        Cls.from_pretrained(tmp_path / "w.safetensors")
    again = Cls.from_pretrained(tmp_path / "w.safetensors", config=model.config)
    np.testing.assert_array_equal(again(X).logits, model(X).logits)
    model.config.to_json_file(tmp_path / "config.json")
    np.testing.assert_array_equal(Cls.from_pretrained(tmp_path / "w.safetensors")(X).logits, model(X).logits)


def test_classification_checkpoint_into_segmentation_warns_and_keeps_backbone(tmp_path):
    model = Cls(tiny_config(num_labels=3), seed=1)
    model.save_pretrained(tmp_path)
    with pytest.warns(NpMnV2Warning, match=r"classifier.\*\) were dropped; this class's head \(segmentation_head.\*\)"):
        seg = Seg.from_pretrained(tmp_path)
    np.testing.assert_array_equal(seg.params["layer.7.conv_3x3"]["kernel"], model.params["layer.7.conv_3x3"]["kernel"])
    seg.save_pretrained(tmp_path / "seg")
    with pytest.warns(NpMnV2Warning, match=r"segmentation_head.\*\) were dropped; this class's head \(classifier.\*\)"):
        Cls.from_pretrained(tmp_path / "seg")
    with pytest.warns(NpMnV2Warning, match=r"unused head weights \(segmentation_head.\*\) were dropped\."):
        bare = npmnv2.MobileNetV2Model.from_pretrained(tmp_path / "seg")
    np.testing.assert_array_equal(bare.params["conv_1x1"]["kernel"], model.params["conv_1x1"]["kernel"])


def test_mismatched_checkpoint_names_the_config_it_looks_like(tmp_path):
    Cls(MobileNetV2Config(depth_multiplier=0.75, num_labels=1001)).save_pretrained(tmp_path)
    with pytest.raises(
        ValueError, match=r"wrong shape .*look like a model with depth_multiplier=0.75.*num_labels=1001"
    ):
        Cls.from_pretrained(tmp_path, config=MobileNetV2Config(num_labels=1001))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_half_bfloat16_and_double_weights_are_converted(tmp_path, dtype):
    hf_model, model = build_pair(Cls, dict(depth_multiplier=0.35, num_labels=3))
    state = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in hf_model.state_dict().items()}
    torch.save(state, tmp_path / "pytorch_model.bin")
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "model.safetensors")
    for name in ("pytorch_model.bin", "model.safetensors"):
        loaded = (load_pytorch_bin if name.endswith("bin") else load_safetensors)(tmp_path / name)
        for key, value in state.items():
            np.testing.assert_array_equal(loaded[key].astype(np.float64), value.to(torch.float64).numpy())
        m = Cls.from_pretrained(tmp_path / name, config=model.config, dtype=np.float64)
        assert m.params["conv_1x1"]["kernel"].dtype == np.float64


class _Exploit:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def _malicious_bin(path, target):
    payload = pickle.dumps({"weight": _Exploit(target)}, protocol=2)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", payload)
        archive.writestr("archive/version", "3\n")


def test_malicious_pickle_is_refused_and_nothing_runs(tmp_path):
    target = tmp_path / "pwned"
    _malicious_bin(tmp_path / "pytorch_model.bin", target)
    with pytest.raises(WeightFileError, match=r"refused to load the global (posix|os|nt)\.system"):
        load_pytorch_bin(tmp_path / "pytorch_model.bin")
    assert not target.exists()
    MobileNetV2Config().to_json_file(tmp_path / "config.json")
    with pytest.raises(WeightFileError, match="refused to load the global"):
        Cls.from_pretrained(tmp_path)
    assert not target.exists()


def test_pickle_calling_builtins_eval_is_refused(tmp_path):
    class Eval:
        def __reduce__(self):
            return (eval, ("__import__('os').system('true')",))

    with zipfile.ZipFile(tmp_path / "x.bin", "w") as archive:
        archive.writestr("x/data.pkl", pickle.dumps({"w": Eval()}, protocol=2))
    with pytest.raises(WeightFileError, match=r"refused to load the global (__builtin__|builtins).eval"):
        load_pytorch_bin(tmp_path / "x.bin")


def test_truncated_and_corrupt_files_get_clear_errors(tmp_path, coral_dir):
    model = Cls(tiny_config())
    save_safetensors(model.state_dict(), tmp_path / "good.safetensors")
    raw = (tmp_path / "good.safetensors").read_bytes()
    (tmp_path / "short.safetensors").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(WeightFileError, match=r"claims bytes .* the data section has .* bytes"):
        load_safetensors(tmp_path / "short.safetensors")
    (tmp_path / "tiny.safetensors").write_bytes(raw[:5])
    with pytest.raises(WeightFileError, match="truncated: 5 bytes"):
        load_safetensors(tmp_path / "tiny.safetensors")
    (tmp_path / "garbage.safetensors").write_bytes(struct.pack("<Q", 10) + b"not json!!")
    with pytest.raises(WeightFileError, match="header that is not valid JSON"):
        load_safetensors(tmp_path / "garbage.safetensors")

    torch.save({"w": torch.ones(100)}, tmp_path / "good.bin")
    raw = (tmp_path / "good.bin").read_bytes()
    (tmp_path / "short.bin").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(WeightFileError, match="not a zip archive: it is truncated, corrupt"):
        load_pytorch_bin(tmp_path / "short.bin")

    tflite = (coral_dir / CORAL_CLASSIFIER).read_bytes()
    for name, blob in (("short.tflite", tflite[: len(tflite) // 3]), ("junk.tflite", b"\x00" * 64)):
        (tmp_path / name).write_bytes(blob)
        with pytest.raises(WeightFileError, match=r"TFLite"):
            Cls.from_pretrained(tmp_path / name)


def test_safetensors_header_that_lies_about_sizes(tmp_path):
    data = np.arange(6, dtype=np.float32).tobytes()
    header = json.dumps({"w": {"dtype": "F32", "shape": [4, 4], "data_offsets": [0, len(data)]}}).encode()
    (tmp_path / "lie.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + data)
    with pytest.raises(
        WeightFileError, match=r"'w' of dtype F32 and shape \[4, 4\] needs 64 bytes, the header gives it 24"
    ):
        load_safetensors(tmp_path / "lie.safetensors")
    header = json.dumps({"w": {"dtype": "F32", "shape": [6], "data_offsets": [0, 10_000]}}).encode()
    (tmp_path / "lie2.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + data)
    with pytest.raises(WeightFileError, match="header that lies"):
        load_safetensors(tmp_path / "lie2.safetensors")


def test_save_pretrained_refuses_to_overwrite_a_file(tmp_path):
    (tmp_path / "file").write_text("keep me")
    with pytest.raises(FileExistsError, match="exists and is not a folder"):
        Cls(tiny_config()).save_pretrained(tmp_path / "file")
    assert (tmp_path / "file").read_text() == "keep me"


def test_missing_source_names_what_would_work(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist; give a checkpoint folder"):
        Cls.from_pretrained(tmp_path / "nothing-here")


HUB_SCRIPT = """
import sys, numpy as np, npmnv2
m = npmnv2.MobileNetV2ForImageClassification.from_pretrained(sys.argv[1])
print(m.config.num_labels, float(np.abs(m.params["classifier"]["kernel"]).sum()))
"""


def _run_hub(repo_id, cache, extra_env=None):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache), **(extra_env or {})}
    return subprocess.run([sys.executable, "-c", HUB_SCRIPT, repo_id], capture_output=True, text=True, env=env)


def test_hub_id_loads_offline_from_a_laid_out_cache(tmp_path):
    model = Cls(tiny_config(num_labels=4), seed=7)
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--google--mobilenet_v2_1.0_224"
    model.save_pretrained(repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    run = _run_hub("google/mobilenet_v2_1.0_224", tmp_path / "hub")
    assert run.returncode == 0, run.stderr
    labels, total = run.stdout.split()
    assert int(labels) == 4 and float(total) == pytest.approx(float(np.abs(model.params["classifier"]["kernel"]).sum()))


def test_hub_id_offline_and_not_cached_names_alternatives(tmp_path):
    run = _run_hub("google/deeplabv3_mobilenet_v2_1.0_513", tmp_path / "empty")
    assert run.returncode != 0
    assert "offline (HF_HUB_OFFLINE is set) and not in the local cache" in run.stderr
    assert "transformers checkpoint folder" in run.stderr and ".tflite" in run.stderr and "--weights" in run.stderr


def test_transformers_loads_what_we_convert_and_reverse_round_trip(tmp_path):
    hf_model, model = build_pair(Seg, dict(output_stride=8, num_labels=3, depth_multiplier=0.35))
    model.save_pretrained(tmp_path)
    back = Seg.from_pretrained(tmp_path)
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(back.state_dict()[name], value)
    assert transformers.MobileNetV2Config.from_pretrained(tmp_path).output_stride == 8

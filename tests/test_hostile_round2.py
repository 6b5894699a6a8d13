"""Hostile input, round 2 (issue 20), points 3, 8 and 11: float64 weights beyond float32, caps
on every size a file can set (checked before allocation), and messages that are sentences.
Each case is the one the second round found, built here.
"""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from conftest import CORAL_CLASSIFIER
from safetensors.numpy import save_file

from npmnv2 import MobileNetV2Config, MobileNetV2ForImageClassification, MobileNetV2ImageProcessor
from npmnv2.cli import main
from npmnv2.tflite.graph import TFLiteGraph
from npmnv2.tflite.integer_model import QuantizedMobileNetV2
from npmnv2.weights import WeightFileError

SMALL = {"depth_multiplier": 0.35, "image_size": 32, "num_labels": 3}


def _small_checkpoint(folder, **config):
    model = MobileNetV2ForImageClassification(MobileNetV2Config(**{**SMALL, **config}))
    model.save_pretrained(folder)
    return model


# ============================================================================ point 3


def test_float64_weights_beyond_float32_are_refused_not_turned_into_nan(tmp_path, coral_dir, capsys):
    model = _small_checkpoint(tmp_path)
    tensors = {k: np.asarray(v, np.float64) for k, v in model.state_dict().items() if v.dtype.kind == "f"}
    tensors["classifier.bias"][1] = 1e39  # finite in float64, inf in float32
    save_file(tensors, str(tmp_path / "model.safetensors"))
    code = main(["classify", str(coral_dir / "cat.bmp"), "--weights", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1
    assert "classifier.bias holds values up to 1e+39, beyond float32's largest number" in err


# ============================================================================ point 8: caps


def test_a_label_zip_bomb_appended_to_a_tflite_is_refused(tmp_path, coral_dir):
    raw = (coral_dir / CORAL_CLASSIFIER).read_bytes()
    start = raw.index(b"PK\x03\x04")
    bomb = tmp_path / "labels.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("labels.txt", b"a\n" * (8 << 20))  # 16 MiB of labels in ~16 KiB
    (tmp_path / "m.tflite").write_bytes(raw[:start] + bomb.read_bytes())
    with pytest.raises(WeightFileError, match="declares 16,777,216 bytes; npmnv2 reads label files of at most"):
        TFLiteGraph(tmp_path / "m.tflite").labels()


def test_an_npz_bomb_is_refused_from_its_declared_sizes(tmp_path):
    from npmnv2.formats.saved_arrays import read_npz

    path = tmp_path / "bomb.npz"
    np.savez_compressed(path, a=np.zeros(64 << 20, np.uint8))  # 64 MiB in ~64 KiB
    assert path.stat().st_size < 1 << 20
    with pytest.raises(WeightFileError, match=r"decompresses to .* over the budget of 1,048,576 bytes"):
        read_npz(path, "reference", budget=1 << 20)


def test_an_npz_member_whose_header_lies_about_its_size_is_refused(tmp_path):
    from npmnv2.formats.saved_arrays import read_npz

    header = np.lib.format.header_data_from_array_1_0(np.zeros(3))
    header["shape"] = (10**9,)
    with zipfile.ZipFile(tmp_path / "lie.npz", "w") as archive:
        with archive.open("a.npy", "w") as member:
            np.lib.format.write_array_header_1_0(member, header)
            member.write(np.zeros(3).tobytes())
    with pytest.raises(WeightFileError, match=r"announces a \(1000000000,\) float64 array"):
        read_npz(tmp_path / "lie.npz", "reference")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"image_size": [10000000, 32]}, "image_size=(10000000, 32) is invalid: each side must be at most 4096"),
        ({"num_labels": 200000000}, "num_labels=200000000 is invalid: expected an int between 0 and 100,000"),
        ({"depth_multiplier": 40}, "depth_multiplier=40 is invalid: must be > 0 and at most 4.0"),
        ({"expand_ratio": 1000}, "expand_ratio=1000 is invalid"),
        ({"image_size": 4096, "depth_multiplier": 4.0}, "over the limit"),
    ],
)
def test_config_sizes_are_capped_before_allocation(fields, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        MobileNetV2Config(**fields)


def test_a_backbone_checkpoint_with_depth_multiplier_40_is_refused_before_init(tmp_path, coral_dir, capsys):
    (tmp_path / "config.json").write_text(json.dumps({"depth_multiplier": 40, "num_labels": 3}))
    save_file({"x": np.zeros(1, np.float32)}, str(tmp_path / "model.safetensors"))
    code = main(["classify", str(coral_dir / "cat.bmp"), "--weights", str(tmp_path)])
    assert code == 1 and "depth_multiplier=40 is invalid" in capsys.readouterr().err


def test_preprocessor_crop_size_is_capped(tmp_path):
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"crop_size": {"height": 32, "width": 3000000}}))
    with pytest.raises(ValueError, match=r"crop_size\['width'\]=3000000 is invalid: expected an int between 1 and"):
        MobileNetV2ImageProcessor.from_pretrained(tmp_path)


def test_a_huge_preprocessor_config_is_not_read(tmp_path):
    (tmp_path / "preprocessor_config.json").write_bytes(b" " * (17 << 20) + b"{}")
    with pytest.raises(WeightFileError, match="is 17,825,794 bytes; a preprocessor config is a few KiB"):
        MobileNetV2ImageProcessor.from_pretrained(tmp_path)


def test_summary_with_a_billion_labels_is_one_line_not_a_memory_error(capsys):
    code = main(["summary", "--random", "--num-labels", "1000000000"])
    err = capsys.readouterr().err
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert "num_labels=1000000000 is invalid" in err and "MemoryError" not in err


def test_a_memory_error_is_one_sentence(monkeypatch, capsys, coral_dir):

    def exhausted(*args, **kwargs):
        raise MemoryError("Unable to allocate 2.8 GiB for an array with shape (1000000000, 1280)")

    monkeypatch.setattr(MobileNetV2ImageProcessor, "__call__", exhausted)
    code = main(["classify", str(coral_dir / "cat.bmp")])
    err = capsys.readouterr().err
    assert code == 1 and "npmnv2 classify: error: ran out of memory (Unable to allocate 2.8 GiB" in err


# ============================================================================ point 11: messages


def test_a_null_config_is_named_not_a_nonetype_error(tmp_path):
    (tmp_path / "config.json").write_text("null")
    with pytest.raises(WeightFileError, match="holds null, not a JSON object of config fields"):
        MobileNetV2ImageProcessor.from_pretrained(tmp_path)


def test_the_integer_model_runs_a_batch_of_16(coral_dir):
    model = QuantizedMobileNetV2.from_pretrained(coral_dir / CORAL_CLASSIFIER)
    x = np.random.default_rng(0).integers(0, 256, (16, 3, 224, 224)).astype(np.uint8)
    out = model(x)
    assert out.outputs[0].shape == (16, 1001)
    assert np.array_equal(out.outputs[0][5:6], model(x[5:6]).outputs[0])


def test_compare_against_a_single_npy_is_refused_clearly(tmp_path, coral_dir, capsys):
    np.save(tmp_path / "x.npy", np.zeros((1, 1001), np.float32))
    code = main(["compare", str(coral_dir / "cat.bmp"), "--against", str(tmp_path / "x.npy")])
    err = capsys.readouterr().err
    assert code == 1 and "is a single unnamed .npy array; compare matches tensors by step name" in err


def test_a_non_utf8_tensor_name_is_read_and_shown_replaced(tmp_path, coral_dir):
    from tests.tflite_edit import TFLiteEdit

    e = TFLiteEdit(coral_dir / CORAL_CLASSIFIER)
    name = e.graph.Tensors(e.op_output(0))
    start = name._tab.Vector(name._tab.Offset(10))  # Tensor.name
    e.buf[start] = 0xFF
    model = QuantizedMobileNetV2.from_pretrained(e.save(tmp_path / "m.tflite"))
    assert model.graph.name(e.op_output(0)).startswith("\ufffd")


def test_an_internal_error_names_itself_and_asks_for_a_report(monkeypatch, capsys, coral_dir):
    def broken(*args, **kwargs):
        raise KeyError(5000)

    monkeypatch.setattr(MobileNetV2ImageProcessor, "__call__", broken)
    code = main(["classify", str(coral_dir / "cat.bmp")])
    err = capsys.readouterr().err
    assert code == 1 and "npmnv2 failed unexpectedly (KeyError: 5000); this is a bug" in err


def test_labels_with_ansi_escapes_are_printed_escaped(tmp_path, coral_dir, capsys):
    _small_checkpoint(tmp_path, id2label={0: "\x1b[31mred\x1b[0m", 1: "b", 2: "c"})
    code = main(["classify", str(coral_dir / "cat.bmp"), "--weights", str(tmp_path), "--top", "3"])
    out = capsys.readouterr().out
    assert code == 0
    assert "\x1b" not in out and "\\x1b[31mred\\x1b[0m" in out

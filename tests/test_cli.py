"""The `npmnv2` command line, run as a user runs it: a subprocess, real weights and images."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import CORAL_CLASSIFIER
from PIL import Image

import npmnv2 as npmnv2_package

WEIGHTS = "mobilenet_v2_1.0_224_quant.tflite"


def npmnv2(*args, env=None):
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "npmnv2.cli", *map(str, args)], capture_output=True, text=True, env=full_env, timeout=600
    )


@pytest.fixture(scope="module")
def tflite(coral_dir):
    return coral_dir / CORAL_CLASSIFIER


def test_classify_prints_label_id_and_probability(coral_dir, tflite):
    run = npmnv2("classify", coral_dir / "cat.bmp", "--weights", tflite, "--top-k", "3")
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].endswith("cat.bmp") and len(lines) == 4
    probability, class_id, label = lines[1].split(maxsplit=2)
    assert (class_id, label) == ("286", "Egyptian cat") and abs(float(probability) - 0.762) < 0.05


def test_classify_without_image_or_weights_uses_the_embedded_model_on_the_shipped_cat():
    run = npmnv2("classify", "--json", "--top-k", "1")
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result[0]["image"].endswith("cat.jpg")
    assert result[0]["predictions"][0]["label"] == "Egyptian cat"
    notice = run.stderr.strip().splitlines()
    assert len(notice) == 1 and "embedded model" in notice[0] and "npmnv2/default" in notice[0]


def test_classify_with_weights_says_nothing_about_the_embedded_model(tflite):
    run = npmnv2("classify", "--weights", tflite, "--top-k", "1")
    assert run.returncode == 0 and "embedded" not in run.stderr


def test_classify_a_folder_in_batches_with_progress_on_stderr(tmp_path, coral_dir, tflite):
    for name in ("cat", "bird", "sunflower"):
        Image.open(coral_dir / f"{name}.bmp").save(tmp_path / f"{name}.png")
    run = npmnv2("classify", tmp_path, "--weights", tflite, "--top-k", "1", "--batch-size", "2")
    assert run.returncode == 0, run.stderr
    assert [line.split(maxsplit=2)[2] for line in run.stdout.splitlines()[1::2]] == [
        "chickadee",
        "Egyptian cat",
        "daisy",
    ]
    assert "classifying" in run.stderr and "2/2" in run.stderr


def test_segment_writes_overlay_and_mask(tmp_path, coral_dir):
    run = npmnv2(
        "segment",
        coral_dir / "bird_segmentation.bmp",
        "--weights",
        coral_dir / "deeplabv3_mnv2_pascal_quant.tflite",
        "-o",
        tmp_path / "overlay.png",
        "--mask",
        tmp_path / "mask.png",
    )
    assert run.returncode == 0, run.stderr
    assert "classes present: 0 background, 3 bird" in run.stdout
    mask = np.asarray(Image.open(tmp_path / "mask.png"))
    reference = np.asarray(Image.open(coral_dir / "bird_segmentation_mask.bmp"))
    count = int((mask == reference).sum())
    assert count / (mask.size + reference.size - count) >= 0.90
    assert Image.open(tmp_path / "overlay.png").size[0] > 300


def test_convert_tflite_to_a_transformers_folder(tmp_path, coral_dir):
    run = npmnv2("convert", coral_dir / "deeplabv3_mnv2_dm05_pascal_quant.tflite", tmp_path / "out")
    assert run.returncode == 0, run.stderr
    assert "MobileNetV2ForSemanticSegmentation" in run.stdout and "parameters: 904,373" in run.stdout
    assert '"depth_multiplier": 0.5' in run.stdout and '"depth_divisible_by": 1' in run.stdout
    assert {p.name for p in (tmp_path / "out").iterdir()} == {
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
    }
    again = npmnv2("convert", coral_dir / "deeplabv3_mnv2_dm05_pascal_quant.tflite", tmp_path / "out")
    assert again.returncode == 1 and "is not empty" in again.stderr


@pytest.mark.parametrize(
    "args,message",
    [
        (["classify", "missing.jpg", "--weights", "{tflite}"], "image 'missing.jpg' does not exist"),
        (["classify", "{notimage}", "--weights", "{tflite}"], "is not a readable image"),
        (["classify", "{cat}", "--weights", "{deeplab}"], "have no classification head"),
        (
            ["classify", "{cat}", "--weights", "google/mobilenet_v2_1.0_224"],
            "from the hub: offline (HF_HUB_OFFLINE is set) and not in the local cache",
        ),
        (["classify", "{cat}", "--weights", "{notimage}"], "unknown weight file type"),
        (["segment", "{cat}", "--weights", "{tflite}", "-o", "{out}"], "have no segmentation head"),
        (["convert", "{broken}", "{out}"], "is not a valid TFLite flatbuffer"),
    ],
)
def test_errors_are_one_line_without_traceback(tmp_path, coral_dir, tflite, args, message):
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "broken.tflite").write_bytes(b"\x00" * 100)
    values = {
        "tflite": tflite,
        "deeplab": coral_dir / "deeplabv3_mnv2_pascal_quant.tflite",
        "cat": coral_dir / "cat.bmp",
        "notimage": tmp_path / "notes.txt",
        "out": tmp_path / "o.png",
        "broken": tmp_path / "broken.tflite",
    }
    run = npmnv2(*[a.format(**values) for a in args], env={"HF_HUB_CACHE": str(tmp_path / "hub")})
    assert run.returncode == 1
    assert message in run.stderr
    assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1


def test_debug_shows_the_traceback(tflite):
    run = npmnv2("--debug", "classify", "missing.jpg", "--weights", tflite)
    assert run.returncode != 0 and "Traceback" in run.stderr


@pytest.mark.parametrize("command", [[], ["classify"], ["segment"], ["convert"]])
def test_help_documents_every_option_with_an_example(command):
    run = npmnv2(*command, "--help")
    assert run.returncode == 0
    assert "example" in run.stdout


def test_summary_prints_the_published_figures():
    run = npmnv2("summary", "--image-size", "224")  # the embedded classifier
    assert run.returncode == 0, run.stderr
    assert "input 224x224: 300,775,552 MACs (300.8M), 3,506,153 parameters" in run.stdout
    assert "3.47M without" in run.stdout and "layer.12.conv_3x3.convolution" in run.stdout
    params = [int(line.split()[3].replace(",", "")) for line in run.stdout.splitlines()[1:-1]]
    assert sum(params) == 3_506_153  # the params column counts each parameter once


def test_random_weights_need_random_and_say_so():
    run = npmnv2("summary", "--random", "--depth-multiplier", "0.5", "--image-size", "96")
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("random weights (--random, seed 0)")
    refused = npmnv2("summary", "--depth-multiplier", "0.5")
    assert refused.returncode == 1 and "add --random" in refused.stderr


def test_summary_of_a_random_segmentation_model_has_21_labels():
    run = npmnv2("summary", "--random", "--task", "segmentation", "--image-size", "65")
    assert run.returncode == 0, run.stderr
    assert "21 labels" in run.stdout and "1x21x" in run.stdout


def test_trace_without_weights_uses_the_embedded_model(coral_dir):
    run = npmnv2("trace", coral_dir / "cat.bmp", "--stop-at", "layer.1")
    assert run.returncode == 0, run.stderr
    assert "embedded model" in run.stderr and "random" not in run.stdout


def test_trace_saves_kept_tensors_and_compare_reads_them(tmp_path, coral_dir, tflite):
    run = npmnv2(
        "trace", coral_dir / "cat.bmp", "--weights", tflite, "--layers", "layer.1*", "--save", tmp_path / "a.npz"
    )
    assert run.returncode == 0, run.stderr
    with np.load(tmp_path / "a.npz") as data:
        assert "layer.12.conv_3x3.convolution" in data.files and data["layer.12"].shape == (1, 160, 7, 7)
    again = npmnv2("compare", coral_dir / "cat.bmp", "--weights", tflite, "--against", tmp_path / "a.npz")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "no divergence" in again.stdout


def test_compare_against_torch_and_tflite(coral_dir, tflite):
    run = npmnv2("compare", coral_dir / "cat.bmp", "--weights", tflite, "--against", "torch")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "158 layers compared" in run.stdout and "no divergence" in run.stdout
    progress = [line for line in run.stderr.splitlines() if line.startswith("npmnv2 compare: ")]
    assert len(progress) == 3 and "hook on every layer" in progress[1]  # what it does while torch runs
    noise = npmnv2("compare", coral_dir / "cat.bmp", "--weights", tflite, "--against", "tflite")
    assert noise.returncode == 0 and "within the quantization noise" in noise.stdout  # integer model's rounding
    assert "INFO" not in noise.stderr and "XNNPACK" not in noise.stderr  # the interpreter's log lines silenced
    strict = npmnv2("compare", coral_dir / "cat.bmp", "--weights", tflite, "--against", "tflite", "--tolerance", "1e-4")
    assert strict.returncode == 3 and "first divergence:" in strict.stdout  # integer kernels vs float at 1e-4


def test_convert_writes_files_with_the_umasks_mode(tmp_path, tflite):
    old = os.umask(0o022)
    try:
        run = npmnv2("convert", tflite, tmp_path / "out")
    finally:
        os.umask(old)
    assert run.returncode == 0, run.stderr
    assert {oct(p.stat().st_mode & 0o777) for p in (tmp_path / "out").iterdir()} == {"0o644"}


def test_convert_task_backbone_keeps_the_backbone_of_a_classifier(tmp_path, tflite):
    run = npmnv2("convert", tflite, tmp_path / "backbone", "--task", "backbone")
    assert run.returncode == 0, run.stderr
    assert "as MobileNetV2Model" in run.stdout and "classification head is left out" in run.stderr
    model = npmnv2_package.MobileNetV2Model.from_pretrained(tmp_path / "backbone")
    assert not any(k.startswith("classifier") for k in model.state_dict())


def test_segment_without_weights_offline_names_a_deeplab_file(tmp_path, coral_dir):
    run = npmnv2("segment", coral_dir / "cat.bmp", "-o", tmp_path / "o.png", env={"HF_HOME": str(tmp_path)})
    assert run.returncode == 1
    assert "deeplabv3_mnv2_pascal_quant.tflite" in run.stderr and "npmnv2 data fetch" in run.stderr
    assert "mobilenet_v2_1.0_224_quant.tflite" not in run.stderr


# ============================================================================ rough edges (issue 12)


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "npmnv2.cli", *args], capture_output=True, text=True, timeout=300,
        env={**os.environ, **(env or {})},
    )  # fmt: skip


def test_usage_errors_are_one_line_exit_1_and_say_what_is_expected():
    result = _cli("classify", "--top-k", "abc")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "npmnv2 classify: error: argument --top-k: expected a whole number >= 1, got 'abc' "
        "(see 'npmnv2 classify --help')"
    )
    assert _cli("no-such-command").returncode == 1


def test_debug_works_after_the_subcommand_too(coral_dir):
    image = str(coral_dir / "cat.bmp")
    after = _cli("trace", image, "--weights", str(coral_dir / "nope.tflite"), "--debug")
    before = _cli("--debug", "trace", image, "--weights", str(coral_dir / "nope.tflite"))
    assert "Traceback" in after.stderr and "Traceback" in before.stderr
    assert "Traceback" not in _cli("trace", image, "--weights", str(coral_dir / "nope.tflite")).stderr


def test_unknown_stop_at_is_reported_without_stray_quotes(coral_dir):
    result = _cli("trace", str(coral_dir / "cat.bmp"), "--weights", str(coral_dir / WEIGHTS), "--stop-at", "layer.99")
    assert result.returncode == 1
    assert result.stderr.startswith("npmnv2 trace: error: unknown layer 'layer.99'. Close matches: layer.9")


def test_trace_layers_prints_only_the_kept_rows_and_logits_are_n_by_l(coral_dir, tmp_path):
    result = _cli(
        "trace", str(coral_dir / "cat.bmp"), "--weights", str(coral_dir / WEIGHTS),
        "--layers", "layer.1*.expand_1x1.activation", "classifier", "--save", str(tmp_path / "acts.npz"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines()[1:-2] if line.strip()]
    assert len(rows) == 8 and rows[-1].startswith("classifier") and "1x1001 " in rows[-1]
    with np.load(tmp_path / "acts.npz") as saved:
        assert saved["classifier"].shape == (1, 1001)
    summary = _cli("summary", "--weights", str(coral_dir / WEIGHTS))
    assert "classifier" in summary.stdout and "1x1001 " in summary.stdout and "1x1001x1x1" not in summary.stdout


def test_offline_classify_from_the_hub_points_to_local_weights(tmp_path):
    result = _cli(
        "classify", "--weights", "google/mobilenet_v2_1.0_224", env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path)}
    )
    assert result.returncode == 1
    assert "--weights" in result.stderr and ".tflite" in result.stderr and "checkpoint folder" in result.stderr

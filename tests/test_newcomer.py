"""What a newcomer trips on (issue 28), each reproduced, then held: the extra README command 1 installs
runs the README's commands, one data lookup order, an offline fetch that says what to do and leaves
nothing, and the CLI's messages."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from npmnv2 import data_files

ROOT = Path(__file__).resolve().parents[1]
NPMNV2 = Path(sys.executable).with_name("npmnv2")
SHIPPED = ROOT / "npmnv2" / "data"
# What `pip install -e ".[tflite]"` does not install: blocked in the command's process (the interpreter's
# own child process starts isolated and imports only NumPy and ai-edge-litert, which the extra installs).
NOT_IN_THE_TFLITE_EXTRA = (
    "torch transformers keras onnx onnxruntime timm tensorflow jax selenium huggingface_hub anywidget IPython"
).split()
BLOCKER = """import importlib.abc, sys
BLOCKED = set({blocked!r})
class _Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, _Blocked())
"""


def _npmnv2(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(NPMNV2), *args], capture_output=True, text=True, timeout=600, env=env or os.environ.copy(), cwd=cwd
    )


@pytest.fixture(scope="module")
def tflite_extra_only(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("only-the-tflite-extra")
    (folder / "sitecustomize.py").write_text(BLOCKER.format(blocked=NOT_IN_THE_TFLITE_EXTRA))
    return {**os.environ, "PYTHONPATH": str(folder)}


README_COMMANDS = [
    ["classify", "{data}/cat.jpg"],
    ["classify", "{data}/cat.jpg", "--integer"],
    ["verify", "{data}/mobilenet_v2_1.0_224_quant.tflite", "{data}/cat.jpg"],
    ["compare", "{data}/cat.jpg", "--against", "tflite"],
    ["explain", "{data}/cat.jpg", "-o", "{out}/gradcam.png"],
    ["explore", "{data}/cat.jpg", "-o", "{out}/page.html"],
    ["summary"],
    ["trace", "{data}/cat.jpg", "--layers", "layer.3"],
    ["data", "list"],
]


@pytest.mark.parametrize("command", README_COMMANDS, ids=[" ".join(c[:2]) for c in README_COMMANDS])
def test_the_readme_commands_run_with_only_the_extra_command_1_installs(command, tflite_extra_only, tmp_path):
    """Issue 28, item 1: `verify` and `compare --against tflite` said the file was refused when
    ai-edge-litert was missing."""
    run = _npmnv2(*(c.format(data=SHIPPED, out=tmp_path) for c in command), env=tflite_extra_only)
    assert run.returncode == 0, run.stderr
    assert "refused" not in run.stderr


def test_a_command_that_needs_another_package_names_the_install_line(tflite_extra_only):
    run = _npmnv2("compare", str(SHIPPED / "cat.jpg"), "--against", "torch", env=tflite_extra_only)
    assert run.returncode == 1 and "pip install" in run.stderr and "refused" not in run.stderr


def test_a_missing_interpreter_is_named_with_its_install_line(monkeypatch):
    from npmnv2.verify import child, interpreter

    monkeypatch.setitem(child.PACKAGES, "litert", (("numpy", "numpy"), ("ai_edge_litert_missing", "ai-edge-litert")))
    with pytest.raises(child.MissingPackageError, match=r"pip install ai-edge-litert"):
        interpreter.interpreter_tensors(SHIPPED / "mobilenet_v2_1.0_224_quant.tflite", __import__("numpy").zeros(1))


# ============================================================================ one data lookup order


def test_the_library_finds_the_data_where_the_tests_do(monkeypatch, coral_dir):
    """Issue 28, item 2: the tests found ../shared/data/coral, data_dir() only $NPMNV2_DATA and the cache."""
    monkeypatch.delenv("NPMNV2_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", "/nonexistent-cache")
    assert data_files.checkout_data_dir() == ROOT.parent / "shared" / "data" / "coral"
    if coral_dir == data_files.checkout_data_dir():
        assert data_files.data_dir() == coral_dir
    assert data_files.lookup_order()[0][0] == "next to the project checkout"


def test_an_explicit_npmnv2_data_is_used_alone_never_passed_over(monkeypatch, tmp_path):
    monkeypatch.setenv("NPMNV2_DATA", str(tmp_path / "empty"))
    with pytest.raises(data_files.DataError, match=r"looked in \$NPMNV2_DATA: .*empty.*npmnv2 data fetch"):
        data_files.data_dir()


def test_data_list_shows_where_it_looked_and_the_shipped_model_as_shipped(tmp_path):
    run = _npmnv2("data", "list", "--dest", str(tmp_path))
    assert run.returncode == 0, run.stderr
    line = next(x for x in run.stdout.splitlines() if x.startswith(data_files.DEFAULT_MODEL_FILE))
    assert " shipped " in line
    assert "looked in 1." in run.stdout


# ============================================================================ fetch offline


def test_an_offline_fetch_says_what_to_do_and_leaves_no_folder(tmp_path):
    """Issue 28, item 3: the error gave no next step and left an empty folder behind."""
    dest = tmp_path / "a" / "b"
    run = _npmnv2("data", "fetch", "--dest", str(dest), "--base-url", "http://127.0.0.1:9/")
    assert run.returncode == 1
    assert "nothing was written" in run.stderr and "NPMNV2_DATA" in run.stderr and "--base-url" in run.stderr
    assert str(dest) in run.stderr
    assert not (tmp_path / "a").exists()


# ============================================================================ the CLI's messages


def test_explain_says_it_uses_the_embedded_model(tmp_path):
    run = _npmnv2("explain", str(SHIPPED / "cat.jpg"), "-o", str(tmp_path / "g.png"))
    assert run.returncode == 0 and "using the embedded model" in run.stderr


def test_data_without_an_action_asks_for_one():
    run = _npmnv2("data")
    assert run.returncode == 1 and "give an action" in run.stderr and "FILE" not in run.stderr


def test_segment_with_missing_weights_suggests_a_segmenter(tmp_path):
    run = _npmnv2("segment", str(SHIPPED / "cat.jpg"), "--weights", "missing.tflite", "-o", str(tmp_path / "s.png"))
    assert run.returncode == 1 and "DeepLabV3" in run.stderr and "embedded classifier" not in run.stderr


def test_architecture_flags_without_random_are_named_in_good_grammar():
    one = _npmnv2("summary", "--depth-multiplier", "0.5")
    two = _npmnv2("summary", "--depth-multiplier", "0.5", "--num-labels", "3")
    assert "--depth-multiplier only applies" in one.stderr and "drop it " in one.stderr
    assert "--depth-multiplier, --num-labels only apply" in two.stderr and "drop them " in two.stderr

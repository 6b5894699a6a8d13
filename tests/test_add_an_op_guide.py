"""The "How to add an op" guide of docs/architecture.md is right: its patches, applied as written
to a copy of the project, add an activation (one file) and a weightless op in the DeepLab head
(three files), and the existing tests, unedited, find and check both."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest
from conftest import CORAL_DIR, PROJECT_ROOT

GUIDE = PROJECT_ROOT / "docs" / "architecture.md"


def guide_patches() -> list[str]:
    """The ```diff blocks of the guide's "How to add an op" section, in order."""
    text = GUIDE.read_text()
    section = text[text.index("## How to add an op") :].split("\n## ", 1)[0]  # up to the next heading
    return re.findall(r"^```diff\n(.*?)^```", section, flags=re.MULTILINE | re.DOTALL)


def files_of(patch: str) -> set[str]:
    return set(re.findall(r"^\+\+\+ b/(\S+)", patch, flags=re.MULTILINE))


def test_the_guide_gives_an_activation_in_one_file_and_an_op_in_three() -> None:
    activation, weightless = guide_patches()
    assert files_of(activation) == {"npmnv2/ops/activations.py"}
    assert len(files_of(weightless)) <= 3 and "npmnv2/network.py" in files_of(weightless)


@pytest.fixture(scope="module")
def project_with_the_guide_applied(tmp_path_factory):
    copy = tmp_path_factory.mktemp("added") / "project"
    ignore = shutil.ignore_patterns(".venv", ".git", "__pycache__", "*.egg-info", "site", "build", ".*cache")
    for part in ("npmnv2", "tests", "pyproject.toml"):
        source = PROJECT_ROOT / part
        (shutil.copytree(source, copy / part, ignore=ignore) if source.is_dir() else shutil.copy(source, copy / part))
    for n, patch in enumerate(guide_patches()):
        (copy / f"recipe{n}.diff").write_text(patch)
        applied = subprocess.run(["git", "apply", f"recipe{n}.diff"], cwd=copy, capture_output=True, text=True)
        assert applied.returncode == 0, f"the guide's patch {n + 1} no longer applies: {applied.stderr}"
    return copy


def test_the_existing_tests_check_the_added_ops_unedited(project_with_the_guide_applied) -> None:
    copy = project_with_the_guide_applied
    env = {**os.environ, "PYTHONPATH": str(copy), "NPMNV2_DATA": str(CORAL_DIR)}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0", "-o", "addopts=", "-rA",
         "tests/ops/test_op_pages.py", "tests/test_fast_path.py"],
        cwd=copy, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-4000:]
    passed = [line for line in run.stdout.splitlines() if line.startswith("PASSED")]
    for op, step in (("hard_sigmoid", "activation"), ("global_max_pool", "segmentation_head.avg_pool")):
        for check in ("forward_step_gives_back", "loop_twin", "finite_differences"):
            assert any(check in line and op in line and step in line for line in passed), (op, check)


def test_the_added_ops_run_in_the_model_as_the_guide_says(project_with_the_guide_applied) -> None:
    """The trace describes the new op, and `model(x)` (the fast forward) runs it too."""
    code = """
import numpy as np
from npmnv2 import MobileNetV2Config, MobileNetV2ForSemanticSegmentation, ops
config = MobileNetV2Config(depth_multiplier=0.35, num_labels=3, hidden_act="hard_sigmoid")
model = MobileNetV2ForSemanticSegmentation(config)
x = np.random.default_rng(0).normal(size=(1, 3, 65, 65)).astype(np.float32)
trace = model.trace(x)
print(trace.step("segmentation_head.avg_pool").explain())
assert trace.step("segmentation_head.avg_pool").op is ops.max_pool.global_max_pool
assert trace.step("conv_stem.first_conv.activation").op.__name__ == "hard_sigmoid"
fast, slow = model(x).logits, trace.output.logits
assert np.abs(fast - slow).max() <= 1e-4 * max(1.0, np.abs(slow).max()), np.abs(fast - slow).max()
"""
    env = {**os.environ, "PYTHONPATH": str(project_with_the_guide_applied)}
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=project_with_the_guide_applied, env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "global max pooling" in run.stdout

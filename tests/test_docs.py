"""The documentation site builds strictly, with its figures drawn by npmnv2.viz on the real weights."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import CORAL_DIR, PROJECT_ROOT


def test_figures_are_drawn_and_the_site_builds_strictly(tmp_path, coral_dir):
    env = {**os.environ, "NPMNV2_DATA": str(CORAL_DIR), "NO_MKDOCS_2_WARNING": "1"}
    figures = subprocess.run(
        [sys.executable, "docs/make_figures.py"], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert figures.returncode == 0, figures.stderr
    assert (PROJECT_ROOT / "docs" / "figures" / "inverted_residual_layer3.png").is_file()
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    assert "depthwise_conv2d" in api and "fold_batch_norm" in api and "MobileNetV2ImageProcessor" in api
    assert (tmp_path / "site" / "concepts" / "padding" / "index.html").is_file()
    assert (tmp_path / "site" / "concepts" / "integer_inference" / "index.html").is_file()
    notebook = (tmp_path / "site" / "notebooks" / "06_how_the_integer_model_computes" / "index.html").read_text()
    assert "data:image/png;base64" in notebook  # the stored figures are on the page

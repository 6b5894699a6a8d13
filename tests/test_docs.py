"""The documentation site builds strictly, with its figures drawn by npmnv2.viz on the real weights."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import CORAL_DIR, PROJECT_ROOT


def test_the_committed_figures_are_the_ones_make_figures_draws(tmp_path, coral_dir):
    env = {**os.environ, "NPMNV2_DATA": str(CORAL_DIR)}
    drawn = tmp_path / "figures"
    figures = subprocess.run(
        [sys.executable, "docs/make_figures.py", str(drawn)],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert figures.returncode == 0, figures.stderr
    committed = {p.name for p in (PROJECT_ROOT / "docs" / "figures").glob("*.png")}
    assert {p.name for p in drawn.glob("*.png")} == committed
    tracked = subprocess.run(["git", "ls-files", "docs/figures"], cwd=PROJECT_ROOT, capture_output=True, text=True)
    if tracked.returncode == 0:  # in a git checkout the figures are committed, so a fresh clone builds the site
        assert {Path(line).name for line in tracked.stdout.split()} >= committed


def test_the_site_builds_strictly_from_the_committed_files(tmp_path, coral_dir):
    env = {**os.environ, "NPMNV2_DATA": str(CORAL_DIR), "NO_MKDOCS_2_WARNING": "1"}
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
    assert "stylesheets/extra.css" in notebook  # wide printed tables scroll instead of wrapping mid-column
    css = (tmp_path / "site" / "stylesheets" / "extra.css").read_text()
    assert "white-space: pre !important" in css and "overflow-x: auto" in css


def test_the_docs_embed_a_generated_explorer_page():
    page = PROJECT_ROOT / "docs" / "explorer" / "grace_hopper.html"
    text = page.read_text()
    assert "default-src 'none'" in text and text.count('"kind":') >= 158 and page.stat().st_size < 15 * 2**20
    assert 'src="../explorer/grace_hopper.html"' in (PROJECT_ROOT / "docs" / "explore.md").read_text()
    tracked = subprocess.run(["git", "ls-files", "docs/explorer"], cwd=PROJECT_ROOT, capture_output=True, text=True)
    if tracked.returncode == 0:
        assert "docs/explorer/grace_hopper.html" in tracked.stdout.split()

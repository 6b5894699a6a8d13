"""Every output path of every command goes through one safe, atomic, no-follow write, and two outputs
of one command may not be the same file (issue 20, point 7)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def _cli(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "npmnv2.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"})  # fmt: skip


@pytest.fixture
def victim(tmp_path):
    path = tmp_path / "victim.txt"
    path.write_text("precious")
    return path


def _planted(tmp_path, name, victim):
    link = tmp_path / name
    link.symlink_to(victim)
    return link


def test_segment_overlay_and_mask_replace_planted_links_instead_of_writing_through(coral_dir, tmp_path, victim):
    out, mask = _planted(tmp_path, "o.png", victim), _planted(tmp_path, "m.png", victim)
    run = _cli("segment", coral_dir / "bird_segmentation.bmp", "--weights",
               coral_dir / "deeplabv3_mnv2_dm05_pascal_quant.tflite", "-o", out, "--mask", mask)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert victim.read_text() == "precious"
    assert not out.is_symlink() and not mask.is_symlink() and out.stat().st_size > 1000


def test_trace_save_and_explain_replace_planted_links(coral_dir, tmp_path, victim):
    save = _planted(tmp_path, "acts.npz", victim)
    run = _cli("trace", coral_dir / "cat.bmp", "--stop-at", "layer.0", "--layers", "layer.0", "--save", save)
    assert run.returncode == 0, run.stderr
    figure = _planted(tmp_path, "cam.png", victim)
    run = _cli("explain", coral_dir / "cat.bmp", "-o", figure)
    assert run.returncode == 0, run.stderr
    assert victim.read_text() == "precious" and not save.is_symlink() and not figure.is_symlink()


def test_two_outputs_of_one_command_may_not_be_the_same_file(coral_dir, tmp_path):
    same = tmp_path / "x.png"
    run = _cli("segment", coral_dir / "bird_segmentation.bmp", "--weights",
               coral_dir / "deeplabv3_mnv2_dm05_pascal_quant.tflite", "-o", same, "--mask", same)  # fmt: skip
    assert run.returncode == 1 and "is the same file as -o" in run.stderr and not same.exists()

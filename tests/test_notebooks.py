"""Every notebook runs top to bottom, every figure shows as an image, and the stored notebooks are
current: executing them again gives the same cells and outputs (numbers within rounding, images
present but not compared byte by byte). `python notebooks/refresh.py` re-stores them."""

from __future__ import annotations

import importlib.util
import re

import nbformat
import pytest
from conftest import PROJECT_ROOT

NOTEBOOKS = sorted((PROJECT_ROOT / "notebooks").glob("*.ipynb"))
NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?")
ADDRESS = re.compile(r" at 0x[0-9a-f]+")

spec = importlib.util.spec_from_file_location("refresh", PROJECT_ROOT / "notebooks" / "refresh.py")
refresh = importlib.util.module_from_spec(spec)
spec.loader.exec_module(refresh)


def results(outputs: list) -> list:
    return [o for o in outputs if not (o["output_type"] == "stream" and o["name"] == "stderr")]


def texts(output: dict) -> str:
    if output["output_type"] == "stream":
        return output["text"]
    return output.get("data", {}).get("text/plain", "") if "data" in output else output.get("ename", "")


def same_text(stored: str, fresh: str) -> bool:
    """Equal but for numbers that differ by rounding in their last printed digits."""
    stored, fresh = ADDRESS.sub("", stored), ADDRESS.sub("", fresh)
    if NUMBER.sub("#", stored) != NUMBER.sub("#", fresh):
        return False
    for a, b in zip(NUMBER.findall(stored), NUMBER.findall(fresh), strict=True):
        decimals = len(a.split(".")[1].split("e")[0]) if "." in a else 0
        if abs(float(a) - float(b)) > max(2 * 10**-decimals, 1e-3 * abs(float(a))):
            return False
    return True


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_shows_its_figures_and_is_stored_current(path, coral_dir):
    stored = nbformat.read(path, as_version=4)
    assert path.stat().st_size < 2_000_000, f"{path.name} is {path.stat().st_size / 1e6:.1f} MB; keep it under 2 MB"
    assert stored.cells[0].cell_type == "markdown" and "You will learn" in stored.cells[0].source
    fresh = refresh.execute(path)
    images = 0
    for i, cell in enumerate(fresh.cells):
        if cell.cell_type != "code":
            continue
        for output in cell.outputs:
            data = output.get("data", {})
            shown = data.get("text/plain", "")
            if "Figure size" in shown or "Figure(" in shown:
                assert "image/png" in data, f"{path.name} cell {i}: a figure shows only as text: {shown[:60]!r}"
            images += "image/png" in data
    assert images >= 1, f"{path.name} draws no figure"
    code_stored = [c for c in stored.cells if c.cell_type == "code"]
    code_fresh = [c for c in fresh.cells if c.cell_type == "code"]
    assert [c.source for c in stored.cells] == [c.source for c in fresh.cells]
    stored_images = sum("image/png" in o.get("data", {}) for c in code_stored for o in c.outputs)
    assert stored_images == images, f"{path.name} is stored with {stored_images} figures, runs with {images}"
    for i, (old, new) in enumerate(zip(code_stored, code_fresh, strict=True)):
        # stderr is logging (the interpreter's INFO lines arrive or not, depending on timing): not compared
        old_outputs, new_outputs = results(old.outputs), results(new.outputs)
        kinds = [(o["output_type"], "image/png" in o.get("data", {})) for o in old_outputs]
        assert kinds == [(o["output_type"], "image/png" in o.get("data", {})) for o in new_outputs], (
            f"{path.name}: code cell {i} now gives other outputs than stored; run python notebooks/refresh.py"
        )
        for a, b in zip(old_outputs, new_outputs, strict=True):
            assert same_text(texts(a), texts(b)), (
                f"{path.name}: code cell {i} prints something else than stored:\n{texts(a)[:300]}\n---\n"
                f"{texts(b)[:300]}\nrun python notebooks/refresh.py"
            )

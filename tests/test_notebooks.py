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


RELATIVE = 0.05  # a printed number may move by 5% between machines (float32 noise, BLAS kernels)
SPACE = re.compile(r"\s+")


def same_text(stored: str, fresh: str) -> bool:
    """Equal but for numbers within RELATIVE of each other (or one unit of their last printed digit)
    and for whitespace: a longer number that shifts a column is no change."""
    stored, fresh = (SPACE.sub(" ", ADDRESS.sub("", t)).strip() for t in (stored, fresh))
    if SPACE.sub("", NUMBER.sub("#", stored)) != SPACE.sub("", NUMBER.sub("#", fresh)):
        return False
    for a, b in zip(NUMBER.findall(stored), NUMBER.findall(fresh), strict=True):
        decimals = len(a.split(".")[1].split("e")[0]) if "." in a else 0
        unit = 10**-decimals * (10 ** int(a.split("e")[1]) if "e" in a else 1)
        if abs(float(a) - float(b)) > max(unit, RELATIVE * max(abs(float(a)), abs(float(b)))):
            return False
    return True


def _perturbed(text: str, factor: float) -> str:
    """Every number with a decimal point times `factor`, printed at another length, and every run of
    spaces doubled: what another CPU may print."""

    def scale(match: re.Match) -> str:
        value = match.group(0)
        return f"{float(value) * factor:.6g}" if "." in value else value

    return NUMBER.sub(scale, text).replace(" ", "  ")


def test_the_notebook_check_tolerates_5_percent_and_any_whitespace_but_not_more():
    stored = nbformat.read(PROJECT_ROOT / "notebooks" / "05_verify_an_implementation.ipynb", as_version=4)
    printed = [texts(o) for c in stored.cells if c.cell_type == "code" for o in results(c.outputs)]
    floats = [t for t in printed if re.search(r"\d\.\d", t)]
    assert floats, "notebook 05 prints no float to check the tolerance on"
    for text in floats:
        assert same_text(text, _perturbed(text, 1.045)) and same_text(text, _perturbed(text, 0.955))
        assert same_text(text, text.replace("  ", " ").replace(" ", "\n", 1))
    assert not all(same_text(text, _perturbed(text, 1.2)) for text in floats)
    assert not same_text("largest error 0.25%", "largest error 0.75%")
    assert not same_text("10 blocks", "17 blocks")


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


def _requirements(extra: str | None) -> set[str]:
    """Distribution names that `pip install npmnv2[extra]` brings (core deps with extra=None),
    following npmnv2[...] self-references."""
    import tomllib

    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    specs = list(project["dependencies"]) + (project["optional-dependencies"][extra] if extra else [])
    names: set[str] = set()
    for spec in specs:
        name = re.split(r"[<>=\[; ]", spec, maxsplit=1)[0].lower()
        if name == "npmnv2":
            for inner in re.search(r"\[(.*)\]", spec).group(1).split(","):
                names |= _requirements(inner.strip())
        else:
            names.add(name.replace("_", "-"))
    return names


# what a notebook needs beyond its imports, when it calls these
IMPLIED = {
    "explore(": "anywidget",
    "tflite_activations": "ai-edge-litert",
    "tflite_integer_tensors": "ai-edge-litert",
    ".tflite": "tflite",
}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_the_notebooks_extra_installs_what_the_notebook_uses(path):
    import ast
    import importlib.metadata
    import sys

    provided = _requirements("notebooks")
    distributions = importlib.metadata.packages_distributions()
    code = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
    modules = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            modules |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module.split(".")[0])
    needed = {IMPLIED[k] for k in IMPLIED if k in code}
    for module in modules - set(sys.stdlib_module_names) - {"npmnv2"}:
        needed |= {d.lower().replace("_", "-") for d in distributions.get(module, [module])}
    assert needed <= provided, f"{path.name} needs {sorted(needed - provided)}, which .[notebooks] does not install"

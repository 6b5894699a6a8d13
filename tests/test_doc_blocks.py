"""Every ```python block of README.md and docs/ runs, in order, file by file, in a fresh folder.

The blocks of one file share a namespace (a later block may use what an earlier one defined, as a
reader going down the page would). Paths to the shared data (`../shared/data/coral/...`) are
pointed at the data folder the tests use. `pycon` blocks are doctests and run through pytest's
--doctest-glob instead.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import matplotlib
import pytest
from conftest import CORAL_DIR, PROJECT_ROOT

FENCE = re.compile(r"^(?P<indent>[ \t]*)```python\n(?P<body>.*?)^(?P=indent)```", re.MULTILINE | re.DOTALL)
FILES = [PROJECT_ROOT / "README.md", *sorted((PROJECT_ROOT / "docs").rglob("*.md"))]


def python_blocks(path: Path) -> list[tuple[int, str]]:
    """(line number, dedented code) of every ```python block."""
    text = path.read_text()
    blocks = []
    for match in FENCE.finditer(text):
        indent = len(match.group("indent"))
        lines = [line[indent:] if line.strip() else "" for line in match.group("body").splitlines()]
        blocks.append((text[: match.start()].count("\n") + 1, "\n".join(lines)))
    return blocks


WITH_BLOCKS = [p for p in FILES if python_blocks(p)]


def test_the_readme_and_the_docs_have_python_blocks():
    names = {p.relative_to(PROJECT_ROOT).as_posix() for p in WITH_BLOCKS}
    assert {"README.md", "docs/index.md", "docs/guides/verify.md", "docs/guides/weights.md"} <= names


@pytest.mark.parametrize("path", WITH_BLOCKS, ids=lambda p: p.relative_to(PROJECT_ROOT).as_posix())
def test_every_python_block_runs(path, tmp_path, coral_dir, monkeypatch):
    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__doc_block__"}
    for line, code in python_blocks(path):
        code = code.replace("../shared/data/coral", str(CORAL_DIR))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # blocks may show a warning on purpose (a head swapped, ...)
            try:
                exec(compile(code, f"{path.name}:{line}", "exec"), namespace)
            except Exception as err:
                where = f"{path.relative_to(PROJECT_ROOT)} line {line}"
                pytest.fail(f"{where}: the block fails: {type(err).__name__}: {err}")
    assert os.getcwd() == str(tmp_path)

"""Execute every notebook in this folder top to bottom and store it with its outputs:

    python notebooks/refresh.py            # all notebooks
    python notebooks/refresh.py 03         # the ones whose name contains "03"

Needs the notebook extra (`pip install -e ".[notebooks]"`) or the test extra, and the public data
(`npmnv2 data fetch`, or $NPMNV2_DATA pointing at a folder holding it). The test suite re-executes
each notebook and fails when a stored one no longer matches what its code produces
(tests/test_notebooks.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent


def execute(path: Path) -> nbformat.NotebookNode:
    """The notebook at `path`, executed in a fresh kernel with `notebooks/` as its working folder,
    with each cell's consecutive prints joined into one output (the kernel sends them in chunks
    that vary from run to run), and widget outputs stored as their static picture (text/html)."""
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(HERE)}}).execute()
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = coalesced(cell.outputs)
            for output in cell.outputs:  # a widget view needs a live kernel: keep its static picture
                output.get("data", {}).pop(WIDGET_VIEW, None)
    notebook.metadata.pop("widgets", None)  # so GitHub, nbviewer and the docs site show that picture
    return notebook


WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def coalesced(outputs: list) -> list:
    """Consecutive stream outputs of the same stream (stdout, stderr) joined into one."""
    joined: list = []
    for output in outputs:
        previous = joined[-1] if joined else None
        if (
            output.output_type == "stream"
            and previous is not None
            and previous.output_type == "stream"
            and (previous.name == output.name)
        ):
            previous.text += output.text
        else:
            joined.append(output)
    return joined


def main(patterns: list[str]) -> None:
    for path in sorted(HERE.glob("*.ipynb")):
        if patterns and not any(p in path.name for p in patterns):
            continue
        notebook = execute(path)
        for cell in notebook.cells:  # keep the stored file free of run-specific noise
            cell.get("metadata", {}).pop("execution", None)
        nbformat.write(notebook, path)
        print(f"executed and stored {path.name} ({path.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main(sys.argv[1:])

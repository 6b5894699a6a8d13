"""`model.summary(image_size)`: every layer of a model in one table (output shape, parameters, MACs),
computed by tracing a blank image of that size (`summarize`); `Summary` prints as the table and
shows as HTML in Jupyter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .architecture import MIN_INPUT_SIZE
from .tables import format_table, html_table
from .trace import TraceableModel, shape_text, trace_forward


@dataclass
class Summary:
    """Per-layer output shapes, parameters, MACs and activation memory of one forward at a size.

    total_params counts every learnable parameter, batch norm included (transformers'
    num_parameters()); bn_params is the batch-norm part; total_macs the MACs of convolutions and
    linear layers (batch 1).
    """

    rows: list[dict[str, Any]]
    total_macs: int
    total_params: int
    bn_params: int
    image_size: tuple[int, int]

    _HEAD = ("name", "kind", "output (NCHW)", "params", "MACs", "activation KiB")

    def _rows_text(self) -> list[list[str]]:
        return [
            [
                r["name"],
                r["kind"],
                shape_text(r["shape"]),
                f"{r['params']:,}",
                f"{r['macs']:,}",
                f"{r['bytes'] / 1024:,.1f}",
            ]
            for r in self.rows
        ]

    def _foot(self) -> str:
        h, w = self.image_size
        return (
            f"input {h}x{w}: {self.total_macs:,} MACs ({self.total_macs / 1e6:.1f}M), {self.total_params:,} parameters "
            f"({self.bn_params:,} in batch norm; {(self.total_params - self.bn_params) / 1e6:.2f}M without)"
        )

    def __repr__(self) -> str:
        return format_table([list(self._HEAD), *self._rows_text()]) + "\n" + self._foot()

    def _repr_html_(self) -> str:
        return html_table([list(self._HEAD), *self._rows_text()], foot=self._foot())


def summarize(model: TraceableModel, image_size: int | tuple[int, int] = 224) -> Summary:
    """`model.summary`: output shape, parameters, MACs and activation memory of every step."""
    sizes = (image_size, image_size) if isinstance(image_size, (int, np.integer)) else image_size
    if (
        isinstance(image_size, bool)
        or not isinstance(sizes, (tuple, list))
        or len(sizes) != 2
        or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in sizes)
    ):
        raise TypeError(f"summary: image_size must be an int or a pair (height, width) of ints, got {image_size!r}.")
    h, w = int(sizes[0]), int(sizes[1])
    if h < MIN_INPUT_SIZE or w < MIN_INPUT_SIZE:
        raise ValueError(
            f"summary: image_size {h}x{w} is smaller than the minimum {MIN_INPUT_SIZE}x{MIN_INPUT_SIZE}; "
            "pass a larger size, e.g. summary(224)."
        )
    if h * w > 8192 * 8192:
        raise ValueError(
            f"summary: image_size {h}x{w} is too large to trace (the limit is 8192x8192 = 67M pixels); the MACs "
            "grow with the pixel count, so summarise a smaller size and scale."
        )
    trace = trace_forward(model, np.zeros((1, model.config.num_channels, h, w), model.dtype), layers=[])
    rows = [
        {
            "name": s.name,
            "kind": s.kind,
            "shape": s.output_shape,
            "params": s.n_params,
            "macs": s.macs,
            "bytes": int(np.prod(s.output_shape)) * model.dtype.itemsize,
        }
        for s in trace.steps
    ]
    bn = sum(2 * s.c_out for s in model.specs if s.eps is not None)
    return Summary(rows, trace.total_macs, model.num_parameters(), bn, (h, w))

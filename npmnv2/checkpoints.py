"""Where weights come from: a local path or a hub id, read once into a `Checkpoint`.

`resolve_checkpoint` (from `weights`) turns a source into a local path (downloading a hub id
into the huggingface_hub cache); `read_source` reads a checkpoint folder, a weight file or a .tflite
model into transformers-named tensors. The file formats themselves are in `weights` and
`npmnv2.tflite.float_import`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from .tflite.float_import import read_tflite
from .weights import read_checkpoint, resolve_checkpoint

__all__ = ["Checkpoint", "read_source", "resolve_checkpoint"]


class Checkpoint(NamedTuple):
    """What a weights source holds, read once: transformers-named tensors, the config.json dict (or
    None), the TFLite activation quantization (or None), and where it came from (for messages)."""

    tensors: dict[str, np.ndarray]
    config: dict[str, Any] | None
    quantization: dict[str, tuple[float, int]] | None
    where: str


def read_source(path: Path) -> Checkpoint:
    """Read a resolved source (`resolve_checkpoint`): a checkpoint folder, a weight file or a .tflite."""
    if path.suffix == ".tflite":
        return Checkpoint(*read_tflite(path), str(path))
    tensors, config = read_checkpoint(path)
    return Checkpoint(tensors, config, None, str(path))

"""Checkpoint sources: a checkpoint folder, a weight file, the embedded model or a hub id, read into
transformers-named tensors and the config.json dict.

The file formats are in `npmnv2.formats` (safetensors, the restricted PyTorch `.bin` reader,
atomic writes, the hub); this module re-exports their public names, as it always has. No file is
trusted (see docs/security.md).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .data_files import DEFAULT_MODEL, default_model_path
from .formats import CONFIG_NAME, PYTORCH_NAME, SAFETENSORS_NAME
from .formats.errors import WeightFileError, regular_file
from .formats.hub import HUB_ID, download_from_hub
from .formats.json_file import read_json_object
from .formats.safetensors_format import load_safetensors, safetensors_bytes
from .formats.torch_bin import load_pytorch_bin

# What this module defines (the formats' own names are imported from `npmnv2.formats.*`; WeightFileError,
# the error every reader raises, is named here too, as the one a caller of `read_checkpoint` catches).
__all__ = [
    "WeightFileError",
    "checkpoint_files",
    "json_bytes",
    "load_tensors",
    "read_checkpoint",
    "resolve_checkpoint",
]

# ============================================================================ dtypes


# ============================================================================ safetensors


# ============================================================================ PyTorch .bin (zip + pickle)


# ============================================================================ sources


def load_tensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a .safetensors or .bin file into a dict of NumPy arrays."""
    path = regular_file(path, "weight file")
    if path.suffix == ".safetensors":
        return load_safetensors(path)
    if path.suffix in (".bin", ".pt", ".pth"):
        return load_pytorch_bin(path)
    raise WeightFileError(f"{str(path)!r}: unknown weight file type; expected .safetensors, .bin or .tflite.")


def resolve_checkpoint(source: str | os.PathLike) -> Path:
    """A local path as it is; "npmnv2/default", the embedded classifier; a hub id (owner/name) that is
    not a local path, downloaded."""
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(
            f"weights source must be a path or a hub id such as 'google/mobilenet_v2_1.0_224', got "
            f"{type(source).__name__} {source!r}."
        )
    if source == DEFAULT_MODEL:  # the classifier shipped inside the package
        return default_model_path()
    path = Path(source)
    if path.exists():
        return path
    if isinstance(source, str) and HUB_ID.match(source):
        return download_from_hub(source)
    raise FileNotFoundError(
        f"weights source {os.fspath(source)!r} does not exist; give a checkpoint folder, a .safetensors/.bin/.tflite "
        f"file, {DEFAULT_MODEL!r} (the embedded classifier), or a hub id such as 'google/mobilenet_v2_1.0_224'."
    )


def read_checkpoint(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any] | None]:
    """The tensors and the config.json dict (or None) of a folder or a single weight file."""
    if path.is_dir():
        config_path = path / CONFIG_NAME
        if (path / SAFETENSORS_NAME).is_file():
            weights_path = path / SAFETENSORS_NAME
        elif (path / PYTORCH_NAME).is_file():
            weights_path = path / PYTORCH_NAME
        else:
            raise WeightFileError(f"checkpoint folder {str(path)!r} has neither {SAFETENSORS_NAME} nor {PYTORCH_NAME}.")
    else:
        weights_path, config_path = path, path.with_name(CONFIG_NAME)
    config = read_json_object(config_path, "config") if config_path.exists() else None
    return load_tensors(weights_path), config


def checkpoint_files(tensors: Mapping[str, np.ndarray], config: dict[str, Any]) -> dict[str, bytes]:
    """The bytes of a transformers checkpoint folder: model.safetensors and config.json."""
    return {SAFETENSORS_NAME: safetensors_bytes(tensors), CONFIG_NAME: json_bytes(config)}


def json_bytes(data: Any) -> bytes:
    """Strict JSON (a NaN or inf anywhere is an error, never written as the non-JSON `NaN`)."""
    try:
        return (json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n").encode()
    except ValueError as err:
        raise WeightFileError(f"refused to write a config holding a non-finite number ({err}).") from None


# ============================================================================ TF-slim scope names

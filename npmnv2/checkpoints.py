"""Where weights come from: a local path or a hub id, read once into a `Checkpoint`.

`resolve_checkpoint` turns a source into a local path (downloading a hub id into the
huggingface_hub cache); `read_source` reads a checkpoint folder, a weight file or a .tflite
model into transformers-named tensors. The file formats themselves are in `weights` and
`tflite_import`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from .tflite_import import read_tflite
from .weights import CONFIG_NAME, PYTORCH_NAME, SAFETENSORS_NAME, WeightFileError, read_checkpoint

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def download_from_hub(repo_id: str) -> Path:
    """Fetch a transformers checkpoint folder from the Hugging Face hub (or its local cache).

    Uses huggingface_hub's normal cache (HF_HOME / HF_HUB_CACHE); with HF_HUB_OFFLINE=1 only the
    cache is read.
    """
    alternatives = (
        "Alternatives: a local transformers checkpoint folder (config.json + model.safetensors), "
        "a .safetensors/.bin file with config=, or a .tflite file."
    )
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise WeightFileError(
            f"{repo_id!r} looks like a hub id, but huggingface_hub is not installed "
            f"(pip install 'npmnv2[hub]'). {alternatives}"
        ) from None
    patterns = [CONFIG_NAME, SAFETENSORS_NAME, PYTORCH_NAME, "preprocessor_config.json"]
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns))
    except Exception as err:  # offline, not cached, unknown repo, network down ...
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
        if offline:
            why = "offline (HF_HUB_OFFLINE is set) and not in the local cache"
        else:
            why = f"not in the local cache and the hub could not be reached or refused ({type(err).__name__})"
        raise WeightFileError(f"could not get {repo_id!r} from the hub: {why}. {alternatives}") from None


def resolve_checkpoint(source: str | os.PathLike) -> Path:
    """A local path as it is; a hub id (owner/name) that is not a local path, downloaded."""
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(
            f"weights source must be a path or a hub id such as 'google/mobilenet_v2_1.0_224', got "
            f"{type(source).__name__} {source!r}."
        )
    path = Path(source)
    if path.exists():
        return path
    if isinstance(source, str) and HUB_ID.match(source):
        return download_from_hub(source)
    raise FileNotFoundError(
        f"weights source {os.fspath(source)!r} does not exist; give a checkpoint folder, a .safetensors/.bin/.tflite "
        "file, or a hub id such as 'google/mobilenet_v2_1.0_224'."
    )


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

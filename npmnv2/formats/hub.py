"""Checkpoints from the Hugging Face hub, through huggingface_hub's own cache (optional extra `npmnv2[hub]`)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from . import CONFIG_NAME, PYTORCH_NAME, SAFETENSORS_NAME
from .errors import WeightFileError

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def download_from_hub(repo_id: str) -> Path:
    """Fetch a transformers checkpoint folder from the Hugging Face hub (or its local cache).

    Uses huggingface_hub's normal cache (HF_HOME / HF_HUB_CACHE); with HF_HUB_OFFLINE=1 only the
    cache is read.
    """
    alternatives = (
        "Use local weights instead (--weights on the command line): the embedded classifier 'npmnv2/default', a "
        ".tflite file (`npmnv2 data fetch` downloads Coral's classifier and DeepLabV3 models), a transformers "
        "checkpoint folder (config.json + model.safetensors), or a .safetensors/.bin file with config=."
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

"""Shared test settings: where the real data lives, and the named tolerances."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# The scripts that made the committed ports need the producers (TensorFlow, tf2onnx): run by hand only.
collect_ignore_glob = ["ports/*.py"]
CORAL_CLASSIFIER = "mobilenet_v2_1.0_224_quant.tflite"  # the Coral uint8 ImageNet classifier (also embedded)
MARKER = CORAL_CLASSIFIER
TINY_MULTIPLIER = 0.35  # the narrowest published width: the small models most tests build


def _find_data() -> Path | None:
    """The real models and images, looked for as the library looks for them
    (`npmnv2.data_files.lookup_order`: $NPMNV2_DATA, then ../shared/data/coral next to the project,
    then the cache `npmnv2 data fetch` fills); the tests need the whole set, so the folder must
    hold the marker file."""
    from npmnv2 import data_files

    return next((folder for _, folder in data_files.lookup_order() if (folder / MARKER).is_file()), None)


FOUND = _find_data()
CORAL_DIR = FOUND if FOUND is not None else PROJECT_ROOT.parent / "shared" / "data" / "coral"


def pytest_configure(config: pytest.Config) -> None:
    """No data: stop at once with one line that says how to get it, instead of a hundred errors."""
    if FOUND is None:
        raise pytest.UsageError(
            "real test data not found ($NPMNV2_DATA, ../shared/data/coral, ~/.cache/npmnv2): run `npmnv2 data "
            "fetch` to download it (pinned SHA-256), or set NPMNV2_DATA to a folder holding it."
        )
    os.environ["NPMNV2_DATA"] = str(FOUND)  # subprocesses (CLI, notebooks, docs) use the same folder


# max |npmnv2 - torch| <= FLOAT32_RTOL * max(1, max |torch|)   (float32 runs)
FLOAT32_RTOL = 1e-4
# max |npmnv2 - torch| <= FLOAT64_RTOL * max(1, max |torch|)   (float64 runs)
FLOAT64_RTOL = 1e-10


def tolerance(dtype: np.dtype) -> float:
    return FLOAT64_RTOL if np.dtype(dtype) == np.float64 else FLOAT32_RTOL


@pytest.fixture(scope="session")
def coral_dir() -> Path:
    """The shared real-data folder. Missing data is a failure, never a skip."""
    if not (CORAL_DIR / MARKER).is_file():
        pytest.fail(f"real test data not found in {CORAL_DIR}: run `npmnv2 data fetch` or set NPMNV2_DATA.")
    return CORAL_DIR


def tiny_config(**fields):
    """A MobileNetV2Config at the narrowest published width (depth multiplier 0.35), other fields as given."""
    from npmnv2 import MobileNetV2Config

    return MobileNetV2Config(depth_multiplier=TINY_MULTIPLIER, **fields)


@pytest.fixture(scope="session")
def coral_classifier(coral_dir) -> Path:
    """The Coral uint8 ImageNet classifier in the shared data folder."""
    return coral_dir / CORAL_CLASSIFIER


@pytest.fixture(scope="session")
def cat(coral_dir) -> Path:
    """Coral's photo of a cat, the image most verify tests run on."""
    return coral_dir / "cat.bmp"


def randomised(model, seed: int = 0):
    """Random kernels and batch-norm statistics, so that folding is not the identity."""
    rng = np.random.default_rng(seed)
    for p in model.params.values():
        fan_in = np.prod(p["kernel"].shape[:-1])
        p["kernel"] = (rng.normal(size=p["kernel"].shape) / np.sqrt(fan_in)).astype(model.dtype)
        if "bias" in p:
            p["bias"] = rng.normal(0, 0.1, p["bias"].shape).astype(model.dtype)
        if "gamma" in p:
            c = p["gamma"].shape[0]
            p.update(
                gamma=rng.uniform(0.5, 1.5, c).astype(model.dtype),
                beta=rng.normal(0, 0.2, c).astype(model.dtype),
                mean=rng.normal(0, 0.2, c).astype(model.dtype),
                var=rng.uniform(0.5, 1.5, c).astype(model.dtype),
            )
    return model

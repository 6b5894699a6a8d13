"""Shared test settings: where the real data lives, and the named tolerances."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# Real TFLite models and images: ../shared/data/coral next to the project, or $NPMNV2_DATA.
CORAL_DIR = Path(os.environ.get("NPMNV2_DATA", PROJECT_ROOT.parent / "shared" / "data" / "coral"))

# max |npmnv2 - torch| <= FLOAT32_RTOL * max(1, max |torch|)   (float32 runs)
FLOAT32_RTOL = 1e-4
# max |npmnv2 - torch| <= FLOAT64_RTOL * max(1, max |torch|)   (float64 runs)
FLOAT64_RTOL = 1e-10


def tolerance(dtype: np.dtype) -> float:
    return FLOAT64_RTOL if np.dtype(dtype) == np.float64 else FLOAT32_RTOL


@pytest.fixture(scope="session")
def coral_dir() -> Path:
    """The shared real-data folder. Missing data is a failure, never a skip."""
    if not (CORAL_DIR / "mobilenet_v2_1.0_224_quant.tflite").is_file():
        pytest.fail(
            f"real test data not found in {CORAL_DIR}: lay out ../shared/data/coral next to the project "
            "or set NPMNV2_DATA to the folder holding mobilenet_v2_1.0_224_quant.tflite."
        )
    return CORAL_DIR

"""Errors and checks every weight-file reader shares: `WeightFileError`, and `regular_file`, which
refuses FIFOs, devices and folders before anything is read.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


class WeightFileError(ValueError):
    """A weight file that is corrupt, truncated, of the wrong kind, or not allowed."""


def regular_file(path: str | os.PathLike, what: str) -> Path:
    """`path` as a Path, or a WeightFileError when it is not a regular file: a FIFO would block
    forever, /dev/zero would be read until memory runs out."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except OSError as err:
        raise WeightFileError(f"{what} {str(path)!r} cannot be read ({err.strerror}).") from None
    if not stat.S_ISREG(mode):
        raise WeightFileError(
            f"{what} {str(path)!r} is not a regular file (a folder, a device or a pipe); give a weight file."
        )
    return path

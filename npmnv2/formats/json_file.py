"""A small JSON file that must hold one object (config.json, preprocessor_config.json), read with a
size limit and a clear error for anything else (docs/security.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import WeightFileError, regular_file

MAX_JSON_BYTES = 16 * 2**20  # a config is a few KiB


def read_json_object(path: Path, what: str) -> dict[str, Any]:
    """A JSON file that must hold one object (config.json, preprocessor_config.json), or a clear error."""
    path = regular_file(path, f"{what} file")
    if path.stat().st_size > MAX_JSON_BYTES:
        raise WeightFileError(f"{what} file {str(path)!r} is {path.stat().st_size:,} bytes; a {what} is a few KiB.")

    def not_a_number(constant: str) -> Any:  # NaN, Infinity: Python's json reads them, JSON has none
        raise ValueError(f"{constant} is not a JSON number; give a finite number or leave the field out")

    try:
        data = json.loads(path.read_text(encoding="utf-8"), parse_constant=not_a_number)
    except (UnicodeDecodeError, ValueError) as err:
        raise WeightFileError(f"{what} file {str(path)!r} is not valid JSON ({err}).") from None
    except RecursionError:
        raise WeightFileError(f"{what} file {str(path)!r} nests its JSON too deeply to be a {what}.") from None
    if not isinstance(data, dict):
        raise WeightFileError(
            f"{what} file {str(path)!r} holds {type(data).__name__ if data is not None else 'null'}, not a JSON "
            f"object of {what} fields."
        )
    return data

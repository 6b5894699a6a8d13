"""Writing files all or nothing, never through a planted link: `write_folder` and `write_file_atomically`."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

from ..data_files import creation_mode


def write_folder(
    directory: str | os.PathLike, files: Mapping[str, bytes], *, remove: tuple[str, ...] = (), create: bool = True
) -> Path:
    """Write several files into a folder, all or nothing, never through a planted link.

    Each file is first written to a new temporary file in the folder (`tempfile.mkstemp`: a fresh
    random name, created exclusively, so a symlink planted at a predictable name is never
    followed), then all are renamed into place (`os.replace`, which replaces a link at the
    destination instead of writing through it). If any write fails, every temporary file is
    removed, and so is the folder when this call created it. `remove` names files to delete
    after the new ones are in place (a stale `pytorch_model.bin` that would shadow new weights).
    """
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise FileExistsError(f"{str(directory)!r} exists and is not a folder; choose a folder to write into.")
    created = not directory.exists()
    if created and not create:
        raise FileNotFoundError(f"folder {str(directory)!r} does not exist.")
    directory.mkdir(parents=True, exist_ok=True)
    staged: dict[str, str] = {}
    try:
        for name, payload in files.items():
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
            staged[name] = tmp
            with os.fdopen(fd, "wb") as handle:
                handle.write(payload)
            os.chmod(tmp, creation_mode())  # mkstemp makes 0600; a written file gets the umask's mode
    except BaseException:
        for tmp in staged.values():
            Path(tmp).unlink(missing_ok=True)
        if created:
            shutil.rmtree(directory, ignore_errors=True)
        raise
    for name, tmp in staged.items():
        os.replace(tmp, directory / name)
    for name in remove:
        stale = directory / name
        if stale.is_file() or stale.is_symlink():
            stale.unlink()
    return directory


def write_file_atomically(path: Path, payload: bytes) -> None:
    """Write one file atomically (see `write_folder`)."""
    write_folder(path.parent, {path.name: payload}, create=False)

"""Foreign runtimes in a child process that cannot import from the current folder.

A runtime npmnv2 compares with (the TFLite interpreter) is native code that trusts the file it
reads, so it never runs in npmnv2's own process. `run_child` starts

    python -I /absolute/path/to/npmnv2/verify/_child.py --memory BYTES --path DIR... RUNNER ARGS...

- isolated mode (`-I`): neither the current folder nor the script's folder is on the import path,
  and PYTHON* variables and the user's site-packages are ignored;
- in a fresh, empty temporary folder (its working directory), with a clean environment (the locale,
  PATH, the temporary folder and the OpenBLAS settings that keep NumPy correct on some processors);
- importing NumPy and the runtime only from the folders this process found them in, searched
  without the current folder (`--path`);
- under an address-space limit it sets on itself: `memory_limit`, or the hard limit this process
  inherited when that is lower; and a timeout.

Every failure is one line naming the file: a missing package (with the `pip install` line), a child
that could not start within its limit (and which limit), a crash (the signal), a refusal (the
runtime's own last line), a timeout.
"""

from __future__ import annotations

import importlib.machinery
import os
import resource
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ..formats.errors import WeightFileError

SCRIPT = Path(__file__).with_name("_child.py").resolve()
KEPT_ENVIRONMENT = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
# what each runner imports: (module, the pip line that installs it)
PACKAGES = {
    "litert": (
        ("numpy", "numpy"),
        ("ai_edge_litert", 'ai-edge-litert (or: pip install -e ".[tflite]")'),
        ("flatbuffers", "flatbuffers"),  # its schema's reader and writer (every op output made a graph output)
    ),
    "onnx": (("numpy", "numpy"), ("onnx", "onnx onnxruntime"), ("onnxruntime", "onnxruntime"), ("google", "protobuf")),
}
PACKAGES["onnx_input"] = PACKAGES["onnx"]
PACKAGES["keras"] = (("numpy", "numpy"), ("keras", "keras"))  # and its backend: `run_child(backend=...)`
WHOLE_PATH = {"keras"}  # runners whose package pulls in many others: every folder of this process's path
START_FAILED, OUT_OF_MEMORY = 3, 4


class ChildError(WeightFileError):
    """A foreign runtime refused a file, crashed on it, ran out of time or memory, or is not installed."""


class MissingPackageError(ChildError, ImportError):
    """The runtime a command needs is not installed."""


@dataclass(frozen=True)
class Limits:
    """What the child may use: bytes of address space (capped by this process's own hard limit)
    and seconds of wall time."""

    memory: int
    timeout: float

    def effective_memory(self) -> tuple[int, bool]:
        """The address space the child will really get, and whether the inherited hard limit set it."""
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard != resource.RLIM_INFINITY and hard < self.memory:
            return hard, True
        return self.memory, False


def package_folders(runner: str, what: str, backend: str | None = None) -> list[str]:
    """The folders holding each package `runner` imports (and the Keras `backend`), found on this
    process's import path without the current folder; for a WHOLE_PATH runner, every folder of
    that path; raises MissingPackageError with the install line for a missing one."""
    here = Path.cwd().resolve()
    search = [p for p in sys.path if p and _resolved(p) != here]
    packages = PACKAGES[runner]
    if backend is not None:
        install = {"tensorflow": "tensorflow-cpu", "torch": "torch==2.13.0"}.get(backend, backend)
        packages = (*packages, (backend, install))
    folders = []
    for module, install in packages:
        spec = importlib.machinery.PathFinder.find_spec(module, search)
        if spec is None or not spec.submodule_search_locations:
            raise MissingPackageError(
                f"{what} needs the {module} package, which is not installed: pip install {install}"
            )
        folder = str(Path(next(iter(spec.submodule_search_locations))).resolve().parent)
        if folder not in folders:
            folders.append(folder)
    if runner in WHOLE_PATH:
        folders += [str(_resolved(p)) for p in search if _resolved(p) is not None and str(_resolved(p)) not in folders]
    return folders


def _resolved(p: str) -> Path | None:
    try:
        return Path(p).resolve()
    except OSError:
        return None


def run_child(
    runner: str,
    args: list[str],
    *,
    file: Path,
    what: str,
    limits: Limits,
    workdir: Path,
    backend: str | None = None,
) -> subprocess.CompletedProcess:
    """Run `runner` of `_child.py` with `args` (absolute paths) in `workdir` (an empty folder of
    ours); returns the finished process when it succeeded, else raises ChildError naming `file`.
    backend: the Keras backend the child runs on (its KERAS_BACKEND; its KERAS_HOME is `workdir`)."""
    folders = package_folders(runner, what, backend)
    memory, inherited = limits.effective_memory()
    command = [sys.executable, "-I", str(SCRIPT), "--memory", str(memory)]
    for folder in folders:
        command += ["--path", folder]
    command += [runner, *args]
    env = {k: os.environ[k] for k in KEPT_ENVIRONMENT if k in os.environ}
    env.update({"PYTHONWARNINGS": "ignore", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"})
    env["TMPDIR"] = str(workdir)  # whatever a runtime writes to "the temporary folder" stays in ours, and goes
    if backend is not None:
        env.update({"KERAS_BACKEND": backend, "KERAS_HOME": str(workdir), "TF_CPP_MIN_LOG_LEVEL": "3"})
    name = str(file)
    try:
        run = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=limits.timeout,
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise ChildError(f"{what} did not finish on {name!r} within {limits.timeout:g} s; it was stopped.") from None
    if run.returncode == 0:
        return run
    limit = f"{memory >> 20} MiB of address space" + (
        f" (this process's own hard limit, lower than the {limits.memory >> 20} MiB asked for)" if inherited else ""
    )
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    last = lines[-1][:300] if lines else f"exit status {run.returncode}"
    if run.returncode == -signal.SIGXFSZ:
        raise ChildError(f"{what} wrote a file larger than {1 << 30 >> 20} MiB for {name!r}; it was stopped.")
    if run.returncode < 0:
        number = -run.returncode
        signame = signal.Signals(number).name if number in signal.valid_signals() else "unknown"
        raise ChildError(f"{what} crashed on {name!r} (signal {number}, {signame}): the file is malformed.")
    out_of_memory = run.returncode == OUT_OF_MEMORY or any(
        word in run.stderr
        for word in (
            "MemoryError",
            "std::bad_alloc",
            "Cannot allocate memory",
            "Memory map failed",
            "too many memory regions",
        )
    )
    if out_of_memory:
        raise ChildError(
            f"{what} needed more than {limit} on {name!r}; raise the limit or run it where more is allowed."
        )
    if run.returncode == START_FAILED:
        raise ChildError(f"{what} could not start for {name!r} within {limit}: {last}")
    raise ChildError(f"{what} refused {name!r}: {last}")

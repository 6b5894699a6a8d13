"""The TFLite interpreter, run in a child process with a memory limit and a timeout.

The interpreter is native code that trusts the file it reads: a crafted `.tflite` can crash it
(a segfault, an abort on a failed CHECK) or make it allocate without bound. npmnv2 therefore never
loads it into its own process. `interpreter_tensors` validates the file (`TFLiteGraph`), then
starts `python -m npmnv2.verify.interpreter PATH PIXELS OUT` with an address-space limit, waits
at most `timeout` seconds, and reads back the tensors it wrote (a plain `.npz`, no pickles).
A crash becomes one line: "the TFLite interpreter crashed on FILE (signal 11): the file is malformed".
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from ..formats.errors import WeightFileError

MEMORY_LIMIT = 4 << 30  # bytes of address space the child may map (the interpreter needs ~1 GiB)
TIMEOUT = 300.0  # seconds


class InterpreterError(WeightFileError):
    """The TFLite interpreter refused a file, crashed on it, or ran out of time or memory."""


def interpreter_tensors(
    path: str | os.PathLike,
    pixels: np.ndarray,
    *,
    reference_kernels: bool = True,
    memory_limit: int = MEMORY_LIMIT,
    timeout: float = TIMEOUT,
) -> dict[int, np.ndarray]:
    """Every tensor the interpreter holds after running `pixels` (NHWC, as it takes them), by
    tensor index, computed in a child process. reference_kernels: its reference op resolver
    (`OpResolverType.BUILTIN_REF`), the kernels npmnv2's integer model reproduces bit for bit.

    The file is validated first (`npmnv2.tflite_import.TFLiteGraph`); raises InterpreterError
    naming the file when the interpreter refuses it, crashes, or exceeds the limits.
    """
    from ..tflite_import import TFLiteGraph

    path = Path(path)
    TFLiteGraph(path)  # the validator runs before the interpreter ever sees the file
    with tempfile.TemporaryDirectory(prefix="npmnv2-interpreter-") as folder:
        pixels_file, out_file = Path(folder) / "pixels.npy", Path(folder) / "tensors.npz"
        np.save(pixels_file, np.ascontiguousarray(pixels), allow_pickle=False)
        command = [sys.executable, "-m", "npmnv2.verify.interpreter", str(path), str(pixels_file), str(out_file)]
        command += ["--reference"] if reference_kernels else []
        try:
            run = subprocess.run(
                command,
                capture_output=True,
                text=True,
                timeout=timeout,
                preexec_fn=lambda: _limit_memory(memory_limit),
                env={**os.environ, "PYTHONWARNINGS": "ignore"},
            )
        except subprocess.TimeoutExpired:
            raise InterpreterError(
                f"the TFLite interpreter did not finish on {str(path)!r} within {timeout:g} s; it was stopped."
            ) from None
        if run.returncode < 0:
            number = -run.returncode
            name = signal.Signals(number).name if number in signal.valid_signals() else "unknown"
            raise InterpreterError(
                f"the TFLite interpreter crashed on {str(path)!r} (signal {number}, {name}): the file is malformed."
            )
        if run.returncode != 0:
            lines = [line for line in run.stderr.splitlines() if line.strip()]
            reason = lines[-1] if lines else f"exit status {run.returncode}"
            if "MemoryError" in run.stderr or "std::bad_alloc" in run.stderr:
                reason = f"it needed more than the {memory_limit >> 20} MiB it may use"
            raise InterpreterError(f"the TFLite interpreter refused {str(path)!r}: {reason}")
        with np.load(out_file, allow_pickle=False) as stored:
            return {int(key.removeprefix("t")): stored[key] for key in stored.files}


def _limit_memory(limit: int) -> None:
    """In the child, before it runs: cap its address space (and forbid core dumps)."""
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _child(argv: list[str]) -> int:
    """The child: run the interpreter once and write every tensor it can read to an .npz."""
    path, pixels_file, out_file = argv[:3]
    from ai_edge_litert import interpreter as litert

    kwargs = {"experimental_op_resolver_type": litert.OpResolverType.BUILTIN_REF} if "--reference" in argv else {}
    devnull = os.open(os.devnull, os.O_WRONLY)
    saved = os.dup(2)
    os.dup2(devnull, 2)  # the interpreter's INFO lines; errors are re-raised below on the real stderr
    try:
        interpreter = litert.Interpreter(model_path=path, experimental_preserve_all_tensors=True, **kwargs)
        interpreter.allocate_tensors()
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], np.load(pixels_file, allow_pickle=False))
        interpreter.invoke()
    except Exception as err:
        os.dup2(saved, 2)
        print(f"{type(err).__name__}: {err}".replace("\n", " "), file=sys.stderr)
        return 1
    os.dup2(saved, 2)
    tensors = {}
    for detail in interpreter.get_tensor_details():
        try:
            tensors[f"t{detail['index']}"] = interpreter.get_tensor(detail["index"])
        except ValueError:  # a tensor without data (an unused constant slot)
            continue
    np.savez(out_file, **tensors)
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))

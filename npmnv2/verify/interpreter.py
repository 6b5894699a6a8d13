"""The TFLite interpreter, run in an isolated child process with a memory limit and a timeout.

The interpreter is native code that trusts the file it reads: a crafted `.tflite` can crash it
(a segfault, an abort on a failed CHECK) or make it allocate without bound. npmnv2 therefore never
loads it into its own process. `interpreter_tensors` validates the file (`TFLiteGraph`), then runs
it in a child (`npmnv2.verify.child`: isolated mode, an absolute script path, an empty working
folder, a clean environment, so nothing in the current folder is ever imported), and reads back the
tensors it wrote (a plain `.npz`, no pickles). A crash becomes one line: "the TFLite interpreter
crashed on FILE (signal 11, SIGSEGV): the file is malformed".
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from .child import ChildError, Limits, run_child

MEMORY_LIMIT = 4 << 30  # bytes of address space the child may map (the interpreter needs ~1 GiB)
TIMEOUT = 300.0  # seconds
WHAT = "the TFLite interpreter"

InterpreterError = ChildError  # the name callers and tests have used since the child first ran


def interpreter_tensors(
    path: str | os.PathLike,
    pixels: np.ndarray,
    *,
    reference_kernels: bool = True,
    kernels: str | None = None,
    memory_limit: int = MEMORY_LIMIT,
    timeout: float = TIMEOUT,
) -> dict[int, np.ndarray]:
    """Every tensor the interpreter holds after running `pixels` (NHWC, as it takes them), by
    tensor index, computed in a child process. reference_kernels: its reference op resolver
    (`OpResolverType.BUILTIN_REF`), the kernels npmnv2's integer model reproduces bit for bit.
    kernels: instead, one of the kernel sets of `npmnv2.tflite.kernels` ("reference", "optimized",
    "xnnpack"), run by its own resolver: what `QuantizedMobileNetV2(..., kernels=...)` is compared with.
    XNNPACK keeps its intermediates to itself, so with kernels="xnnpack" the file runs with every op
    output made a graph output, and only those tensors (and the input) come back.

    The file is validated first (`npmnv2.tflite.graph.TFLiteGraph`); raises InterpreterError
    naming the file when the interpreter is missing, refuses the file, crashes on it, or exceeds
    the limits (memory_limit is capped by this process's own hard address-space limit).
    """
    from ..tflite.graph import TFLiteGraph

    path = Path(path).resolve()
    TFLiteGraph(path)  # the validator runs before the interpreter ever sees the file
    with tempfile.TemporaryDirectory(prefix="npmnv2-interpreter-") as folder:
        work = Path(folder)
        pixels_file, out_file = work / "pixels.npy", work / "tensors.npz"
        np.save(pixels_file, np.ascontiguousarray(pixels), allow_pickle=False)
        args = [str(path), str(pixels_file), str(out_file)]
        if kernels is not None or reference_kernels:
            from ..tflite.kernels import kernel_set

            chosen = kernel_set(kernels or "reference")
            args += ["--resolver", chosen.resolver]
            if chosen.delegate:  # its intermediates made graph outputs
                args += ["--every-op-output"]
        run_child("litert", args, file=path, what=WHAT, limits=Limits(memory_limit, timeout), workdir=work)
        with np.load(out_file, allow_pickle=False) as stored:
            return {int(key.removeprefix("t")): stored[key] for key in stored.files}

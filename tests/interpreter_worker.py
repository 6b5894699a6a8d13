"""A long-lived child process that runs the TFLite interpreter's reference kernels on one file
per request, for the differential fuzz test (starting a process per file would dominate its time).

Protocol: one request per line on stdin, "MODEL<TAB>PIXELS.npy<TAB>OUT.npz"; one reply per line on
stdout: "ok", or "refused<TAB>reason". A crash kills the process; the caller sees EOF, counts a
crash and starts a new worker.
"""

from __future__ import annotations

import os
import sys

import numpy as np


def main() -> None:
    from ai_edge_litert import interpreter as litert

    reply = os.fdopen(os.dup(1), "w", buffering=1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # the interpreter's own prints
    os.dup2(devnull, 2)
    for line in sys.stdin:
        model, pixels, out = line.rstrip("\n").split("\t")
        try:
            interpreter = litert.Interpreter(
                model_path=model,
                experimental_preserve_all_tensors=True,
                experimental_op_resolver_type=litert.OpResolverType.BUILTIN_REF,
            )
            interpreter.allocate_tensors()
            interpreter.set_tensor(interpreter.get_input_details()[0]["index"], np.load(pixels))
            interpreter.invoke()
            outputs = {f"t{d['index']}": interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()}
            np.savez(out, **outputs)
            reply.write("ok\n")
        except Exception as err:  # the interpreter refused the file
            reply.write("refused\t" + f"{type(err).__name__}: {err}".replace("\n", " ").replace("\t", " ") + "\n")


if __name__ == "__main__":
    main()

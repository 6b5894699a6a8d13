"""The body of every child process npmnv2 starts to run a foreign runtime on a file it was handed.

This file is run as a script, never imported by npmnv2: `python -I /abs/path/_child.py ...` from
`npmnv2.verify.child`. Isolated mode (`-I`) keeps the current folder, the script's folder, the user's
site-packages and every PYTHON* variable off the import path, and the parent starts it in an empty
temporary folder with a clean environment; so a `numpy.py`, `numpy/` or `ai_edge_litert/` lying
where the user runs npmnv2 is never imported. It imports only the standard library, NumPy and the
one runtime it runs, from the folders the parent found them in (`--path`).

Usage: _child.py --memory BYTES [--path DIR]... RUNNER ARGS...
Exit status: 0 done; 1 the runtime refused the file (last stderr line says why); 3 the child could not
start (an import failed); 4 out of memory within its limit.
"""

import os
import sys

START_FAILED, OUT_OF_MEMORY, REFUSED = 3, 4, 1


def _limit(memory: int) -> None:
    """Cap this process's address space at `memory` bytes, or at the hard limit it inherited when
    that is lower (a soft limit may never exceed the hard one), and forbid core dumps."""
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        memory = min(memory, hard)
    resource.setrlimit(resource.RLIMIT_AS, (memory, hard))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _say(message: str) -> None:
    """One line on stderr: the parent reports the last one."""
    print(" ".join(message.split())[:300], file=sys.stderr, flush=True)


def litert(args: list[str]) -> int:
    """Run the TFLite interpreter once on MODEL with PIXELS.npy and write every tensor it can read to
    OUT.npz (keys t<index>). --reference: its reference op resolver (BUILTIN_REF)."""
    import numpy as np
    from ai_edge_litert import interpreter as runtime

    model, pixels_file, out_file = args[:3]
    kwargs = {"experimental_op_resolver_type": runtime.OpResolverType.BUILTIN_REF} if "--reference" in args else {}
    devnull = os.open(os.devnull, os.O_WRONLY)
    saved = os.dup(2)
    os.dup2(devnull, 2)  # the interpreter's INFO lines; errors are re-raised below on the real stderr
    try:
        interpreter = runtime.Interpreter(model_path=model, experimental_preserve_all_tensors=True, **kwargs)
        interpreter.allocate_tensors()
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], np.load(pixels_file, allow_pickle=False))
        interpreter.invoke()
    except MemoryError:
        raise
    except Exception as err:
        os.dup2(saved, 2)
        _say(f"{type(err).__name__}: {err}")
        return REFUSED
    os.dup2(saved, 2)
    tensors = {}
    for detail in interpreter.get_tensor_details():
        try:
            tensors[f"t{detail['index']}"] = interpreter.get_tensor(detail["index"])
        except ValueError:  # a tensor without data (an unused constant slot)
            continue
    np.savez(out_file, **tensors)
    return 0


RUNNERS = {"litert": litert}


def main(argv: list[str]) -> int:
    memory, paths = None, []
    while argv and argv[0].startswith("--"):
        flag, value, argv = argv[0], argv[1], argv[2:]
        if flag == "--memory":
            memory = int(value)
        elif flag == "--path":
            paths.append(value)
    if memory is not None:
        _limit(memory)
    sys.path[:0] = [p for p in paths if p not in sys.path]
    runner, args = RUNNERS[argv[0]], argv[1:]
    try:
        return runner(args)
    except MemoryError:
        _say("MemoryError: out of memory")
        return OUT_OF_MEMORY
    except ImportError as err:
        _say(f"ImportError: {err}")
        return START_FAILED


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

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
HERE = os.path.dirname(os.path.abspath(__file__))


WRITE_LIMIT = 1 << 30  # bytes any one file the child writes may reach (its tensors: tens of MB)


def _limit(memory: int) -> None:
    """Cap this process's address space at `memory` bytes, or at the hard limit it inherited when
    that is lower (a soft limit may never exceed the hard one); cap the size of any file it writes;
    forbid core dumps."""
    import resource

    for which, value in ((resource.RLIMIT_AS, memory), (resource.RLIMIT_FSIZE, WRITE_LIMIT)):
        _, hard = resource.getrlimit(which)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        resource.setrlimit(which, (value, hard))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _say(message: str) -> None:
    """One line on stderr: the parent reports the last one."""
    print(" ".join(message.split())[:300], file=sys.stderr, flush=True)


def _every_op_output(model: str) -> bytes:
    """MODEL's bytes with every op's output made an output of the graph: how a delegate that keeps its
    intermediates to itself (XNNPACK) is made to write each one where it can be read. Nothing else changes."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    with open(model, "rb") as f:
        tree = schema.ModelT.InitFromPackedBuf(bytearray(f.read()), 0)
    for subgraph in tree.subgraphs:
        ops_outputs = [int(t) for op in subgraph.operators for t in op.outputs if t >= 0]
        subgraph.outputs = list(dict.fromkeys([int(t) for t in subgraph.outputs] + ops_outputs))
    builder = flatbuffers.Builder(1 << 20)
    builder.Finish(tree.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def litert(args: list[str]) -> int:
    """Run the TFLite interpreter once on MODEL with PIXELS.npy and write every tensor it can read to
    OUT.npz (keys t<index>). --resolver NAME: the OpResolverType called NAME (BUILTIN_REF: the
    reference kernels; BUILTIN_WITHOUT_DEFAULT_DELEGATES: the optimized ones; BUILTIN: the default,
    with the XNNPACK delegate); without it, the default. --every-op-output: run the file with every
    op output made a graph output (`_every_op_output`) and write only those tensors: the only way to
    read a delegate's intermediates (preserving all tensors would switch the delegate off)."""
    import numpy as np
    from ai_edge_litert import interpreter as runtime

    model, pixels_file, out_file = args[:3]
    kwargs = {}
    if "--resolver" in args:
        kwargs = {"experimental_op_resolver_type": getattr(runtime.OpResolverType, args[args.index("--resolver") + 1])}
    every_op = "--every-op-output" in args
    devnull = os.open(os.devnull, os.O_WRONLY)
    saved = os.dup(2)
    os.dup2(devnull, 2)  # the interpreter's INFO lines; errors are re-raised below on the real stderr
    try:
        if every_op:
            interpreter = runtime.Interpreter(model_content=_every_op_output(model), **kwargs)
        else:
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
    details = interpreter.get_output_details() if every_op else interpreter.get_tensor_details()
    for detail in details:
        try:
            tensors[f"t{detail['index']}"] = interpreter.get_tensor(detail["index"])
        except ValueError:  # a tensor without data (an unused constant slot)
            continue
    np.savez(out_file, **tensors)
    return 0


# What a MobileNetV2 / DeepLabV3 export contains (PyTorch's exporters, tf2onnx); no control flow, no
# custom domains: a file with anything else is refused before ONNX Runtime builds a session for it.
ONNX_OPS = {
    "Conv", "BatchNormalization", "Relu", "Clip", "Add", "Sub", "Mul", "Div", "Max", "Min",
    "GlobalAveragePool", "AveragePool", "ReduceMean", "Flatten", "Reshape", "Squeeze", "Unsqueeze",
    "Gemm", "MatMul", "Softmax", "LogSoftmax", "Transpose", "Pad", "Constant", "Identity", "Dropout",
    "Resize", "Upsample", "Concat", "Shape", "Gather", "Slice", "Cast", "ArgMax", "HardSigmoid",
    # the shape arithmetic of an export with dynamic padding (transformers' TF SAME padding)
    "ConstantOfShape", "Range", "Expand", "Mod", "ReduceMax", "ReduceMin", "NonZero", "Size",
    # elementwise math a port may hold by mistake (an extra Neg after the classifier is a bug to find)
    "Neg", "Abs", "Exp", "Log", "Sqrt", "Reciprocal", "Pow", "Sigmoid", "Tanh", "Erf", "Floor", "Ceil",
    "Round", "Sign", "Sum", "Mean", "LeakyRelu", "PRelu", "Elu", "Selu", "HardSwish", "Where", "Equal",
}  # fmt: skip


def _onnx_checked(model_path: str):
    """The ONNX model at `model_path`, or None (the reason said) when it fails the checks."""
    import onnx

    try:
        model = onnx.load(model_path, load_external_data=False)
    except Exception as err:
        _say(f"not a readable ONNX model ({type(err).__name__}: {err})")
        return None
    for tensor in model.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            _say(f"initializer {tensor.name!r} keeps its data in another file; give a self-contained .onnx")
            return None
    for node in model.graph.node:
        if node.domain not in ("", "ai.onnx") or node.op_type not in ONNX_OPS:
            _say(f"node {node.name!r} is {node.domain or 'ai.onnx'}.{node.op_type}, not an op a MobileNetV2 contains")
            return None
    return model


def onnx_input(args: list[str]) -> int:
    """Print the graph input's declared shape as JSON (a dimension without a fixed size: null)."""
    import json

    model = _onnx_checked(args[0])
    if model is None:
        return REFUSED
    inits = {t.name for t in model.graph.initializer}
    feed = next((i for i in model.graph.input if i.name not in inits), None)
    dims = (
        []
        if feed is None
        else [d.dim_value if d.HasField("dim_value") else None for d in feed.type.tensor_type.shape.dim]
    )
    print(json.dumps(dims))
    return 0


def onnx_run(args: list[str]) -> int:
    """Run ONNX Runtime once on MODEL with PIXELS.npy (NCHW; fed NHWC when the graph declares it) and
    write the graph (nodes, attributes) to OUT.json and its constants and every node's output to
    OUT.npz. The file is checked first: one file (no external data), only ONNX_OPS, default domain."""
    import json

    import numpy as np
    import onnx
    import onnxruntime as runtime
    from onnx import helper, numpy_helper

    model_path, pixels_file, out_npz, out_json = args[:4]
    model = _onnx_checked(model_path)
    if model is None:
        return REFUSED
    arrays, constants = {}, {}
    for i, tensor in enumerate(model.graph.initializer):
        arrays[f"c{i}"] = numpy_helper.to_array(tensor)
        constants[tensor.name] = f"c{i}"
    nodes = []
    for node in model.graph.node:
        attrs = {}
        for a in node.attribute:
            value = helper.get_attribute_value(a)
            if isinstance(value, onnx.TensorProto):
                key = f"c{len(arrays)}"
                arrays[key] = numpy_helper.to_array(value)
                if node.op_type == "Constant" and node.output:
                    constants[node.output[0]] = key
                continue
            if isinstance(value, bytes):
                value = value.decode("utf-8", "replace")
            elif isinstance(value, list):
                value = [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in value]
            if isinstance(value, (int, float, str, list)):
                attrs[a.name] = value
        nodes.append({"op": node.op_type, "inputs": list(node.input), "outputs": list(node.output), "attrs": attrs})
    graph_outputs = {o.name for o in model.graph.output}
    for node in model.graph.node:
        for out in node.output:
            if out and out not in graph_outputs:
                model.graph.output.append(onnx.ValueInfoProto(name=out))
                graph_outputs.add(out)
    try:
        session = runtime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        feed = session.get_inputs()[0]
        pixels = np.load(pixels_file, allow_pickle=False)
        dims = [d if isinstance(d, int) else None for d in feed.shape]
        n, c, h, w = pixels.shape
        nhwc = len(dims) == 4 and dims[3] == c and dims[1] in (h, None) and not (dims[1] == c and dims[3] in (w, None))
        fed = np.ascontiguousarray(pixels.transpose(0, 2, 3, 1) if nhwc else pixels, np.float32)
        names = [o.name for o in session.get_outputs()]
        values = session.run(names, {feed.name: fed})
    except MemoryError:
        raise
    except Exception as err:
        _say(f"{type(err).__name__}: {err}")
        return REFUSED
    produced = {}
    for name, value in zip(names, values, strict=True):
        if isinstance(value, np.ndarray):
            produced[name] = f"v{len(produced)}"
            arrays[produced[name]] = value
    arrays["fed"] = fed
    np.savez(out_npz, **arrays)
    with open(out_json, "w") as f:
        json.dump({"nodes": nodes, "constants": constants, "values": produced, "feed": feed.name, "nhwc": nhwc}, f)
    return 0


def keras_run(args: list[str]) -> int:
    """Load MODEL.keras in safe mode (no Lambda or custom code runs) and run it once on PIXELS.npy
    (NHWC) as `keras_record.py` (beside this file, loaded by its path) says; write its arrays to
    OUT.npz and its layers to OUT.json."""
    import importlib.util
    import json

    import numpy as np

    model_path, pixels_file, out_npz, out_json = args[:4]
    spec = importlib.util.spec_from_file_location("npmnv2_keras_record", os.path.join(HERE, "keras_record.py"))
    recorder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recorder)
    import keras

    try:
        model = keras.saving.load_model(model_path, compile=False, safe_mode=True)
        layers, arrays = recorder.record(keras, model, np.load(pixels_file, allow_pickle=False))
    except MemoryError:
        raise
    except Exception as err:
        _say(f"{type(err).__name__}: {err}")
        return REFUSED
    np.savez(out_npz, **arrays)
    with open(out_json, "w") as f:
        json.dump(layers, f)
    return 0


RUNNERS = {"litert": litert, "onnx": onnx_run, "onnx_input": onnx_input, "keras": keras_run}


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

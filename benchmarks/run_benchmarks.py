"""npmnv2 vs transformers (PyTorch eager, no_grad) on the CPU: same weights, same inputs, same run.

    python benchmarks/run_benchmarks.py [--repeats 20] [--quick]

Prints one row per case: npmnv2 ms, PyTorch ms (the better of two alternating rounds of
medians after warm-up), their ratio, ONNX Runtime's time (when onnx and onnxruntime are
installed) and npmnv2's peak memory (tracemalloc; weights and input excluded) next to the
largest single activation. Then what a trace costs, step by step. Outputs are checked to agree
before anything is timed. Needs the test extras (torch, transformers).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import torch
import transformers

import npmnv2
from npmnv2.trace import NO_TRACE


def median_ms(fn, repeats: int) -> float:
    """Median wall time of fn() in ms, after a pause and 3 warm-up calls. The pause lets the idle
    worker threads of whichever library ran before (OpenBLAS, OpenMP) stop spinning, so that
    neither side is timed while the other's threads still hold a core."""
    time.sleep(0.3)
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def pair(cls, config: npmnv2.MobileNetV2Config, dtype=np.float32):
    """An npmnv2 model with random weights and random batch-norm statistics, and its transformers twin."""
    rng = np.random.default_rng(0)
    model = cls(config, dtype=dtype, seed=0)
    for p in model.params.values():
        p["kernel"] = (rng.normal(size=p["kernel"].shape) / np.sqrt(np.prod(p["kernel"].shape[:-1]))).astype(dtype)
        if "gamma" in p:
            c = p["gamma"].shape[0]
            p.update(
                gamma=rng.uniform(0.5, 1.5, c).astype(dtype),
                beta=rng.normal(0, 0.2, c).astype(dtype),
                mean=rng.normal(0, 0.2, c).astype(dtype),
                var=rng.uniform(0.5, 1.5, c).astype(dtype),
            )
    return model, npmnv2.verify.transformers_twin(model)


def peak_forward_bytes(model, x) -> int:
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    model(x)
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return peak


def onnx_ms(hf, x: np.ndarray, repeats: int) -> float | None:
    """ONNX Runtime on the same model (exported from the transformers twin), or None without it."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "mobilenet_v2.onnx")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the exporter's deprecation and tracer notes
                torch.onnx.export(hf, (torch.from_numpy(x),), path, input_names=["pixel_values"], dynamo=False)
        except Exception:
            return None
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    return median_ms(lambda: session.run(None, {"pixel_values": x}), repeats)


def blas_threads() -> str:
    """How many threads NumPy's BLAS uses: through threadpoolctl when installed, else by asking
    the OpenBLAS library NumPy loaded (Linux)."""
    try:
        from threadpoolctl import threadpool_info

        blas = [i for i in threadpool_info() if i["user_api"] == "blas"]
        return ", ".join(f"{i['internal_api']} {i['num_threads']}" for i in blas)
    except ImportError:
        pass
    try:
        import ctypes
        import re

        with open("/proc/self/maps") as maps:
            path = re.findall(r"(/\S*openblas\S*\.so\S*)", maps.read())[0]
        lib = ctypes.CDLL(path)
        getter = None
        for name in ("scipy_openblas_get_num_threads64_", "openblas_get_num_threads64_", "openblas_get_num_threads"):
            if hasattr(lib, name):
                getter = getattr(lib, name)
                break
        return f"OpenBLAS {getter()}" if getter else "OpenBLAS (thread count unknown)"
    except (OSError, IndexError):
        return "unknown"


def fresh_memory_ms(shapes: list[tuple[int, ...]], repeats: int) -> float:
    """Time to allocate arrays of these shapes (float32) and write each once: what keeping them costs
    at the least, before any arithmetic."""

    def fill():
        kept = []
        for shape in shapes:
            a = np.empty(shape, np.float32)
            a.fill(1.0)
            kept.append(a)

    return median_ms(fill, repeats)


def verify_report() -> None:
    """`npmnv2 verify` of Keras's MobileNetV2 at 224, end to end in a fresh process: building the
    Keras model, reading its weights by structure, matching, judging every op, and diagnosing a
    planted ReLU-for-ReLU6 bug. The target is under 30 s on 2 cores."""
    import subprocess

    script = (
        "import os, time; t0 = time.perf_counter(); os.environ.setdefault('KERAS_BACKEND', 'torch')\n"
        "import keras, numpy as np, npmnv2\nfrom npmnv2 import verify\n"
        "t1 = time.perf_counter()\n"
        "port = keras.applications.MobileNetV2(weights=None, input_shape=(224, 224, 3))\n"
        "ref = verify.random_weights('keras', seed=0); specs = iter(ref.specs)\n"
        "for layer in port.layers:\n"
        "    k = type(layer).__name__\n"
        "    if k in ('Conv2D', 'DepthwiseConv2D', 'Dense'):\n"
        "        p = ref.params[next(specs).name]\n"
        "        w = p['kernel'][:, :, :, None] if k == 'DepthwiseConv2D' else p['kernel']\n"
        "        layer.set_weights([w] + ([p['bias']] if layer.use_bias else []))\n"
        "    elif k == 'BatchNormalization': layer.set_weights([p['gamma'], p['beta'], p['mean'], p['var']])\n"
        "def bug(layer):\n"
        "    if layer.name == 'block_5_expand_relu':\n"
        "        return keras.layers.ReLU(name=layer.name)\n"
        "    return layer.__class__.from_config(layer.get_config())\n"
        "buggy = keras.models.clone_model(port, clone_function=bug); buggy.set_weights(port.get_weights())\n"
        "t2 = time.perf_counter()\n"
        "r = verify.check(buggy, npmnv2.data_files.sample_image('cat'), config='keras')\n"
        "t3 = time.perf_counter()\n"
        "print(f'{t3 - t0:.1f} {t1 - t0:.1f} {t2 - t1:.1f} {t3 - t2:.1f} {r.cause}')\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.split()
    total, imports, build, check = (float(v) for v in out[:4])
    print("| npmnv2 verify of Keras's MobileNetV2, 224, a planted bug | seconds |")
    print("| --- | ---: |")
    print(f"| whole run, fresh process (target < 30 s) | {total:.1f} |")
    print(f"| importing Keras (torch backend) and npmnv2 | {imports:.1f} |")
    print(f"| building the Keras port and setting its weights | {build:.1f} |")
    print(f"| `verify.check`: run, read weights, match, judge every op, diagnose ({out[4]}) | {check:.1f} |")


# One real producer's port per entry, built at full size (width 1.0, 224) where the producer is run
# here: (name, KERAS_BACKEND or None, code that sets `peer` and `config`). Each is checked in a fresh
# process; the target is `verify.check` under 30 s per port on 2 cores.
_KERAS = (
    "import keras\nport = keras.applications.MobileNetV2(weights=None, input_shape=(224, 224, 3))\n"
    "verify.set_weights(port, verify.random_weights('keras', seed=0)); config = 'keras'\n"
)
_TIMM = (
    "sys.path.insert(0, str(ROOT / 'tests')); from timm_shim import import_timm; timm = import_timm()\n"
    "port = timm.create_model('mobilenetv2_100', pretrained=False).eval()\n"
    "verify.set_weights(port, verify.random_weights('torchvision', seed=0)); config = 'torchvision'\n"
)
PORTS = [
    ("Keras, torch backend", "torch", _KERAS + "peer = port\n"),
    ("Keras, TensorFlow backend", "tensorflow", _KERAS + "peer = port\n"),
    ("Keras, JAX backend", "jax", _KERAS + "peer = port\n"),
    (".keras file (isolated child, torch backend)", "torch", _KERAS + "peer = TMP / 'port.keras'; port.save(peer)\n"),
    ("timm mobilenetv2_100, eager", None, _TIMM + "peer = port\n"),
    ("timm, torch.fx", None, _TIMM + "import torch.fx\npeer = torch.fx.symbolic_trace(port)\n"),
    ("timm, torch.jit.script", None, _TIMM + "import torch\npeer = torch.jit.script(port)\n"),
    (
        "timm, ONNX (TorchScript exporter, isolated child)",
        None,
        _TIMM + "import torch\npeer = TMP / 'port.onnx'\n"
        "torch.onnx.export(port, torch.zeros(1, 3, 224, 224), str(peer), dynamo=False)\n",
    ),
    (
        "Coral uint8 .tflite (interpreter child)",
        None,
        "peer = npmnv2.data_files.data_dir() / 'mobilenet_v2_1.0_224_quant.tflite'; config = 'transformers'\n",
    ),
    (
        "TF converter int8 .tflite (0.35, 96)",
        None,
        "peer = ROOT / 'tests/ports/keras_tfconverter_int8_int8.tflite'; config = 'keras'\n",
    ),
]


def verify_ports_report() -> None:
    """`verify.check` of one port per real producer, each in a fresh process."""

    print("| port (224 unless said) | verdict | `verify.check` s | whole process s |")
    print("| --- | --- | ---: | ---: |")
    root = Path(__file__).resolve().parent.parent
    for name, backend, build in PORTS:
        script = (
            "import os, sys, time; from pathlib import Path; t0 = time.perf_counter()\n"
            f"ROOT = Path({str(root)!r}); TMP = Path(sys.argv[1])\n"
            "import numpy as np, npmnv2\nfrom npmnv2 import verify\n" + build + "t1 = time.perf_counter()\n"
            "r = verify.check(peer, npmnv2.data_files.sample_image('cat'), config=config)\n"
            "print(f'{time.perf_counter() - t1:.1f} {time.perf_counter() - t0:.1f} {r.status}')\n"
        )
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
        if backend:
            env["KERAS_BACKEND"] = backend
        with tempfile.TemporaryDirectory() as tmp:
            run = subprocess.run([sys.executable, "-c", script, tmp], capture_output=True, text=True, env=env)
        if run.returncode != 0:
            print(f"| {name} | failed: {run.stderr.strip().splitlines()[-1][:120]} | | |")
            continue
        check, total, status = run.stdout.split()[-3:]
        print(f"| {name} | {status} | {check} | {total} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="fewer repeats and no 513x513 output stride 8")
    parser.add_argument("--trace-only", action="store_true", help="only the trace table (run in a fresh process)")
    parser.add_argument("--integer-only", action="store_true", help="only the integer model against the interpreter")
    parser.add_argument("--backward-only", action="store_true", help="only forward + backward against PyTorch autograd")
    parser.add_argument("--verify-only", action="store_true", help="only npmnv2 verify of Keras's MobileNetV2")
    parser.add_argument("--explorer-only", action="store_true", help="only the explorer widget's answer times")
    args = parser.parse_args()
    repeats = 5 if args.quick else args.repeats
    if args.trace_only:
        trace_report(repeats)
        return
    if args.integer_only:
        integer_report(repeats)
        return
    if args.backward_only:
        backward_report(repeats)
        return
    if args.verify_only:
        verify_report()
        verify_ports_report()
        return
    if args.explorer_only:
        explorer_report()
        return
    rng = np.random.default_rng(0)
    Cls, Seg = npmnv2.MobileNetV2ForImageClassification, npmnv2.MobileNetV2ForSemanticSegmentation

    cases = [
        ("classification 1.0, 224, batch 1", Cls, dict(num_labels=1001), (1, 224), np.float32),
        ("classification 1.0, 224, batch 8", Cls, dict(num_labels=1001), (8, 224), np.float32),
        ("classification 1.0, 224, batch 1, float64", Cls, dict(num_labels=1001), (1, 224), np.float64),
        ("DeepLabV3 1.0, 513, output stride 16", Seg, dict(num_labels=21, output_stride=16), (1, 513), np.float32),
    ]
    if not args.quick:
        cases.append(
            ("DeepLabV3 1.0, 513, output stride 8", Seg, dict(num_labels=21, output_stride=8), (1, 513), np.float32)
        )

    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {sys.version.split()[0]}, "
        f"numpy {np.__version__}, torch {torch.__version__}, transformers {transformers.__version__}"
    )
    print(
        f"threads: npmnv2 einsum and ufuncs 1 (NumPy), its matrix products {blas_threads()}; "
        f"torch {torch.get_num_threads()}"
    )
    print(
        f"{'case':46} {'npmnv2 ms':>10} {'torch ms':>10} {'ratio':>7} {'onnxrt ms':>10} {'peak MiB':>9} "
        f"{'x largest':>9}"
    )
    rows = []
    for name, cls, kwargs, (n, size), dtype in cases:
        model, hf = pair(cls, npmnv2.MobileNetV2Config(**kwargs), dtype)
        x = rng.uniform(-1, 1, size=(n, 3, size, size)).astype(dtype)
        xt = torch.from_numpy(x)
        with torch.no_grad():
            expected = hf(xt).logits.numpy()
            ours = model(x).logits
            err = np.abs(ours - expected).max() / max(1.0, np.abs(expected).max())
            if err > (1e-4 if dtype == np.float32 else 1e-10):
                raise SystemExit(f"{name}: outputs disagree (relative error {err:.2g}); not timing.")
            # Two rounds each, alternating, and the better median of each side: one noisy
            # stretch on a shared machine does not decide the ratio.
            ours_ms, torch_ms = float("inf"), float("inf")
            for _ in range(2):
                ours_ms = min(ours_ms, median_ms(lambda m=model, x=x: m(x), repeats))
                torch_ms = min(torch_ms, median_ms(lambda m=hf, x=xt: m(x), repeats))
        ort = onnx_ms(hf, x, repeats) if dtype == np.float32 and n == 1 and cls is Cls else None
        rows.append((name, ours_ms, torch_ms))
        ort_text = f"{ort:10.1f}" if ort else f"{'-':>10}"
        peak = peak_forward_bytes(model, x)
        largest = max(int(np.prod(s.output_shape)) for s in model.trace(x, layers=[]).steps) * x.itemsize
        print(
            f"{name:46} {ours_ms:10.1f} {torch_ms:10.1f} {ours_ms / torch_ms:7.2f} {ort_text} "
            f"{peak / 2**20:9.1f} {peak / largest:9.2f}"
        )

    print("peak MiB: the forward's own allocations (tracemalloc; weights and input excluded);")
    print("x largest: that peak over the largest single activation of the forward.")
    print()
    # The trace table comes from a fresh process: what a trace costs depends on what the memory
    # allocator has seen before (after the large arrays above, freed memory is reused instead of
    # being handed back to the operating system and faulted in again).
    command = [sys.executable, __file__, "--trace-only", "--repeats", str(repeats)]
    subprocess.run(command, check=True)
    print()
    integer_report(repeats)
    print()
    backward_report(repeats)
    print()
    explorer_report()
    print()
    model, _ = pair(Cls, npmnv2.MobileNetV2Config(num_labels=1001))
    x = rng.uniform(-1, 1, size=(1, 3, 224, 224)).astype(np.float32)
    plain = median_ms(lambda: model(x), repeats)
    keep_all = median_ms(lambda: model.trace(x), repeats)
    print(f"{'  same, in this process after the cases above':46} {keep_all:10.1f} {keep_all / plain:10.2f}")


def backward_report(repeats: int) -> None:
    """Forward + backward (model.grad with the classification loss) against PyTorch eager's
    forward + loss.backward(), same weights and batch; and the backward's peak memory."""
    Cls = npmnv2.MobileNetV2ForImageClassification
    print(f"{'forward + backward (loss gradients)':46} {'npmnv2 ms':>10} {'torch ms':>10} {'ratio':>7} "
          f"{'peak MiB':>9} {'x largest':>9}")  # fmt: skip
    for n in (1, 8):
        model, hf = pair(Cls, npmnv2.MobileNetV2Config(num_labels=1001))
        rng = np.random.default_rng(1)
        x = rng.uniform(-1, 1, size=(n, 3, 224, 224)).astype(np.float32)
        labels = rng.integers(0, 1001, size=n)
        xt, lt = torch.from_numpy(x), torch.from_numpy(labels)

        def torch_step(hf=hf, xt=xt, lt=lt):
            hf.zero_grad(set_to_none=True)
            hf(xt, labels=lt).loss.backward()

        torch_step()
        ours = model.grad(x, labels=labels).gradients
        worst = max(
            np.abs(ours[k] - p.grad.numpy()).max() / max(1.0, float(p.grad.abs().max()))
            for k, p in hf.named_parameters()
            if p.grad is not None
        )
        if worst > 1e-4:
            raise SystemExit(f"backward batch {n}: gradients disagree (relative error {worst:.2g}); not timing.")
        ours_ms, torch_ms = float("inf"), float("inf")
        for _ in range(2):
            ours_ms = min(ours_ms, median_ms(lambda m=model, x=x, y=labels: m.grad(x, labels=y), max(3, repeats // 2)))
            torch_ms = min(torch_ms, median_ms(torch_step, max(3, repeats // 2)))
        tracemalloc.start()
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        model.grad(x, labels=labels)
        peak = tracemalloc.get_traced_memory()[1] - base
        tracemalloc.stop()
        largest = max(int(np.prod(s.output_shape)) for s in model.trace(x, layers=[]).steps) * x.itemsize
        print(
            f"{f'classification 1.0, 224, batch {n}, float32':46} {ours_ms:10.1f} {torch_ms:10.1f} "
            f"{ours_ms / torch_ms:7.2f} {peak / 2**20:9.1f} {peak / largest:9.2f}"
        )
    print("peak MiB: model.grad's own allocations (tracemalloc): the forward's kept tensors, the backward's")
    print("gradients and the parameter gradients; x largest: that over the largest single activation.")


def integer_report(repeats: int) -> None:
    """The integer model against the interpreter, kernel set by kernel set, on the real models, batch 1:
    npmnv2 with kernels="reference" against the interpreter's reference kernels, "optimized" against its
    optimized kernels, "xnnpack" against the XNNPACK delegate (each pair computes the same integers)."""
    from pathlib import Path

    from ai_edge_litert import interpreter as litert

    from npmnv2.verify import tflite_input

    data = Path(os.environ.get("NPMNV2_DATA", Path(__file__).resolve().parents[2] / "shared" / "data" / "coral"))
    kinds = {
        "reference": litert.OpResolverType.BUILTIN_REF,
        "optimized": litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        "xnnpack": litert.OpResolverType.BUILTIN,
    }
    print(f"{'integer model, batch 1 (npmnv2 / interpreter ms)':48} " + " ".join(f"{k:>22}" for k in kinds))
    for label, name, photo in [
        ("classifier 1.0, 224 (uint8)", "mobilenet_v2_1.0_224_quant.tflite", "cat.bmp"),
        ("TF2 classifier 224 (int8 per channel)", "tf2_mobilenet_v2_1.0_224_ptq.tflite", "cat.bmp"),
        ("DeepLabV3 1.0, 513 (uint8)", "deeplabv3_mnv2_pascal_quant.tflite", "bird_segmentation.bmp"),
    ]:
        path = data / name
        pixels, _ = tflite_input(path, data / photo)
        nchw = pixels.transpose(0, 3, 1, 2)
        cells = []
        for kernels, kind in kinds.items():
            model = npmnv2.QuantizedMobileNetV2.from_pretrained(path, kernels=kernels)
            ours = median_ms(lambda m=model, x=nchw: m(x), max(3, repeats // 3))
            interpreter = litert.Interpreter(model_path=str(path), experimental_op_resolver_type=kind, num_threads=2)
            interpreter.allocate_tensors()
            index = interpreter.get_input_details()[0]["index"]

            def run(it=interpreter, i=index, x=pixels):
                it.set_tensor(i, x)
                it.invoke()

            theirs = median_ms(run, max(3, repeats // 3))
            cells.append(f"{ours:5.0f} / {theirs:6.1f} ({ours / theirs:5.2f}x)")
        print(f"{label:48} " + " ".join(f"{c:>22}" for c in cells), flush=True)
    print("(x: npmnv2's time over the interpreter's, each pair computing the same integers; target <= 0.5x reference)")


def trace_report(repeats: int) -> None:
    """What a trace of the batch-1 224 classifier costs, part by part, next to the plain forward."""
    model, _ = pair(npmnv2.MobileNetV2ForImageClassification, npmnv2.MobileNetV2Config(num_labels=1001))
    x = np.random.default_rng(0).uniform(-1, 1, size=(1, 3, 224, 224)).astype(np.float32)
    plain = median_ms(lambda: model(x), repeats)
    explicit = median_ms(lambda: model(x, rec=NO_TRACE), repeats)
    keep_none = median_ms(lambda: model.trace(x, layers=[]), repeats)
    keep_all = median_ms(lambda: model.trace(x), repeats)
    early = median_ms(lambda: model.trace(x, layers=[], stop_at="layer.3"), repeats)
    full_steps = model.trace(x, layers=[]).steps
    early_steps = model.trace(x, layers=[], stop_at="layer.3").steps
    macs = sum(s.macs for s in early_steps) / sum(s.macs for s in full_steps)
    nbytes = sum(np.prod(s.output_shape) for s in early_steps) / sum(np.prod(s.output_shape) for s in full_steps)
    kept = [s.output.shape for s in model.trace(x).steps if s.output is not None]
    kept_mib = sum(np.prod(k) for k in kept) * 4 / 2**20
    print(f"{'trace, batch 1 at 224, in a fresh process':46} {'ms':>10} {'x plain':>10}")
    for label, ms in [
        ("plain forward (folded, in place)", plain),
        ("step-by-step path, nothing recorded", explicit),
        ("trace keeping no tensor", keep_none),
        (f"trace keeping every tensor ({kept_mib:.0f} MiB)", keep_all),
        (f"  writing {kept_mib:.0f} MiB of new arrays, no arithmetic", fresh_memory_ms(kept, repeats)),
        (f"trace stop_at layer.3 ({macs:.0%} of MACs, {nbytes:.0%} of bytes)", early),
    ]:
        print(f"{label:46} {ms:10.1f} {ms / plain:10.2f}", flush=True)
    print(f"{'  (stop_at layer.3 / trace keeping no tensor)':46} {'':10} {early / keep_none:10.2f}", flush=True)


def explorer_report() -> None:
    """The explorer widget's answers on the real 224 classifier, trace cached: every step's first
    visit (the payload computed from the cached trace: tiles, kernel, source), a channel at full
    resolution, and an intervention (the network re-run from one step). Target: a step change in
    under 300 ms on 2 cores."""
    import time

    from npmnv2.data_files import sample_image

    model = npmnv2.MobileNetV2ForImageClassification.from_pretrained("npmnv2/default")
    started = time.perf_counter()
    widget = npmnv2.explore(model, sample_image("cat"))
    opened = (time.perf_counter() - started) * 1000

    def timed(request: dict) -> float:
        start = time.perf_counter()
        answer = widget.handle(request)
        assert answer["type"] != "error", answer
        return (time.perf_counter() - start) * 1000

    steps = [timed({"type": "step", "name": name}) for name in widget.overview["steps"]]
    again = [timed({"type": "step", "name": name}) for name in widget.overview["steps"]]
    channel = timed({"type": "channel", "name": "conv_stem.first_conv.activation", "channel": 3})
    intervene = timed(
        {"type": "intervene", "name": "layer.6.reduce_1x1.normalization", "kind": "relu6_after_bottleneck"}
    )
    print(f"{'explorer widget, 224 classifier (trace cached)':46} {'ms':>10}")
    for label, ms in [
        ("open: trace + prediction + overview", opened),
        (f"step change, first visit: median of {len(steps)}", float(np.median(steps))),
        ("step change, first visit: slowest step", max(steps)),
        ("step change, visited before: median", float(np.median(again))),
        ("one channel at full resolution", channel),
        ("intervention (run_from layer.6)", intervene),
    ]:
        print(f"{label:46} {ms:10.1f}", flush=True)


if __name__ == "__main__":
    main()

"""Structure-aware TFLite fuzzing, run differentially against the TFLite interpreter.

Each example takes a real quantized MobileNetV2 file and changes one thing the way a crafted or
corrupt file would: a scale, a zero point, an option, a tensor index, a list length, an op code,
an options type, a tensor type, a shape, a buffer index, the schema version, or the weights and
biases themselves. npmnv2 then loads it (`QuantizedMobileNetV2`, which runs the validator and the
float importer) and, if it accepts the file, runs it; the interpreter's reference kernels run the
same file in a separate process. The rules:

- npmnv2 refuses with a WeightFileError whose message is a sentence (not a wrapped raw error), or
- npmnv2 computes, the interpreter computes too, and every graph output is identical, or
- npmnv2 refuses while running, by name, an input on which the interpreter's kernel aborts
  (`KernelAbortError`: hundreds of tied logits make the reference SOFTMAX's shift exceed 31).

A file npmnv2 computes and the interpreter refuses or crashes on, or one both compute differently,
fails the test. CI runs FUZZ_EXAMPLES (fixed seed); set NPMNV2_FUZZ_TFLITE=2000 for a long run.
"""

from __future__ import annotations

import collections
import os
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from npmnv2.ops.probability import KernelAbortError
from npmnv2.tflite.integer_model import QuantizedMobileNetV2
from npmnv2.weights import WeightFileError
from tests.tflite_edit import FIELDS, TFLiteEdit

FUZZ_EXAMPLES = int(os.environ.get("NPMNV2_FUZZ_TFLITE", "80"))
SEED = int(os.environ.get("NPMNV2_FUZZ_SEED", "20"))
MODELS = {  # file (in the real-data folder, or ports/ beside this file): share of the examples
    "mobilenet_v2_1.0_224_quant.tflite": 0.45,
    "tf2_mobilenet_v2_1.0_224_ptq.tflite": 0.25,
    "deeplabv3_mnv2_dm05_pascal_quant.tflite": 0.1,
    "ports/keras_tfconverter_int8_int8.tflite": 0.1,  # TensorFlow's converter: int8 I/O, MEAN without keep_dims
    "ports/keras_tfconverter_int8_float.tflite": 0.1,  # float I/O: QUANTIZE in, DEQUANTIZE out
}
PORTS = Path(__file__).resolve().parent
# Messages of the readers' last-resort handlers: a file that reaches them was not explained.
UNEXPLAINED = ("reading its graph failed", "is not a readable TFLite model")


# ============================================================================ mutations


def _quantized_tensors(e: TFLiteEdit) -> list[int]:
    out = []
    for t in range(e.graph.TensorsLength()):
        q = e.graph.Tensors(t).Quantization()
        if q is not None and q.ScaleLength():
            out.append(t)
    return out


def _pick(rng, values):
    return values[int(rng.integers(len(values)))]


def mutate(e: TFLiteEdit, rng: np.random.Generator) -> str:
    """Change one thing in `e`; returns what was changed. A field absent from this file raises
    KeyError (the caller counts the example as skipped)."""
    n_ops, n_tensors = e.graph.OperatorsLength(), e.graph.TensorsLength()
    rare = ["opcode", "options_type", "tensor_type", "shape", "buffer", "version", "op_version"]
    rare += ["opcode_split", "opcode_split", "quantized_dimension"]  # round 3: op identity and quantization fields
    kind = _pick(
        rng, ["scale"] * 5 + ["zero_point"] * 3 + ["option"] * 4 + ["index", "length"] * 2 + rare + ["data"] * 5
    )
    if kind == "scale":
        t = _pick(rng, _quantized_tensors(e))
        q = e.graph.Tensors(t).Quantization()
        i = int(rng.integers(q.ScaleLength()))
        old = q.Scale(i)
        new = _pick(rng, [old * float(rng.uniform(0.5, 2.0)), old * 10 ** float(rng.uniform(-8, 8)), float("nan"),
                          float("inf"), 0.0, -old, 1e-12, 1e30, old * (1 + 1e-6)])  # fmt: skip
        e.set_scale(t, new, i)
        return f"scale of tensor {t}[{i}]: {old:.6g} -> {new:.6g}"
    if kind == "zero_point":
        t = _pick(rng, _quantized_tensors(e))
        q = e.graph.Tensors(t).Quantization()
        if not q.ZeroPointLength():
            return "nothing (no zero point)"
        i = int(rng.integers(q.ZeroPointLength()))
        old = q.ZeroPoint(i)
        new = _pick(rng, [old + int(rng.integers(-3, 4)), -1, 256, 2**40, -(2**40), 127, -128, 0, 255, old + 128])
        e.set_zero_point(t, new, i)
        return f"zero point of tensor {t}[{i}]: {old} -> {new}"
    if kind == "option":
        candidates = [i for i in range(n_ops) if e.op_type(i) in FIELDS]
        op = _pick(rng, candidates)
        field = _pick(rng, list(FIELDS[e.op_type(op)]))
        fmt = FIELDS[e.op_type(op)][field][1]
        if fmt == "<f":
            value = _pick(rng, [float("nan"), float("inf"), 0.0, -1.0, 1e-9, 0.5, 2.0, 1e9])
        elif fmt == "<b":
            value = _pick(rng, [0, 1, 2, 3, 4, 5, 6, -1, 127])
        else:
            value = _pick(rng, [0, 1, 2, 3, 4, -1, -2, 7, 64, 2**31 - 1, int(rng.integers(1, 9))])
        e.set_options(op, **{field: value})
        return f"op {op} {e.op_type(op)} option {field} = {value}"
    if kind == "index":
        op = int(rng.integers(n_ops))
        value = _pick(rng, [-1, -7, n_tensors, n_tensors + 100, 5000, int(rng.integers(n_tensors))])
        if rng.random() < 0.7:
            k = int(rng.integers(e.graph.Operators(op).InputsLength()))
            e.set_op_input(op, k, value)
            return f"op {op} input {k} = {value}"
        e.set_op_output(op, value)
        return f"op {op} output = {value}"
    if kind == "length":
        target, vt, what = _pick(
            rng,
            [(e.graph, 4, "subgraph tensors"), (e.graph, 10, "subgraph operators"), (e.graph, 8, "subgraph outputs")]
            + [(e.graph.Operators(int(rng.integers(n_ops))), 6, "op inputs")] * 2
            + [(e.graph.Tensors(int(rng.integers(n_tensors))), 4, "tensor shape")],
        )
        old = target._tab.VectorLen(target._tab.Offset(vt))
        new = max(0, old + _pick(rng, [-2, -1, 1, 2, 100, 2**20]))
        e.set_length(target, vt, new)
        return f"{what} length {old} -> {new}"
    if kind == "opcode":
        if rng.random() < 0.5:
            op = int(rng.integers(n_ops))
            value = int(rng.integers(0, e.model.OperatorCodesLength() + 2))
            e.set_field(e.graph.Operators(op), 4, "<I", value)
            return f"op {op} opcode_index = {value}"
        code = int(rng.integers(e.model.OperatorCodesLength()))
        value = int(rng.integers(0, 210))
        e.set_builtin_code(code, value)
        return f"operator code {code} builtin = {value}"
    if kind == "opcode_split":  # the two builtin-code fields disagree: the interpreter takes the larger
        code = int(rng.integers(e.model.OperatorCodesLength()))
        value = _pick(rng, [0, 3, 4, 18, 22, 25, 40, 41, 126, 127, 150, int(rng.integers(0, 127))])
        if rng.random() < 0.5:
            e.set_field(e.model.OperatorCodes(code), 10, "<i", value)  # absent (0, ADD) raises KeyError: skipped
            return f"operator code {code} builtin_code field only = {value}"
        e.set_field(e.model.OperatorCodes(code), 4, "<b", min(value, 127))
        return f"operator code {code} deprecated_builtin_code only = {value}"
    if kind == "op_version":
        code = int(rng.integers(e.model.OperatorCodesLength()))
        value = _pick(rng, [0, -1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 15, 99, 2**31 - 1])
        e.set_op_version(code, value)
        return f"operator code {code} version = {value}"
    if kind == "quantized_dimension":
        t = _pick(rng, _quantized_tensors(e))
        value = _pick(rng, [0, 1, 2, 3, 4, 5, -1, 100])
        e.set_field(e.graph.Tensors(t).Quantization(), 16, "<i", value)  # absent (0) raises KeyError: skipped
        return f"tensor {t} quantized_dimension = {value}"
    if kind == "options_type":
        op = int(rng.integers(n_ops))
        value = int(rng.integers(0, 126))
        e.set_options_type(op, value)
        return f"op {op} options type = {value}"
    if kind == "tensor_type":
        t = int(rng.integers(n_tensors))
        value = int(rng.integers(0, 18))
        e.set_tensor_type(t, value)
        return f"tensor {t} type = {value}"
    if kind == "shape":
        t = int(rng.integers(n_tensors))
        rank = e.graph.Tensors(t).ShapeLength()
        if not rank:
            return "nothing (scalar)"
        i = int(rng.integers(rank))
        old = e.graph.Tensors(t).Shape(i)
        new = _pick(rng, [0, -1, 1, old + 1, old - 1, 2**20])
        e.set_shape(t, i, new)
        return f"tensor {t} shape[{i}] {old} -> {new}"
    if kind == "buffer":
        t = int(rng.integers(n_tensors))
        value = _pick(rng, [0, e.model.BuffersLength(), 2**31, int(rng.integers(e.model.BuffersLength()))])
        e.set_tensor_buffer(t, value)
        return f"tensor {t} buffer = {value}"
    if kind == "version":
        value = _pick(rng, [0, 1, 2, 4, 99, 2**31])
        e.set_version(value)
        return f"version = {value}"
    # data: weights and biases the interpreter must compute exactly as npmnv2 does
    weighted = [i for i in range(n_ops) if e.op_type(i) in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")]
    op = _pick(rng, weighted)
    if rng.random() < 0.5:
        b = e.op_input(op, 2)
        n = e.graph.Tensors(b).Shape(0)
        i = int(rng.integers(n))
        value = _pick(rng, [2**31 - 1, -(2**31), 2**30, -(2**30), int(rng.integers(-(2**20), 2**20)), 0])
        e.set_data(b, i, "<i", value)
        return f"op {op} bias[{i}] = {value}"
    w = e.op_input(op, 1)
    size = int(np.prod([e.graph.Tensors(w).Shape(k) for k in range(e.graph.Tensors(w).ShapeLength())]))
    signed = e.graph.Tensors(w).Type() == 9
    for _ in range(int(rng.integers(1, 50))):
        i = int(rng.integers(size))
        e.set_data(w, i, "<b" if signed else "<B", int(rng.integers(-128, 128) if signed else rng.integers(0, 256)))
    return f"op {op} weights: random bytes"


# ============================================================================ the interpreter, out of process


class Worker:
    """tests/interpreter_worker.py, restarted after each crash."""

    def __init__(self) -> None:
        self.process = None

    def _start(self) -> None:
        import resource

        def limit() -> None:
            resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("interpreter_worker.py"))],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            preexec_fn=limit,
        )

    def run(self, model: Path, pixels: Path, out: Path) -> str:
        """'ok', 'refused: ...' or 'crashed'."""
        if self.process is None or self.process.poll() is not None:
            self._start()
        self.process.stdin.write(f"{model}\t{pixels}\t{out}\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            self.process.wait()
            self.process = None
            return "crashed"
        return line.strip()

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.stdin.close()
            self.process.wait(timeout=30)


# ============================================================================ the differential test


def run_fuzz(coral_dir: Path, examples: int, seed: int, folder: Path) -> tuple[collections.Counter, list[str]]:
    rng = np.random.default_rng(seed)
    worker = Worker()
    counts: collections.Counter = collections.Counter()
    failures: list[str] = []
    pixels = {}
    names = list(MODELS)
    shares = np.array(list(MODELS.values()))
    try:
        for example in range(examples):
            name = names[int(rng.choice(len(names), p=shares / shares.sum()))]
            e = TFLiteEdit(PORTS / name if name.startswith("ports/") else coral_dir / name)
            try:
                what = mutate(e, rng)
            except (KeyError, IndexError, struct.error) as err:  # the field to change is absent
                counts["skipped (field absent)"] += 1
                del err
                continue
            path = e.save(folder / f"fuzz{example}.tflite")
            case = f"example {example}, {name}: {what}"
            try:
                model = QuantizedMobileNetV2.from_pretrained(path)
            except WeightFileError as err:
                if any(phrase in str(err) for phrase in UNEXPLAINED):
                    failures.append(f"{case}: unexplained refusal: {err}")
                counts["refused by npmnv2"] += 1
                continue
            except Exception as err:  # anything else is a bug
                failures.append(f"{case}: {type(err).__name__}: {err}")
                continue
            n, h, w, c = model.input_shape
            if (h, w) not in pixels:
                image = Image.open(coral_dir / "cat.bmp").convert("RGB").resize((w, h), Image.NEAREST)
                pixels[(h, w)] = np.asarray(image, np.uint8)[None]
            x = model.input_from_pixels(pixels[(h, w)])
            try:
                ours = model(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
            except (WeightFileError, KernelAbortError) as err:  # refused by name while running (the kernel would abort)
                counts["refused by npmnv2 while running"] += 1
                del err
                continue
            except Exception as err:
                failures.append(f"{case}: computing raised {type(err).__name__}: {err}")
                continue
            np.save(folder / "pixels.npy", x)
            verdict = worker.run(path, folder / "pixels.npy", folder / "out.npz")
            if verdict != "ok":
                failures.append(f"{case}: npmnv2 computes it but the interpreter {verdict}")
                continue
            with np.load(folder / "out.npz") as theirs:
                for t, ours_out in zip(model.output_indices, ours.outputs, strict=True):
                    reference = theirs[f"t{t}"]
                    mine = ours_out.transpose(0, 2, 3, 1) if ours_out.ndim == 4 else ours_out
                    if mine.shape != reference.shape or not np.array_equal(mine, reference):
                        differ = int(np.count_nonzero(mine != reference)) if mine.shape == reference.shape else -1
                        failures.append(f"{case}: both compute, {differ} output values differ")
                        break
                else:
                    counts["computed by both, identical"] += 1
            path.unlink()
    finally:
        worker.close()
    return counts, failures


def test_mutated_tflite_files_are_refused_or_computed_exactly_as_the_interpreter_does(coral_dir, tmp_path):
    counts, failures = run_fuzz(coral_dir, FUZZ_EXAMPLES, SEED, tmp_path)
    summary = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
    print(f"\n{FUZZ_EXAMPLES} mutations (seed {SEED}): {summary}; failures: {len(failures)}")
    assert not failures, "\n".join(failures[:20])
    assert counts["computed by both, identical"] > 0 and counts["refused by npmnv2"] > 0


if __name__ == "__main__":  # python -m tests.test_tflite_fuzz N SEED: a long run with a report
    data = Path(os.environ.get("NPMNV2_DATA", Path(__file__).parents[2] / "shared" / "data" / "coral"))
    n, seed = int(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else SEED
    with tempfile.TemporaryDirectory() as folder:
        counts, failures = run_fuzz(data, n, seed, Path(folder))
    print(dict(counts))
    print(f"{len(failures)} failures")
    for line in failures:
        print(" ", line)
    pytest  # noqa: B018 (imported for the test above)

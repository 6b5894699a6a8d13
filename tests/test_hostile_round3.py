"""Hostile input, round 3 (issue 29): each finding reproduced, then held off."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import CORAL_CLASSIFIER, tiny_config

from npmnv2.verify import child, interpreter

EMBEDDED = Path(__file__).resolve().parents[1] / "npmnv2" / "data" / "mobilenet_v2_1.0_224_quant.tflite"
NPMNV2 = Path(sys.executable).with_name("npmnv2")


# ============================================================================ code from the current folder


def _plant(folder: Path) -> list[Path]:
    """Every way a current folder could shadow what the interpreter child imports; each writes a marker."""
    markers = []
    for name, where in [
        ("numpy", "numpy.py"),
        ("numpy_pkg", "numpy/__init__.py"),
        ("litert", "ai_edge_litert/__init__.py"),
        ("litert_interp", "ai_edge_litert/interpreter.py"),
        ("npmnv2", "npmnv2/__init__.py"),
        ("npmnv2_child", "npmnv2/verify/interpreter.py"),
        ("site", "sitecustomize.py"),
        ("usersite", "usercustomize.py"),
    ]:
        marker = folder / f"RAN_{name}"
        target = folder / where
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
        markers.append(marker)
    return markers


def test_the_interpreter_child_imports_nothing_from_the_current_folder(tmp_path, monkeypatch):
    """Round 3's first finding: `python -m npmnv2.verify.interpreter` put the current folder first on
    the child's import path. Here the folder is even on this process's own path ('')."""
    markers = _plant(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend("")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.setenv("PYTHONSTARTUP", str(tmp_path / "numpy.py"))
    tensors = interpreter.interpreter_tensors(EMBEDDED, np.zeros((1, 224, 224, 3), np.uint8))
    assert len(tensors) > 100
    assert [m.name for m in markers if m.exists()] == []


@pytest.mark.parametrize(
    "command",
    [
        ["verify", str(EMBEDDED), "IMAGE"],
        ["compare", "IMAGE", "--weights", str(EMBEDDED), "--against", "tflite"],
    ],
    ids=["verify", "compare-against-tflite"],
)
def test_commands_that_run_the_interpreter_import_nothing_from_the_current_folder(tmp_path, coral_dir, command):
    markers = _plant(tmp_path)
    command = [str(coral_dir / "cat.bmp") if c == "IMAGE" else c for c in command]
    run = subprocess.run([str(NPMNV2), *command], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert [m.name for m in markers if m.exists()] == []


def test_tflite_activations_imports_nothing_from_the_current_folder(tmp_path, monkeypatch, coral_dir):
    from npmnv2.verify import tflite_activations

    markers = _plant(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend("")
    acts = tflite_activations(EMBEDDED, coral_dir / "cat.bmp")
    assert len(acts) > 60
    assert [m.name for m in markers if m.exists()] == []


def test_the_child_starts_isolated_by_absolute_path_in_an_empty_folder(monkeypatch, tmp_path):
    seen = {}
    real_run = subprocess.run

    def spy(command, **kwargs):
        seen["command"], seen["kwargs"] = command, kwargs
        return real_run(command, **kwargs)

    monkeypatch.setattr(child.subprocess, "run", spy)
    monkeypatch.setenv("LD_PRELOAD", "")
    monkeypatch.setenv("SECRET_TOKEN", "x")
    interpreter.interpreter_tensors(EMBEDDED, np.zeros((1, 224, 224, 3), np.uint8))
    command, kwargs = seen["command"], seen["kwargs"]
    assert command[:3] == [sys.executable, "-I", str(child.SCRIPT)]
    assert Path(command[2]).is_absolute() and "-m" not in command
    assert Path(kwargs["cwd"]).name.startswith("npmnv2-interpreter-")
    assert "SECRET_TOKEN" not in kwargs["env"] and "LD_PRELOAD" not in kwargs["env"]


# ============================================================================ the child under limits


def _run_with_hard_limit(limit: int, code: str) -> subprocess.CompletedProcess:
    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=600, preexec_fn=cap, env=os.environ
    )


def test_the_interpreter_child_works_under_a_hard_limit_below_its_own(coral_dir):
    """Round 3: under any hard address-space limit below 4 GiB the child failed with "Exception
    occurred in preexec_fn."; it now takes the parent's limit."""
    code = (
        "import numpy as np\n"
        "from npmnv2.verify.interpreter import interpreter_tensors\n"
        f"t = interpreter_tensors({str(EMBEDDED)!r}, np.zeros((1, 224, 224, 3), np.uint8))\n"
        "print(len(t))\n"
    )
    run = _run_with_hard_limit(2 << 30, code)
    assert run.returncode == 0, run.stderr
    assert int(run.stdout.split()[-1]) > 100


def test_a_child_limit_too_small_to_start_is_named_not_called_a_refusal():
    with pytest.raises(child.ChildError) as caught:
        interpreter.interpreter_tensors(EMBEDDED, np.zeros((1, 224, 224, 3), np.uint8), memory_limit=48 << 20)
    message = str(caught.value)
    assert "refused" not in message
    assert "48 MiB of address space" in message and str(EMBEDDED) in message
    assert "\n" not in message and len(message) < 500


def test_the_inherited_hard_limit_is_named_when_it_is_what_stops_the_child(monkeypatch):
    real = resource.getrlimit
    monkeypatch.setattr(
        child.resource, "getrlimit", lambda which: (48 << 20, 48 << 20) if which == resource.RLIMIT_AS else real(which)
    )
    with pytest.raises(child.ChildError, match=r"48 MiB of address space \(this process's own hard limit, lower than"):
        interpreter.interpreter_tensors(EMBEDDED, np.zeros((1, 224, 224, 3), np.uint8))


def test_a_missing_interpreter_says_what_to_install_not_that_the_file_was_refused(monkeypatch):
    monkeypatch.setitem(child.PACKAGES, "litert", (("numpy", "numpy"), ("no_such_runtime_xyz", "ai-edge-litert")))
    with pytest.raises(
        child.MissingPackageError, match=r"needs the no_such_runtime_xyz package.*pip install ai-edge-litert"
    ):
        interpreter.interpreter_tensors(EMBEDDED, np.zeros((1, 224, 224, 3), np.uint8))


# ============================================================================ op identity


def _edit(path):
    from tests.tflite_edit import TFLiteEdit

    return TFLiteEdit(path)


def test_an_operator_code_whose_two_fields_disagree_is_read_as_the_interpreter_reads_it(tmp_path, coral_dir):
    """Round 3: the `tflite` package's BuiltinCode() returns deprecated_builtin_code when builtin_code
    < 127; the interpreter takes the larger. A CONV_2D code with builtin_code = MUL was computed as a
    convolution by npmnv2 and as MUL by the interpreter."""
    import tflite

    from npmnv2.tflite.structure import operator_codes
    from npmnv2.weights import WeightFileError

    e = _edit(coral_dir / "tf2_mobilenet_v2_1.0_224_ptq.tflite")
    index = next(
        i for i in range(e.model.OperatorCodesLength()) if e.model.OperatorCodes(i).DeprecatedBuiltinCode() == 3
    )
    e.set_field(e.model.OperatorCodes(index), 10, "<i", tflite.BuiltinOperator.MUL)
    assert e.model.OperatorCodes(index).BuiltinCode() == 3  # what the package says
    assert operator_codes(bytes(e.buf), "x")[index][0] == tflite.BuiltinOperator.MUL  # what the interpreter runs
    path = e.save(tmp_path / "conv_or_mul.tflite")
    with pytest.raises(WeightFileError, match=r"MUL .*npmnv2 does not implement this op"):
        npmnv2_quantized(path)


@pytest.mark.parametrize("version", [0, 9, 99])
def test_an_op_version_the_reference_kernels_do_not_register_is_refused(tmp_path, coral_dir, version):
    from npmnv2.weights import WeightFileError

    e = _edit(coral_dir / "tf2_mobilenet_v2_1.0_224_ptq.tflite")
    index = next(
        i for i in range(e.model.OperatorCodesLength()) if e.model.OperatorCodes(i).DeprecatedBuiltinCode() == 3
    )
    e.set_op_version(index, version)
    path = e.save(tmp_path / "conv_v99.tflite")
    with pytest.raises(WeightFileError, match=rf"CONV_2D \(operator code {index}\) is version {version}; .* 1\.\.8"):
        npmnv2_quantized(path)


def npmnv2_quantized(path):
    from npmnv2 import QuantizedMobileNetV2

    return QuantizedMobileNetV2.from_pretrained(path)


# ============================================================================ what the float importer would ignore


def _float_import(path, segmentation=False):
    from npmnv2 import MobileNetV2ForImageClassification, MobileNetV2ForSemanticSegmentation

    cls = MobileNetV2ForSemanticSegmentation if segmentation else MobileNetV2ForImageClassification
    return cls.from_pretrained(path)


def test_a_deeplab_concatenation_with_its_inputs_reversed_is_refused_by_the_float_importer(tmp_path, coral_dir):
    """Round 3: the integer model concatenates in the file's order; the float model ignored it."""
    from npmnv2.weights import WeightFileError

    e = _edit(coral_dir / "deeplabv3_mnv2_dm05_pascal_quant.tflite")
    concat = e.ops_of("CONCATENATION")[0]
    first, second = e.op_input(concat, 0), e.op_input(concat, 1)
    e.set_op_input(concat, 0, second)
    e.set_op_input(concat, 1, first)
    path = e.save(tmp_path / "reversed.tflite")
    with pytest.raises(WeightFileError, match=r"CONCATENATION.*inputs in another order") as caught:
        _float_import(path, segmentation=True)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_an_argmax_over_another_axis_is_refused_by_the_float_importer(tmp_path, coral_dir):
    from npmnv2.weights import WeightFileError

    e = _edit(coral_dir / "deeplabv3_mnv2_dm05_pascal_quant.tflite")
    argmax = e.ops_of("ARG_MAX")[0]
    e.set_data(e.op_input(argmax, 1), 0, "<i", 1)  # over the rows, not the classes
    e.set_shape(e.op_output(argmax), 2, 21)  # (1, 513, 21): what an argmax over the rows gives
    path = e.save(tmp_path / "argmax_rows.tflite")
    with pytest.raises(WeightFileError, match=r"ARG_MAX.*argmax over axis 1 of a 4-D tensor"):
        _float_import(path, segmentation=True)


def test_an_input_quantized_for_another_range_is_refused_by_the_float_importer(tmp_path, coral_dir):
    """The float model is fed [-1, 1] pixels; a file whose input holds [0, 2] would be computed apart."""
    from npmnv2.weights import WeightFileError

    e = _edit(coral_dir / CORAL_CLASSIFIER)
    e.set_zero_point(e.graph.Inputs(0), 0)  # the same scale: real values 0 .. 2
    path = e.save(tmp_path / "input_0_2.tflite")
    with pytest.raises(WeightFileError, match=r"zero point 0 \(real values 0 \.\. 1\.99\), but the float model"):
        _float_import(path)


def test_a_graph_output_moved_to_the_pooling_is_refused_by_the_float_importer(tmp_path, coral_dir):
    from npmnv2.weights import WeightFileError

    e = _edit(coral_dir / CORAL_CLASSIFIER)
    pool = e.ops_of("AVERAGE_POOL_2D")[0]
    e.set_element(e.graph, 8, 0, "<i", e.op_output(pool))  # the subgraph's outputs[0]
    path = e.save(tmp_path / "pool_out.tflite")
    with pytest.raises(WeightFileError, match=r"graph output .* comes from AVERAGE_POOL_2D .*not from the classifier"):
        _float_import(path)


# ============================================================================ labels


def _with_labels(coral_dir, tmp_path, text: str):
    import zipfile

    from npmnv2.tflite.graph import TFLiteGraph

    raw = (coral_dir / CORAL_CLASSIFIER).read_bytes()
    start = raw.index(b"PK\x03\x04")
    archive_path = tmp_path / "labels.zip"
    with zipfile.ZipFile(archive_path, "w") as archive:
        archive.writestr("labels.txt", text.encode("utf-8"))
    path = tmp_path / "labelled.tflite"
    path.write_bytes(raw[:start] + archive_path.read_bytes())
    return TFLiteGraph(path), path


@pytest.mark.parametrize("odd", ["\x0c", "\x85", "\u2028", "\r", "\x1c", "\x1d", "\x1e", "\u2029"])
def test_label_files_are_split_on_newlines_only(coral_dir, tmp_path, odd):
    """Round 3: str.splitlines split one name at \\x0c, \\x85, \\u2028 or a lone \\r, shifting every
    label after it (or making the count wrong, so every name became LABEL_n)."""
    names = [f"class {i}" for i in range(1001)]
    names[5] = f"tab{odd}by"
    graph, _ = _with_labels(coral_dir, tmp_path, "\n".join(names) + "\n")
    labels = graph.labels()
    assert len(labels) == 1001 and labels[5] == f"tab{odd}by" and labels[6] == "class 6"


def test_crlf_label_files_read_as_the_same_names(coral_dir, tmp_path):
    graph, _ = _with_labels(coral_dir, tmp_path, "\r\n".join(f"class {i}" for i in range(1001)) + "\r\n")
    assert graph.labels()[:2] == ["class 0", "class 1"] and len(graph.labels()) == 1001


def test_a_label_cannot_forge_an_output_line_or_turn_text_around(coral_dir, tmp_path):
    names = [f"class {i}" for i in range(1001)]
    names[286] = "Egyptian cat\r  0.999   999  forged\u202e"
    _, path = _with_labels(coral_dir, tmp_path, "\n".join(names))
    run = subprocess.run(
        [str(NPMNV2), "classify", str(coral_dir / "cat.bmp"), "--weights", str(path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    line = next(x for x in run.stdout.splitlines() if "Egyptian" in x)
    assert "\\x0d" in line and "\\u202e" in line and "\u202e" not in run.stdout
    assert sum("forged" in x for x in run.stdout.splitlines()) == 1


# ============================================================================ .npz within the budget


def _zeros_npz(path: Path, nbytes: int) -> Path:
    import zipfile

    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("x.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (nbytes // 4,)})
            for _ in range(nbytes >> 24):
                f.write(bytes(1 << 24))
    return path


def test_an_npz_that_inflates_a_thousandfold_is_refused_as_a_bomb_before_it_is_read(tmp_path):
    """Round 3: a 1.9 MB .npz of 1.9 GiB passed the budget and peaked at 3 GB."""
    from npmnv2.formats.saved_arrays import read_npz
    from npmnv2.weights import WeightFileError

    bomb = _zeros_npz(tmp_path / "bomb.npz", 128 << 20)
    with pytest.raises(WeightFileError, match=r"-fold\): a zip bomb") as caught:
        read_npz(bomb, "reference")
    assert str(bomb) in str(caught.value) and "\n" not in str(caught.value)


def test_an_npz_member_is_read_into_its_array_without_a_second_copy(tmp_path):
    import tracemalloc

    from npmnv2.formats.saved_arrays import read_npz

    values = np.random.default_rng(0).standard_normal((16, 1 << 20)).astype(np.float32)  # 64 MiB, incompressible
    np.savez(tmp_path / "real.npz", x=values)
    tracemalloc.start()
    read = read_npz(tmp_path / "real.npz", "reference")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert np.array_equal(read["x"], values)
    assert peak < 1.2 * values.nbytes  # the array and one chunk, not the array and its bytes


def test_a_preprocessor_config_whose_size_makes_activations_too_wide_is_refused_naming_it(tmp_path):
    """Round 3: a preprocessor config of 8000x8000 was not covered by the activation cap."""
    import json

    import npmnv2
    from npmnv2.weights import WeightFileError

    model = npmnv2.MobileNetV2ForImageClassification(tiny_config(image_size=96, num_labels=10))
    model.save_pretrained(tmp_path)
    size = {"size": {"height": 8000, "width": 8000}, "do_center_crop": False}
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(size))
    with pytest.raises(WeightFileError, match=r"preprocessor_config\.json' \(resizes to 8000x8000\).*MAX_ACTIVATION"):
        npmnv2.MobileNetV2ImageProcessor.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"pixel_values of shape \(1, 3, 6000, 6000\).*MAX_ACTIVATION"):
        model(np.zeros((1, 3, 6000, 6000), np.float32))  # refused before any activation is allocated


# ============================================================================ verify and convert writes


def _run(*args):
    return subprocess.run([str(NPMNV2), *map(str, args)], capture_output=True, text=True, timeout=600)


def test_verify_checks_its_outputs_before_any_work(tmp_path, coral_dir):
    """Round 3: --figure onto the input image, --model-explorer onto the peer or onto --model's
    config.json overwrote them; two options naming one file; a folder found only after the run."""
    from PIL import Image

    image = tmp_path / "cat.png"
    Image.open(coral_dir / "cat.bmp").save(image)
    before = image.read_bytes()
    onnx_peer = tmp_path / "port.onnx"
    onnx_peer.write_bytes((Path(__file__).with_name("ports") / "timm_dynamo.onnx").read_bytes())
    checkpoint = tmp_path / "ckpt"
    assert _run("convert", "npmnv2/default", checkpoint).returncode == 0
    cases = [
        (("--figure", image), "is the input file"),
        (("--model-explorer", onnx_peer), "needs one of the file types .json"),
        (("--model", checkpoint, "--model-explorer", checkpoint / "config.json"), "is the input file"),
        (("--figure", tmp_path / "a.png", "--model-explorer", tmp_path), "is a folder"),
        (("--figure", tmp_path / "same.json", "--model-explorer", tmp_path / "same.json"), "needs one of the file"),
    ]
    for options, message in cases:
        run = _run("verify", onnx_peer, image, *options)
        assert run.returncode == 1 and message in run.stderr, (options, run.stderr)
        assert "Traceback" not in run.stderr
    assert image.read_bytes() == before and (checkpoint / "config.json").read_text().startswith("{")


def test_convert_never_deletes_or_replaces_its_source(tmp_path):
    checkpoint = tmp_path / "ckpt"
    assert _run("convert", "npmnv2/default", checkpoint).returncode == 0
    files = {p.name: p.read_bytes() for p in checkpoint.iterdir()}
    run = _run("convert", checkpoint, checkpoint, "--overwrite")
    assert run.returncode == 1 and "holds the source" in run.stderr
    assert {p.name: p.read_bytes() for p in checkpoint.iterdir()} == files


def test_a_tflite_that_is_not_a_mobilenetv2_never_reaches_the_interpreter(monkeypatch, coral_dir):
    """Round 3: a small valid .tflite of 60 ADDs made verify run the interpreter (2 GB written to the
    temporary folder) before it said "not a MobileNetV2 graph": the structure is read first now."""
    from npmnv2 import verify
    from npmnv2.verify import tensors
    from npmnv2.weights import WeightFileError

    ran = []
    monkeypatch.setattr(tensors, "interpreter_tensors", lambda *a, **k: ran.append(a))

    def not_a_mobilenet(graph):
        raise WeightFileError("not a MobileNetV2 graph npmnv2 knows")

    monkeypatch.setattr(tensors, "match_layers", not_a_mobilenet, raising=False)
    monkeypatch.setattr("npmnv2.tflite.float_import.match_layers", not_a_mobilenet)
    monkeypatch.setattr("npmnv2.tflite.layers.match_layers", not_a_mobilenet)
    with pytest.raises(WeightFileError, match="not a MobileNetV2"):
        verify.check(EMBEDDED, coral_dir / "cat.bmp")
    with pytest.raises(WeightFileError, match="not a MobileNetV2"):
        verify.tflite_activations(EMBEDDED, coral_dir / "cat.bmp")
    assert ran == []


# ============================================================================ ONNX peers in the child


def _onnx_with(tmp_path, change) -> Path:
    import onnx

    model = onnx.load(str(Path(__file__).with_name("ports") / "timm_torchscript.onnx"))
    change(model)
    path = tmp_path / "changed.onnx"
    onnx.save(model, str(path))
    return path


def test_an_onnx_peer_that_is_a_pipe_or_a_device_is_refused_at_once(tmp_path, coral_dir):
    """Round 3: a FIFO as the peer hung forever; /dev/zero reached 3.4 GB."""
    from npmnv2 import verify
    from npmnv2.weights import WeightFileError

    fifo = tmp_path / "peer.onnx"
    os.mkfifo(fifo)
    for peer in (fifo, Path("/dev/zero")):
        with pytest.raises(WeightFileError, match="not a regular file"):
            verify.onnx_peers.onnx_peer(peer, np.zeros((1, 3, 96, 96), np.float32))
    with pytest.raises(WeightFileError, match="not a regular file"):
        verify.check(fifo, coral_dir / "cat.bmp")


def test_an_oversized_onnx_file_is_refused_from_its_size(tmp_path):
    from npmnv2.verify import onnx_peers
    from npmnv2.weights import WeightFileError

    sparse = tmp_path / "huge.onnx"
    with open(sparse, "wb") as f:
        f.truncate(onnx_peers.MAX_ONNX_BYTES + 1)  # 512 MiB of holes: nothing is read
    with pytest.raises(WeightFileError, match="bytes; npmnv2 reads MobileNetV2 exports of at most"):
        onnx_peers.onnx_peer(sparse, np.zeros((1, 3, 96, 96), np.float32))


def test_control_flow_custom_domains_and_external_data_are_refused_before_a_session_is_built(tmp_path):
    """Round 3: a Loop of 2^62 trips hung; external data in a sparse 1.8 GB file crashed ONNX Runtime."""
    import onnx
    from onnx import helper

    from npmnv2.verify import child, onnx_peers

    def loop(model):
        body = helper.make_graph([], "body", [], [])
        model.graph.node.append(helper.make_node("Loop", ["", ""], [], body=body))

    def custom(model):
        model.graph.node[0].domain = "com.example"

    def external(model):
        tensor = model.graph.initializer[0]
        tensor.data_location = onnx.TensorProto.EXTERNAL
        entry = tensor.external_data.add()
        entry.key, entry.value = "location", "weights.bin"
        tensor.ClearField("raw_data")

    for change, message in [
        (loop, "Loop, not an op"),
        (custom, "com.example"),
        (external, "keeps its data in another"),
    ]:
        path = _onnx_with(tmp_path, change)
        with pytest.raises(child.ChildError, match=message) as caught:
            onnx_peers.onnx_peer(path, np.zeros((1, 3, 96, 96), np.float32))
        assert "\n" not in str(caught.value) and len(str(caught.value)) < 500


def test_onnx_runtime_runs_in_the_isolated_child(monkeypatch, tmp_path):
    from npmnv2.verify import child, onnx_peers

    seen = []
    real = child.subprocess.run
    monkeypatch.setattr(child.subprocess, "run", lambda command, **kw: seen.append(command) or real(command, **kw))
    onnx_peers.onnx_peer(Path(__file__).with_name("ports") / "timm_dynamo.onnx", np.zeros((1, 3, 96, 96), np.float32))
    assert seen and seen[0][1:3] == ["-I", str(child.SCRIPT)] and "onnx" in seen[0]


# ============================================================================ .keras peers


def test_a_keras_file_is_loaded_in_safe_mode_and_verified_as_it_is(tmp_path, coral_dir):
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras

    from npmnv2 import verify

    port = keras.applications.MobileNetV2(alpha=0.35, input_shape=(96, 96, 3), classes=10, weights=None)
    spec = {"depth_multiplier": 0.35, "image_size": 96, "num_labels": 10, "tf_padding": True, "layer_norm_eps": 1e-3}
    verify.set_weights(port, verify.random_weights(spec, seed=0))
    path = tmp_path / "port.keras"
    port.save(path)
    report = verify.check(path, coral_dir / "cat.bmp", config=spec)
    assert report.faithful, report.explain()
    run = subprocess.run(
        [str(NPMNV2), "verify", str(path), str(coral_dir / "cat.bmp")], capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0 and "faithful" in run.stdout, run.stdout + run.stderr  # the preset fits the port


def test_a_keras_zip_bomb_is_refused_from_its_directory(tmp_path):
    """Round 3: a 2.9 MB .keras whose config deflates to 3 GB reached 2.5 GB of memory."""
    import zipfile

    from npmnv2.verify import peers
    from npmnv2.weights import WeightFileError

    bomb = tmp_path / "bomb.keras"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("metadata.json", "{}")
        archive.writestr("config.json", b" " * (20 << 20))  # 20 MiB of blanks in ~20 kB
    with pytest.raises(WeightFileError, match=r"config\.json is 20,971,520 bytes"):
        peers.keras_file_peer(bomb, np.zeros((1, 3, 96, 96), np.float32))
    for bad in (Path("/dev/zero"), tmp_path):
        with pytest.raises(WeightFileError, match="not a regular file"):
            peers.keras_file_peer(bad, np.zeros((1, 3, 96, 96), np.float32))


def test_a_nan_in_a_config_is_refused_not_written_back_as_non_json(tmp_path):
    """Round 3: convert copied NaN from an unknown config key into config.json (not JSON)."""
    import json

    source = tmp_path / "ckpt"
    assert _run("convert", "npmnv2/default", source).returncode == 0
    config = json.loads((source / "config.json").read_text())
    config["unknown_field"] = float("nan")
    (source / "config.json").write_text(json.dumps(config))
    run = _run("convert", source, tmp_path / "out")
    assert run.returncode == 1 and "NaN is not a JSON number" in run.stderr
    assert not (tmp_path / "out").exists()


# ============================================================================ one short line per message


def _keras_archive(path: Path, layers: list) -> Path:
    import json
    import zipfile

    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", json.dumps({"class_name": "Functional", "config": {"layers": layers}}))
        archive.writestr("metadata.json", "{}")
    return path


def test_a_keras_file_with_a_layer_no_mobilenetv2_holds_is_refused_before_keras_builds_it(tmp_path):
    from npmnv2.verify import peers
    from npmnv2.weights import WeightFileError

    path = _keras_archive(tmp_path / "lambda.keras", [{"class_name": "InputLayer"}, {"class_name": "Lambda"}])
    with pytest.raises(WeightFileError, match=r"holds a 'Lambda' layer, which a MobileNetV2 does not contain"):
        peers.keras_file_peer(path, np.zeros((1, 3, 96, 96), np.float32))


def test_a_keras_file_given_by_a_relative_path_is_found_by_the_child_and_its_refusal_is_one_short_line(tmp_path):
    _keras_archive(tmp_path / "broken.keras", [{"class_name": "InputLayer", "config": {"bad": 1}}])
    run = subprocess.run(
        [str(NPMNV2), "verify", "broken.keras", str(Path(__file__).parent.parent / "npmnv2/data/cat.jpg")],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        env={**os.environ, "KERAS_BACKEND": "torch"},
    )
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 1 and len(lines) == 1, run.stderr
    assert "Keras refused" in lines[0] and "broken.keras" in lines[0] and len(lines[0]) < 600
    assert "File not found" not in lines[0]  # the child was given the file's absolute path


def test_a_config_of_100001_labels_is_refused_in_one_short_line():
    """Round 3: the error line quoted every label (1.68 MB)."""
    import npmnv2

    with pytest.raises(ValueError) as caught:
        npmnv2.MobileNetV2Config(id2label={i: f"label {i}" for i in range(100_001)})
    assert "a dict of 100,001 entries" in str(caught.value) and len(str(caught.value)) < 200


def test_the_cli_cuts_any_error_line_to_a_few_hundred_characters():
    from npmnv2.cli import MAX_MESSAGE, _one_line

    line = _one_line(ValueError("file 'x.bin': " + "very long detail " * 1000))
    assert line.startswith("file 'x.bin': ") and len(line) <= MAX_MESSAGE and "--debug shows all" in line

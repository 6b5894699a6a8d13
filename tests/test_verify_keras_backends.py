"""Keras 3 ports on each of its backends, built as a Keras user builds them.

A process has one Keras backend, so each backend's port is built and checked in its own Python
process (with KERAS_BACKEND set, as a user sets it): faithful as built, and bugs planted the way a
porter makes them located and named. The `.keras` files they save are then checked from this
process, where Keras runs them in the isolated child on the backend $KERAS_BACKEND names.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from npmnv2 import verify

SPEC = {"depth_multiplier": 0.35, "image_size": 96, "num_labels": 10, "tf_padding": True, "layer_norm_eps": 1e-3}
NPMNV2 = Path(sys.executable).with_name("npmnv2")
BUGS = {"tensorflow": "all", "jax": "some"}

# what a Keras user writes: the application, given weights, checked; then one planted bug at a time
PORT_SCRIPT = """
import json, sys
import numpy as np
import keras
from npmnv2 import verify

spec, image, saved = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
port = keras.applications.MobileNetV2(alpha=0.35, input_shape=(96, 96, 3), classes=10, weights=None)
reference = verify.random_weights(spec, seed=0)
verify.set_weights(port, reference)
out = {"backend": keras.backend.backend()}

def judged(name, **kw):
    report = verify.check(port, image, config=spec, **kw)
    out[name] = {"status": report.status, "where": report.first_local_divergence or report.weight_divergence,
                 "cause": report.cause or (report.weight_causes[0].cause if report.weight_causes else None),
                 "verdict": report.verdict(), "read": len(report.weights_read)}

judged("faithful")
port.save(saved)
relu = port.get_layer("block_9_expand_relu")
relu.max_value = None  # ReLU for ReLU6
judged("relu")
relu.max_value = 6.0
norm = port.get_layer("block_5_project_BN")
norm.epsilon = 1e-5  # PyTorch's default eps where Keras has 1e-3
judged("eps")
norm.epsilon = 1e-3
if sys.argv[4] == "all":  # see CASES
    depthwise = port.get_layer("block_3_depthwise")
    kernel, = depthwise.get_weights()
    depthwise.set_weights([kernel.transpose(1, 0, 2, 3)])  # a conversion that swapped kh and kw
    judged("transposed", reference=reference)
print("RESULT " + json.dumps(out))
"""


def _run_port(backend: str, cat: Path, saved: Path) -> dict:
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    run = subprocess.run(
        [sys.executable, "-c", PORT_SCRIPT, json.dumps(SPEC), str(cat), str(saved), BUGS[backend]],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=saved.parent,
    )
    line = next((x for x in run.stdout.splitlines() if x.startswith("RESULT ")), None)
    assert run.returncode == 0 and line, run.stdout[-2000:] + run.stderr[-4000:]
    return json.loads(line.removeprefix("RESULT "))


_PORTS: dict[str, tuple[dict, Path]] = {}


def _port(backend: str, coral_dir: Path, tmp_path_factory) -> tuple[dict, Path]:
    """The backend's port built, checked and saved once per test session."""
    if backend not in _PORTS:
        saved = tmp_path_factory.mktemp(backend) / f"port_{backend}.keras"
        _PORTS[backend] = (_run_port(backend, coral_dir / "cat.bmp", saved), saved)
    return _PORTS[backend]


@pytest.fixture(scope="module", params=["tensorflow", "jax"])
def backend_port(request, coral_dir, tmp_path_factory):
    return (request.param, *_port(request.param, coral_dir, tmp_path_factory))


def test_a_keras_port_on_each_backend_is_faithful_with_every_weight_read(backend_port):
    backend, result, _ = backend_port
    assert result["backend"] == backend
    assert result["faithful"]["status"] == "faithful", result["faithful"]["verdict"]
    assert result["faithful"]["read"] == 53


PLANTED = {
    "relu": ("layer.8.expand_1x1.activation", "activation.relu"),
    "eps": ("layer.4.reduce_1x1.normalization", "batch_norm.eps"),
    "transposed": ("layer.2.conv_3x3", "weights.kernel_transposed"),
}
# JAX runs a Keras model op by op (~10 s a check): two of the bugs there, all three on TensorFlow
CASES = [("tensorflow", bug) for bug in PLANTED] + [("jax", "relu"), ("jax", "eps")]


@pytest.mark.parametrize("backend,bug", CASES)
def test_a_bug_planted_in_a_keras_port_on_each_backend_is_located_and_named(backend, bug, coral_dir, tmp_path_factory):
    result, _ = _port(backend, coral_dir, tmp_path_factory)
    where, cause = PLANTED[bug]
    found = result[bug]
    assert found["status"] == "diverges", found["verdict"]
    assert found["where"] == where and found["cause"] == cause, found["verdict"]


def test_a_keras_file_saved_on_another_backend_is_checked_in_the_child(backend_port, coral_dir, monkeypatch):
    _, _, saved = backend_port
    monkeypatch.setenv("KERAS_BACKEND", "torch")  # the child runs it on torch; the file came from TF or JAX
    report = verify.check(saved, coral_dir / "cat.bmp", config=SPEC)
    assert report.faithful, report.explain()
    assert report.rows[-1].peer_name == "predictions"


def test_the_cli_runs_a_keras_file_on_the_backend_keras_backend_names(coral_dir, tmp_path_factory):
    backend = "tensorflow"  # the child imports its backend afresh: one run shows the rule (JAX's takes ~15 s more)
    _, saved = _port("jax", coral_dir, tmp_path_factory)  # a file JAX wrote, run on TensorFlow
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    run = subprocess.run(
        [str(NPMNV2), "verify", str(saved), str(coral_dir / "cat.bmp")],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert run.returncode == 0 and "faithful" in run.stdout, run.stdout + run.stderr[-3000:]

"""Make the ONNX ports in this folder with the real exporters (run by hand, not by the tests).

    python tests/ports/make_onnx_ports.py    # needs tensorflow-cpu, tf2onnx (--no-deps), torch, timm, onnxscript

- keras_tf2onnx.onnx: the Keras 3 MobileNetV2 of make_tflite_ports.py (width 0.35, 96 px, 10 classes,
  verification-grade random weights, seed 0) through TensorFlow's exporter tf2onnx: NHWC input,
  a MatMul + Add classifier, batch norms folded into the convolutions.
- timm_torchscript.onnx / timm_dynamo.onnx: timm's mobilenetv2_035 (timm.create_model, symmetric
  padding, eps 1e-5, 10 classes, the same kind of weights, seed 0) at 96 px, through PyTorch's
  TorchScript exporter (torch.onnx.export(dynamo=False)) and its dynamo exporter (dynamo=True).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parents[1]), str(HERE.parent)]

import numpy as np  # noqa: E402

from npmnv2 import verify  # noqa: E402

TIMM_SPEC = {"depth_multiplier": 0.35, "image_size": 96, "num_labels": 10, "tf_padding": False, "layer_norm_eps": 1e-5}


def keras_onnx() -> None:
    import tensorflow as tf
    import tf2onnx
    from make_tflite_ports import keras_port

    port = keras_port()
    spec = (tf.TensorSpec((1, 96, 96, 3), tf.float32, name="input"),)
    tf2onnx.convert.from_keras(port, input_signature=spec, opset=17, output_path=str(HERE / "keras_tf2onnx.onnx"))


def timm_onnx() -> None:
    import torch
    from timm_shim import import_timm

    timm = import_timm()
    port = timm.create_model("mobilenetv2_035", pretrained=False, num_classes=10).eval()
    verify.set_weights(port, verify.random_weights(TIMM_SPEC, seed=0))
    x = torch.from_numpy(np.zeros((1, 3, 96, 96), np.float32))
    torch.onnx.export(port, (x,), str(HERE / "timm_torchscript.onnx"), dynamo=False, opset_version=17)
    torch.onnx.export(port, (x,), str(HERE / "timm_dynamo.onnx"), dynamo=True, external_data=False)


if __name__ == "__main__":
    keras_onnx()
    timm_onnx()
    for name in ("keras_tf2onnx.onnx", "timm_torchscript.onnx", "timm_dynamo.onnx"):
        print(f"wrote {name} ({(HERE / name).stat().st_size} bytes)")

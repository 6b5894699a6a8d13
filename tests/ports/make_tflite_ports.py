"""Make the TFLite ports in this folder with TensorFlow's own converter (run by hand, not by the tests).

    python tests/ports/make_tflite_ports.py      # needs tensorflow-cpu (its Keras 3 and TFLite converter)

A Keras 3 `keras.applications.MobileNetV2(alpha=0.35, input_shape=(96, 96, 3), classes=10)` with
verification-grade random weights (npmnv2.verify.random_weights + set_weights, seed 0), converted the
ways TensorFlow's converter writes a MobileNetV2: float32, float16 weights, dynamic-range int8 weights,
and full integer with float, uint8 and int8 input and output. Small on purpose (0.5-1.6 MB each), so
the files are committed and the tests read them as a user hands them over.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["KERAS_BACKEND"] = "tensorflow"
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import npmnv2  # noqa: E402
from npmnv2 import verify  # noqa: E402

SPEC = {"depth_multiplier": 0.35, "image_size": 96, "num_labels": 10, "tf_padding": True, "layer_norm_eps": 1e-3}


def keras_port() -> keras.Model:
    port = keras.applications.MobileNetV2(alpha=0.35, input_shape=(96, 96, 3), classes=10, weights=None)
    verify.set_weights(port, verify.random_weights(SPEC, seed=0))
    return port


def representative() -> object:
    rng = np.random.default_rng(0)
    images = [npmnv2.data_files.sample_image(name) for name in ("cat", "grace_hopper")]
    config = verify.spec_config(SPEC)

    def gen():
        for image in images:
            pixels = verify.pixels_for(image, config).transpose(0, 2, 3, 1).astype(np.float32)
            yield [pixels]
        for _ in range(6):
            yield [rng.uniform(-1, 1, (1, 96, 96, 3)).astype(np.float32)]

    return gen


def convert(port: keras.Model, kind: str) -> bytes:
    converter = tf.lite.TFLiteConverter.from_keras_model(port)
    if kind == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif kind == "dynamic_range":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif kind.startswith("int8"):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative()
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        io = kind.split("_")[1]  # float, uint8, int8
        if io != "float":
            converter.inference_input_type = converter.inference_output_type = {"uint8": tf.uint8, "int8": tf.int8}[io]
    return converter.convert()


def main() -> None:
    port = keras_port()
    for kind in ("float32", "float16", "dynamic_range", "int8_float", "int8_uint8", "int8_int8"):
        path = HERE / f"keras_tfconverter_{kind}.tflite"
        path.write_bytes(convert(port, kind))
        print(f"wrote {path.name} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()

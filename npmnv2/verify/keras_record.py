"""What a Keras 3 model computes, layer by layer, as plain arrays and a JSON-able list.

One function, run in two places: in npmnv2's own process for a Keras model handed over live, and
in the isolated child process (`_child.py`, which loads this file by its path) for a `.keras` file,
so that Keras never parses a file it was handed inside npmnv2's process. It imports only NumPy; the
Keras module is passed in. `npmnv2.verify.peers.keras_run` turns the record into a `PeerRun`.

The record, per layer that computes something (input layers, padding, dropout and reshapes are
left out): its name and class, its batch-norm epsilon, its activation's name, a ReLU layer's
`max_value`, and the short names of its weights; the arrays are its output `o<i>`, the first
tensor it read `i<i>` and its weights `w<i>.<short name>`, each as the backend gave them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

SKIPPED = ("InputLayer", "ZeroPadding2D", "Dropout", "Reshape", "Flatten")


def as_numpy(value: Any) -> np.ndarray:
    """A backend tensor (torch, JAX, TensorFlow) or variable value as a NumPy array."""
    if hasattr(value, "detach"):
        value = value.detach().cpu()
    return np.asarray(value)


def record(keras: Any, model: Any, pixels_nhwc: np.ndarray) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """Run `model` once on `pixels_nhwc` as one Keras model whose outputs are every kept layer's
    output and first input (inference mode); returns (layers, arrays) as the module docstring says."""
    kept = [layer for layer in model.layers if type(layer).__name__ not in SKIPPED]
    outputs, inputs = [], []
    for layer in kept:
        outputs.append(layer.output)
        node_input = layer.input
        inputs.append(node_input[0] if isinstance(node_input, (list, tuple)) else node_input)
    probe = keras.Model(model.inputs, outputs + inputs)
    values = [as_numpy(v) for v in probe([np.ascontiguousarray(pixels_nhwc)], training=False)]
    layers: list[dict[str, Any]] = []
    arrays: dict[str, np.ndarray] = {}
    for i, layer in enumerate(kept):
        activation = getattr(getattr(layer, "activation", None), "__name__", None)
        max_value = getattr(layer, "max_value", None)
        epsilon = getattr(layer, "epsilon", None)
        entry = {
            "name": str(layer.name),
            "class": type(layer).__name__,
            "activation": None if activation is None else str(activation),
            "max_value": None if max_value is None else float(max_value),
            "epsilon": None if epsilon is None else float(epsilon),
            "weights": [],
        }
        arrays[f"o{i}"], arrays[f"i{i}"] = values[i], values[len(kept) + i]
        for weight in layer.weights:
            short = str(weight.path).split("/")[-1]
            entry["weights"].append(short)
            arrays[f"w{i}.{short}"] = as_numpy(weight.numpy())
        layers.append(entry)
    return layers, arrays

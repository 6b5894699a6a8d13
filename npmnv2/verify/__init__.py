"""Verify another implementation of MobileNetV2: `check(peer, image, config=...)` -> `VerifyReport`.

A peer is taken as it is: a `torch.nn.Module`, a Keras 3 model, an `.onnx` file (ONNX Runtime), a
`.tflite` file (the TFLite interpreter), or the port's own tensors (a mapping, an `.npz`, a folder
of `.npy` files). Its tensors are matched to npmnv2's steps by structure, its weights are read by
structure into npmnv2's model of the spec, and every matched op is checked on the peer's own
inputs: the report names the first op that is wrong on its own, and the catalogued porting bug
that reproduces it (`npmnv2.verify.causes`).

Also here, as before: `torch_activations` and `transformers_twin` (transformers' model),
`tflite_activations`, `tflite_input` and `tflite_integer_tensors` (the TFLite interpreter).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..configuration_mobilenet_v2 import MobileNetV2Config
from .causes import CATALOGUE, Proposal, hypothesis
from .check import LOCAL_NOISE, run_check
from .integer import INTEGER_CATALOGUE, check_integer
from .peers import PeerLayer, PeerRun, PeerTensor, keras_peer, onnx_peer, saved_peer, torch_peer
from .report import CauseEvidence, Row, VerifyReport
from .spec import PRESETS, model_from_peer, random_weights, spec_config
from .tensors import (
    QuantizedTensors,
    tflite_activations,
    tflite_input,
    tflite_integer_tensors,
    torch_activations,
    transformers_twin,
)

__all__ = [
    "CATALOGUE",
    "INTEGER_CATALOGUE",
    "LOCAL_NOISE",
    "PRESETS",
    "CauseEvidence",
    "PeerLayer",
    "PeerRun",
    "PeerTensor",
    "Proposal",
    "QuantizedTensors",
    "Row",
    "VerifyReport",
    "check",
    "check_integer",
    "hypothesis",
    "keras_peer",
    "model_from_peer",
    "onnx_peer",
    "peer_run",
    "random_weights",
    "saved_peer",
    "spec_config",
    "tflite_activations",
    "tflite_input",
    "tflite_integer_tensors",
    "torch_activations",
    "torch_peer",
    "transformers_twin",
]


def pixels_for(image: Any, config: MobileNetV2Config) -> np.ndarray:
    """The pixels the spec feeds the network: an NCHW float array as it is, or an image (path,
    PIL image, HWC uint8 array) resized and scaled by transformers' processor for the config."""
    if isinstance(image, np.ndarray) and image.ndim == 4 and image.dtype.kind == "f":
        return image
    from ..image_processing_mobilenet_v2 import MobileNetV2ImageProcessor

    h, w = config.image_hw
    processor = MobileNetV2ImageProcessor(size={"height": h, "width": w}, do_center_crop=False)
    return processor(image)["pixel_values"]


def peer_run(peer: Any, pixel_values: np.ndarray) -> PeerRun:
    """Run `peer` on pixel_values (NCHW) with the adapter its type calls for."""
    if isinstance(peer, PeerRun):
        return peer
    bases = [c.__module__ for c in type(peer).__mro__]
    if any(b.startswith("keras") for b in bases):  # first: on the torch backend a Keras model is a torch Module
        return keras_peer(peer, pixel_values)
    if any(b.startswith("torch.nn") for b in bases):
        return torch_peer(peer, pixel_values)
    if isinstance(peer, Mapping):
        return saved_peer(peer)
    if isinstance(peer, (str, os.PathLike)):
        path = Path(peer)
        if path.suffix == ".onnx":
            return onnx_peer(path, pixel_values)
        if path.suffix == ".npz" or path.is_dir():
            return saved_peer(path)
        raise ValueError(f"verify: {str(path)!r} is not an .onnx, .tflite or .npz file or a folder of .npy files.")
    raise TypeError(
        f"verify: a peer must be a torch.nn.Module, a Keras model, an .onnx/.tflite/.npz path, a folder of .npy "
        f"files or a mapping name -> array; got {type(peer).__name__}."
    )


def tflite_peer(path: str | os.PathLike, image: Any) -> PeerRun:
    """A quantized `.tflite` run by the TFLite interpreter on `image` (resized as `tflite_input`
    does), its tensors dequantized and named by structure (`tflite_activations`); each tensor
    carries its quantization step (`detail["scale"]`), the noise it is judged against."""
    acts = tflite_activations(path, image)
    tensors = [PeerTensor(name, None, value, None, {"scale": acts.scales.get(name)}) for name, value in acts.items()]
    return PeerRun("tflite", tensors, [], "NCHW")


def check(
    peer: Any,
    image: Any,
    *,
    config: str | MobileNetV2Config | dict[str, Any] = "transformers",
    model: Any = None,
    task: str = "classification",
) -> VerifyReport:
    """Verify `peer` against the spec `config` (a preset, "transformers", "torchvision" or "keras",
    or any `MobileNetV2Config`) on `image` (a path, a PIL image, or NCHW pixel values).

    The peer runs as it is; its weights are read by structure into npmnv2's model of the spec
    (model= gives npmnv2's model instead, for peers that expose no weights); both run on the same
    pixels; every matched op is judged on its own inputs. Returns a `VerifyReport`: rows, the first
    divergence, the first op wrong on its own, and its cause from the catalogue.
    """
    spec = spec_config(config)
    if isinstance(peer, (str, os.PathLike)) and Path(peer).suffix == ".tflite":  # judged against quantization noise
        from ..checkpoints import read_source
        from ..modeling_mobilenet_v2 import MobileNetV2ForImageClassification, MobileNetV2ForSemanticSegmentation

        _, pixel_values = tflite_input(peer, image)  # the pixels the integer model stands for
        run = tflite_peer(peer, image)
        if model is None:
            checkpoint = read_source(Path(peer))
            seg = any(k.startswith("segmentation_head.") for k in checkpoint.tensors)
            cls = MobileNetV2ForSemanticSegmentation if seg else MobileNetV2ForImageClassification
            model = cls.from_checkpoint(checkpoint)
        return run_check(run, _as_float64(model), pixel_values, config=model.config)
    pixel_values = pixels_for(image, spec).astype(np.float32)
    run = peer_run(peer, pixel_values)
    if model is None:
        if not run.layers:
            raise ValueError(
                f"verify: the {run.framework} peer exposes no weights; pass model= (an npmnv2 model with the port's "
                "weights, e.g. from_pretrained of its checkpoint)."
            )
        model = model_from_peer(run, spec, task=task)
    else:
        model = _as_float64(model)
    return run_check(run, model, pixel_values, config=spec)


def _as_float64(model: Any) -> Any:
    if model.dtype == np.float64:
        return model
    twin = type(model)(model.config, dtype=np.float64, seed=0)
    twin.params = {k: {n: np.asarray(v, np.float64) for n, v in p.items()} for k, p in model.params.items()}
    twin.refold()
    return twin

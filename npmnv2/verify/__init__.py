"""Verify another implementation of MobileNetV2: `check(peer, image, config=...)` -> `VerifyReport`.

A peer is taken as it is: a `torch.nn.Module` (also a `torch.fx` GraphModule, a TorchScript module
or a `torch.export` ExportedProgram), a Keras 3 model, an `.onnx` file (ONNX Runtime), a
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
from .check import LOCAL_NOISE, dump_input, run_check
from .integer import INTEGER_CATALOGUE, check_integer
from .onnx_peers import onnx_peer
from .peers import PeerLayer, PeerRun, PeerTensor, keras_peer, saved_peer, torch_peer
from .report import CauseEvidence, Row, VerifyReport
from .spec import PRESETS, fit_preset, model_from_peer, peer_specs, random_weights, set_weights, spec_config
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
    "set_weights",
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
    if any(b.startswith("torch.export") for b in bases):  # an ExportedProgram: its graph, as a GraphModule
        peer = peer.module()
        bases = [c.__module__ for c in type(peer).__mro__]
    if any(b.startswith(("torch.jit", "torch.fx")) for b in bases):  # graphs: no hooks, or not on every op
        from .torch_graphs import fx_peer, script_peer

        return (script_peer if any(b.startswith("torch.jit") for b in bases) else fx_peer)(peer, pixel_values)
    if any(b.startswith("torch.nn") for b in bases):
        return torch_peer(peer, pixel_values)
    if isinstance(peer, Mapping):
        return saved_peer(peer)
    if isinstance(peer, (str, os.PathLike)):
        path = Path(peer)
        if path.suffix == ".onnx":
            return onnx_peer(path, pixel_values)
        if path.suffix == ".keras":  # Keras parses the file in the isolated child, never here
            from .peers import keras_file_peer

            return keras_file_peer(path, pixel_values)
        if path.suffix == ".npz" or path.is_dir():
            return saved_peer(path)
        raise ValueError(f"verify: {str(path)!r} is not an .onnx, .tflite or .npz file or a folder of .npy files.")
    raise TypeError(
        f"verify: a peer must be a torch.nn.Module, a Keras model, an .onnx/.tflite/.npz path, a folder of .npy "
        f"files or a mapping name -> array; got {type(peer).__name__}."
    )


def declared_input_size(peer: Any) -> tuple[int, int] | None:
    """(H, W) a port declares for its input: a Keras model's input shape (a .keras file's, from its
    config.json), an ONNX graph's input (asked of the isolated child, NCHW or NHWC); None when it
    declares none (a PyTorch module, tensor dumps)."""
    if isinstance(peer, (str, os.PathLike)):
        path = Path(peer)
        if path.suffix == ".keras":
            from .peers import keras_file_input_size

            return keras_file_input_size(path)
        if path.suffix == ".onnx":
            from .onnx_peers import onnx_input_shape

            shape = onnx_input_shape(path)
            if len(shape) == 4 and all(isinstance(d, int) for d in shape[1:]):
                return (shape[2], shape[3]) if shape[1] == 3 else (shape[1], shape[2])
        return None
    bases = [c.__module__ for c in type(peer).__mro__]
    if any(b.startswith("keras") for b in bases):
        shape = tuple(peer.inputs[0].shape)
        if len(shape) == 4 and shape[1] and shape[2]:
            return int(shape[1]), int(shape[2])
    return None


def tflite_peer(path: str | os.PathLike, image: Any) -> PeerRun:
    """A quantized `.tflite` run by the TFLite interpreter on `image` (resized as `tflite_input`
    does), its tensors dequantized and named by structure (`tflite_activations`); each tensor
    carries its quantization step (`detail["scale"]`), the noise it is judged against."""
    acts = tflite_activations(path, image)
    tensors = [
        PeerTensor(
            acts.tensor_names.get(name) or name,  # the file's own tensor name: what a porter sees in Netron
            None,
            value,
            None,
            {
                "scale": acts.scales.get(name),
                "range": acts.ranges.get(name),
                "hybrid": acts.hybrid.get(name),
                "step": name,
            },
        )
        for name, value in acts.items()
    ]
    return PeerRun("tflite", tensors, [], "NCHW")


def check(
    peer: Any,
    image: Any,
    *,
    config: str | MobileNetV2Config | dict[str, Any] = "transformers",
    model: Any = None,
    task: str = "classification",
    reference: Any = None,
) -> VerifyReport:
    """Verify `peer` against the spec `config` (a preset, "transformers", "torchvision" or "keras",
    or any `MobileNetV2Config`) on `image` (a path, a PIL image, or NCHW pixel values).

    The peer runs as it is; its weights are read by structure into npmnv2's model of the spec
    (model= gives npmnv2's model instead, for peers that expose no weights); both run on the same
    pixels; every matched op is judged on its own inputs. Returns a `VerifyReport`: rows, the first
    divergence, the first op wrong on its own, and its cause from the catalogue.

    reference: the checkpoint the port was converted from (an npmnv2 model, or any source
    `from_pretrained` takes): the port's weights are compared with it layer by layer and a
    weight-conversion bug is named (`npmnv2.verify.weights`).
    """
    if isinstance(peer, (str, os.PathLike)) and Path(peer).suffix == ".tflite":  # judged against quantization noise
        if model is None:  # read first: a file that is not a MobileNetV2 is refused before the interpreter runs
            model = _tflite_model(Path(peer), config)
        _, pixel_values = tflite_input(peer, image)  # the pixels the integer model stands for
        run = tflite_peer(peer, image)
        report = run_check(run, _as_float64(model), pixel_values, config=model.config)
        report.weights_read = [(s.name, Path(peer).name, "read from the file (batch norm folded)") for s in model.specs]
        return _against_reference(report, model, reference, quantized=report.quantized)
    spec = spec_config(config)
    if isinstance(config, str):  # a preset: its hyperparameters, the port's own input size and widths
        hw = declared_input_size(peer)
        if hw is not None and tuple(hw) != tuple(spec.image_hw):
            spec = spec_config(config, image_size=hw[0] if hw[0] == hw[1] else list(hw))
    pixel_values = pixels_for(image, spec).astype(np.float32)
    run = peer_run(peer, pixel_values)
    if isinstance(config, str) and model is None:
        spec = fit_preset(spec, run, task=task)
    weights_read, weight_gaps = [], []
    if model is None:
        if not run.layers:
            raise ValueError(
                f"verify: the {run.framework} peer exposes no weights; pass model= (an npmnv2 model with the port's "
                "weights, e.g. from_pretrained of its checkpoint)."
            )
        model = model_from_peer(run, spec, task=task)
        weights_read, weight_gaps = weights_coverage(run, peer_specs(model.specs, run, task))
    else:
        model = _as_float64(model)
    notes: list[str] = []
    if run.framework == "saved" and run.input is None:
        pixel_values, notes = dump_input(run, pixel_values, model.config.num_channels)
    report = run_check(run, model, pixel_values, config=spec)
    report.weights_read = weights_read
    report.gaps = weight_gaps + report.gaps
    report.warnings = notes + report.warnings
    return _against_reference(report, model, reference, quantized=False)


def _against_reference(report: VerifyReport, model: Any, reference: Any, *, quantized: bool) -> VerifyReport:
    """The port's weights (in `model`) against the reference checkpoint's, when one is given."""
    if reference is None:
        return report
    from .weights import compare_weights

    if isinstance(reference, (str, os.PathLike)):
        cls = type(model)
        reference = cls.from_pretrained(reference, dtype=np.float64)
    names = {ours: theirs for ours, theirs, _ in report.weights_read}
    rows, first, causes = compare_weights(model, reference, quantized=quantized, names=names)
    report.weight_rows, report.weight_divergence, report.weight_causes = rows, first, causes
    return report


HYPERPARAMETERS = ("tf_padding", "hidden_act")  # what a spec decides for a .tflite; the rest is the file's


def _tflite_model(path: Path, config: Any) -> Any:
    """npmnv2's model of the spec with a .tflite file's weights: the file's architecture (widths,
    strides, labels, image size, read from its graph) and the spec's hyperparameters (padding,
    activation; eps does not matter: the file's batch norms are folded). A preset name takes only
    its hyperparameters; a MobileNetV2Config or a dict is taken as it is, so it must fit the file."""
    from ..checkpoints import Checkpoint
    from ..configuration_mobilenet_v2 import MobileNetV2Config as Config
    from ..modeling_mobilenet_v2 import MobileNetV2ForImageClassification, MobileNetV2ForSemanticSegmentation
    from ..tflite.float_import import read_tflite_graph
    from ..tflite.graph import TFLiteGraph

    tensors, file_config, quantization = read_tflite_graph(TFLiteGraph(path), weights_only=True)
    seg = any(k.startswith("segmentation_head.") for k in tensors)
    cls = MobileNetV2ForSemanticSegmentation if seg else MobileNetV2ForImageClassification
    if isinstance(config, str):
        preset = spec_config(config)
        fields = {**file_config, **{k: getattr(preset, k) for k in HYPERPARAMETERS}}
    else:
        given = config.to_dict() if isinstance(config, Config) else dict(config)
        fields = {**file_config, **given}
    return cls.from_checkpoint(Checkpoint(tensors, fields, quantization, str(path)))


def weights_coverage(run: PeerRun, specs: list[Any]) -> tuple[list[tuple[str, str, str]], list[str]]:
    """For each weight layer of the spec, the port's layer read into it and what was read; and the
    gaps: a batch norm the spec has where the port showed neither a batch norm nor a bias (it was not
    read: npmnv2 would silently stand in an identity for it)."""
    read, gaps, missing = [], [], []
    for spec, layer in zip(specs, run.layers, strict=True):
        parts = ["kernel"] + (["bias"] if layer.bias is not None else [])
        if spec.eps is not None:
            if layer.bn is not None:
                parts.append("batch norm")
            elif layer.affine is not None:
                parts.append("batch norm (exported as scale and shift)")
            elif layer.bias is not None:
                parts.append("(batch norm folded into the bias)")
            else:
                parts.append("batch norm NOT READ")
                missing.append(f"{spec.name} ({layer.name})")
        read.append((spec.name, layer.name, ", ".join(parts)))
    if missing:
        gaps.append(
            f"{len(missing)} batch norms were not read: the port shows neither a batch norm nor a bias after "
            f"{', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}; if it has one, npmnv2 cannot see it "
            "(report it), else the port lacks it"
        )
    return read, gaps


def _as_float64(model: Any) -> Any:
    if model.dtype == np.float64:
        return model
    twin = type(model)(model.config, dtype=np.float64, seed=0)
    twin.params = {k: {n: np.asarray(v, np.float64) for n, v in p.items()} for k, p in model.params.items()}
    return twin

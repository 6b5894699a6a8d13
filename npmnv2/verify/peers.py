"""Another implementation, taken as it is: its tensors in execution order and its weights.

Each adapter runs a peer on the same pixels npmnv2 sees and returns a `PeerRun`: every tensor the
peer computed, in the order it computed them, with the input each one read when the framework
tells it (forward hooks, Keras layer inputs, ONNX node inputs), a kind where the framework names
one ("conv", "depthwise", "batch_norm", "activation", "add", "pool", "linear", "softmax"), and the
peer's weight layers in execution order (convolutions, batch norms, linear layers), converted to
npmnv2's layouts (HWIO kernels, (KH, KW, C) depthwise, (C_in, L) linear).

Frameworks are imported only by their own adapter, and a missing one is an ImportError naming
what to install. Nothing here decides what matches what: that is `npmnv2.verify.align`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..formats.saved_arrays import BUDGET, read_npy, read_npz
from ..ops import nchw_to_nhwc

PeerKind = str  # conv | depthwise | batch_norm | activation | add | pool | linear | softmax | resize | other


@dataclass
class PeerTensor:
    """One tensor of the peer: its own name, what made it (when known), its value as the peer gives
    it (any layout), and the first tensor the op read (None when the framework does not say)."""

    name: str
    kind: PeerKind | None
    array: np.ndarray
    input: np.ndarray | None = None
    detail: dict[str, Any] = field(default_factory=dict)  # e.g. {"activation": "softmax"}


@dataclass
class PeerLayer:
    """One weight layer of the peer, in npmnv2's layouts. bn: (gamma, beta, mean, var, eps) of the
    batch norm that follows it, or None (a peer that folded its batch norm has a bias instead);
    affine: (scale, shift) of a batch norm an exporter wrote as a Mul and an Add (tf2onnx)."""

    name: str
    kind: str  # "conv" | "depthwise" | "linear"
    kernel: np.ndarray
    bias: np.ndarray | None = None
    bn: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float] | None = None
    affine: tuple[np.ndarray, np.ndarray] | None = None  # a batch norm exported as x * scale + shift


@dataclass
class PeerRun:
    """What one run of a peer gave: its tensors in execution order, its weight layers, and which
    framework it was."""

    framework: str
    tensors: list[PeerTensor]
    layers: list[PeerLayer] = field(default_factory=list)
    layout: str = "NCHW"  # the layout the peer's 4-D tensors are in (NCHW or NHWC)
    input: np.ndarray | None = None  # the pixels the network's first op read, when the framework tells
    ordered: bool = True  # False: the tensors' order is not their execution order (a folder of .npy)


def need_peer_framework(module: str, extra: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"verifying this peer needs {module}: pip install {extra}") from None


def attach_batch_norm(layers: list[PeerLayer], gamma, beta, mean, var, eps: float) -> None:
    """A batch norm belongs to the weight layer just before it."""
    if layers and layers[-1].bn is None and layers[-1].kernel.shape[-1] == len(gamma):
        layers[-1].bn = (*tuple(np.asarray(a, np.float64) for a in (gamma, beta, mean, var)), float(eps))


def torch_primitives(torch: Any) -> list[tuple[type, str]]:
    """torch's modules whose computation npmnv2 knows, by class (subclasses included: timm's
    `Conv2dSame` is a Conv2d that pads in its forward, its `BatchNormAct2d` a BatchNorm2d that
    applies its activation inside)."""
    nn = torch.nn
    return [
        (nn.Conv2d, "conv"),
        (nn.BatchNorm2d, "batch_norm"),
        (nn.SyncBatchNorm, "batch_norm"),
        (nn.ReLU6, "activation"),
        (nn.ReLU, "activation"),
        (nn.Hardtanh, "activation"),
        (nn.Linear, "linear"),
        (nn.AdaptiveAvgPool2d, "pool"),
        (nn.AvgPool2d, "pool"),
        (nn.Softmax, "softmax"),
        (nn.Flatten, "other"),
        (nn.Dropout, "skip"),
        (nn.Dropout2d, "skip"),
        (nn.Identity, "skip"),
    ]


def torch_kind(mod: Any, primitives: list[tuple[type, str]]) -> str | None:
    return next((kind for cls, kind in primitives if isinstance(mod, cls)), None)


def _torch_activation(mod: Any, torch: Any) -> str | None:
    """What activation a module applies: relu6 (ReLU6, or Hardtanh(0, 6)), relu, or None."""
    nn = torch.nn
    if isinstance(mod, nn.ReLU6) or (isinstance(mod, nn.Hardtanh) and (mod.min_val, mod.max_val) == (0.0, 6.0)):
        return "relu6"
    if isinstance(mod, nn.ReLU):
        return "relu"
    if isinstance(mod, nn.Hardtanh):
        return f"hardtanh({mod.min_val:g}, {mod.max_val:g})"
    return None


def _fused_activation(mod: Any, torch: Any) -> tuple[str | None, bool]:
    """The activation a batch norm applies inside (timm's BatchNormAct2d: its `act` child), and
    whether it has any child npmnv2 does not know (then it is not read as a fused batch norm)."""
    activation, unknown = None, False
    for child in mod.children():
        found = _torch_activation(child, torch)
        if found:
            activation = found
        elif not isinstance(child, (torch.nn.Identity, torch.nn.Dropout, torch.nn.Dropout2d)):
            unknown = True
    return activation, unknown


def torch_peer(module: Any, pixel_values: np.ndarray) -> PeerRun:
    """A `torch.nn.Module`, run on pixel_values (NCHW) in eval mode with a forward hook on every
    module: each module's output and input, copied (ReLU6(inplace=True) overwrites its input), in
    execution order. Modules are read by what they compute (isinstance of torch's conv, batch norm,
    activation, linear and pooling modules), never by class name; a batch norm with an activation
    inside (timm's BatchNormAct2d) is one fused op. A container's output is kept only when it is not
    its last child's output (an inverted residual block's output is, with its skip connection, a
    tensor no leaf module makes)."""
    torch = need_peer_framework("torch", "torch==2.13.0")
    primitives = torch_primitives(torch)
    records: list[tuple[str, Any, np.ndarray, np.ndarray | None]] = []
    pending: dict[int, np.ndarray | None] = {}  # module id -> its input, read before an in-place op changes it
    handles = []

    def as_array(value: Any) -> np.ndarray | None:
        if isinstance(value, (tuple, list)) and value:
            value = value[0]
        if hasattr(value, "logits"):  # transformers' output dataclass
            value = value.logits
        return value.detach().cpu().numpy().copy() if isinstance(value, torch.Tensor) else None

    def pre_hook(mod: Any, inputs: Any, name: str) -> None:
        pending[id(mod)] = as_array(inputs)

    def hook(mod: Any, inputs: Any, output: Any, name: str) -> None:
        out = as_array(output)
        if out is not None:
            records.append((name, mod, out, pending.pop(id(mod), None)))

    inside_leaf: list[str] = []  # modules inside a module read as one op (a fused batch norm's activation)
    for name, mod in module.named_modules():
        kind = torch_kind(mod, primitives)
        if not name or kind == "skip" or any(name.startswith(prefix + ".") for prefix in inside_leaf):
            continue
        if kind is not None and list(mod.children()):
            inside_leaf.append(name)
        handles.append(mod.register_forward_pre_hook(lambda m, i, n=name: pre_hook(m, i, n)))
        handles.append(mod.register_forward_hook(lambda m, i, o, n=name: hook(m, i, o, n)))
    try:
        with torch.no_grad():
            module.eval()
            dtype = next((p.dtype for p in module.parameters()), torch.float32)
            module(torch.from_numpy(np.ascontiguousarray(pixel_values)).to(dtype))
    finally:
        for handle in handles:
            handle.remove()
    tensors, previous = [], None
    for name, mod, out, inp in records:
        kind = torch_kind(mod, primitives)
        detail: dict[str, Any] = {}
        if kind is None:  # a container: keep it only when it computed something its children did not
            if previous is not None and previous.shape == out.shape and np.array_equal(previous, out):
                continue
            kind = "add" if inp is not None and inp.shape == out.shape else "other"
        elif kind == "conv":
            kind = torch_weight_kind(mod)
        elif kind == "batch_norm":
            activation, unknown = _fused_activation(mod, torch)
            if activation:
                detail["activation"] = activation
            if unknown:
                kind = "other"
        elif kind == "activation":
            detail["activation"] = _torch_activation(mod, torch)
        tensors.append(PeerTensor(name, kind, out, inp, detail))
        previous = out
    first_input = records[0][3] if records else None  # what the network's first module read
    return PeerRun("torch", tensors, torch_layers(module), "NCHW", first_input)


def torch_weight_kind(mod: Any) -> str | None:
    """What weight layer a torch module is, by what it is (subclasses included): "conv", "depthwise"
    (groups == in == out channels), "batch_norm", "linear", or None. The one rule `torch_peer`,
    `torch_layers` and `verify.set_weights` read modules by."""
    nn = need_peer_framework("torch", "torch==2.13.0").nn
    if isinstance(mod, nn.Conv2d):
        return "depthwise" if mod.groups > 1 and mod.groups == mod.in_channels == mod.out_channels else "conv"
    if isinstance(mod, (nn.BatchNorm2d, nn.SyncBatchNorm)):
        return "batch_norm"
    return "linear" if isinstance(mod, nn.Linear) else None


def torch_layers(module: Any) -> list[PeerLayer]:
    """The module's conv, batch-norm and linear weights in the order the modules are defined (which
    is the order they run in, for every MobileNetV2 written as a stack of modules), whether each
    module is called or its weights are used functionally. Read by what the modules are (instances
    of torch's Conv2d, batch norms and Linear, subclasses included), not by class name."""
    torch = need_peer_framework("torch", "torch==2.13.0")
    layers: list[PeerLayer] = []
    for name, mod in module.named_modules():
        kind = torch_weight_kind(mod)
        if kind in ("conv", "depthwise"):
            kernel = torch_kernel(kind, mod.weight.detach().cpu().numpy())
            bias = None if mod.bias is None else mod.bias.detach().cpu().numpy().astype(np.float64)
            layers.append(PeerLayer(name, kind, kernel, bias))
        elif kind == "batch_norm":
            weight = mod.weight if mod.weight is not None else torch.ones(mod.num_features)
            bias = mod.bias if mod.bias is not None else torch.zeros(mod.num_features)
            params = [t.detach().cpu().numpy() for t in (weight, bias, mod.running_mean, mod.running_var)]
            attach_batch_norm(layers, *params, eps=mod.eps)
        elif kind == "linear":
            bias = None if mod.bias is None else mod.bias.detach().cpu().numpy().astype(np.float64)
            layers.append(PeerLayer(name, "linear", torch_kernel("linear", mod.weight.detach().cpu().numpy()), bias))
    return layers


def oihw_conv_kind(groups: int, shape: tuple[int, ...]) -> str:
    """ "depthwise" for an (O, I, KH, KW) convolution weight with one input channel per group and one
    group per output channel, else "conv" (PyTorch's and ONNX's layout)."""
    return "depthwise" if groups > 1 and shape[1] == 1 and shape[0] == groups else "conv"


def torch_kernel(kind: str, weight: np.ndarray) -> np.ndarray:
    """A PyTorch (or ONNX: the same layouts) weight in npmnv2's layout, float64: conv (O, I, KH, KW)
    -> HWIO; depthwise (C, 1, KH, KW) -> (KH, KW, C); linear (L, C_in) -> (C_in, L)."""
    w = np.asarray(weight, np.float64)
    if kind == "depthwise":
        return w[:, 0].transpose(1, 2, 0)
    return w.T if kind == "linear" else w.transpose(2, 3, 1, 0)


_KERAS_KINDS = {
    "Conv2D": "conv",
    "DepthwiseConv2D": "depthwise",
    "BatchNormalization": "batch_norm",
    "ReLU": "activation",
    "Activation": "activation",
    "Add": "add",
    "GlobalAveragePooling2D": "pool",
    "AveragePooling2D": "pool",
    "Dense": "linear",
    "Softmax": "softmax",
    "Resize": "resize",
}


def keras_backend() -> str:
    """The Keras backend a `.keras` file is run on: $KERAS_BACKEND, else the one of an already
    imported Keras, else Keras's own default (TensorFlow) when installed, else torch, else JAX."""
    import importlib.util
    import sys

    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    if "keras" in sys.modules:
        return str(sys.modules["keras"].backend.backend())
    return next((b for b in ("tensorflow", "torch", "jax") if importlib.util.find_spec(b) is not None), "tensorflow")


MAX_KERAS_BYTES = 1 << 29  # 512 MiB on disk


MAX_KERAS_UNPACKED = 1 << 30  # bytes all members of a .keras zip may unpack to (a MobileNetV2: ~15 MB)


MAX_KERAS_CONFIG = 16 << 20  # its config.json: a MobileNetV2's is ~100 kB


KERAS_MEMORY_LIMIT = 4 << 30  # bytes of address space Keras's child may map (a MobileNetV2 run: ~1 GiB)


KERAS_TIMEOUT = 300.0


def checked_keras_file(path: str | os.PathLike) -> tuple[Path, dict[str, Any]]:
    """A `.keras` file checked from its zip directory before Keras reads it, and its config.json:
    a regular file of at most MAX_KERAS_BYTES whose members unpack to at most MAX_KERAS_UNPACKED
    bytes in all and whose config.json, at most MAX_KERAS_CONFIG, is JSON (a 2.9 MB file whose
    config deflates to 3 GB, or whose weights Keras would unpack to 2 GB, is refused here)."""
    import json
    import zipfile

    from ..formats.errors import WeightFileError, regular_file

    path = regular_file(Path(path), ".keras file")
    where = f".keras file {str(path)!r}"
    if path.stat().st_size > MAX_KERAS_BYTES:
        raise WeightFileError(f"{where} is {path.stat().st_size:,} bytes; npmnv2 reads at most {MAX_KERAS_BYTES:,}.")
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            unpacked = sum(m.file_size for m in members)
            if unpacked > MAX_KERAS_UNPACKED:
                raise WeightFileError(
                    f"{where} unpacks to {unpacked:,} bytes; npmnv2 reads .keras files of at most "
                    f"{MAX_KERAS_UNPACKED:,}."
                )
            config = next((m for m in members if m.filename == "config.json"), None)
            if config is None or config.file_size > MAX_KERAS_CONFIG:
                size = "none" if config is None else f"{config.file_size:,} bytes"
                raise WeightFileError(
                    f"{where}: its config.json is {size}; a Keras model's is at most {MAX_KERAS_CONFIG:,}."
                )
            text = archive.read(config)[: MAX_KERAS_CONFIG + 1]
    except (zipfile.BadZipFile, OSError, RuntimeError, ValueError) as err:
        if isinstance(err, WeightFileError):
            raise
        reason = " ".join(str(err).split())[:200]
        raise WeightFileError(f"{where} is not a Keras 3 archive (a zip): {reason}.") from None
    try:
        described = json.loads(text)
    except ValueError as err:
        raise WeightFileError(f"{where}: its config.json is not JSON ({err}).") from None
    if not isinstance(described, dict):
        raise WeightFileError(f"{where}: its config.json is not a Keras model's config (a JSON object).")
    _check_keras_layers(described, where, depth=0)
    return path, described


# The Keras layers a MobileNetV2 or DeepLabV3 port is built from (keras.applications, hand-built
# heads, preprocessing layers); a model holding anything else is refused before Keras builds it.
KERAS_LAYERS = {
    "InputLayer", "Conv2D", "DepthwiseConv2D", "SeparableConv2D", "BatchNormalization", "ReLU", "Activation",
    "Add", "ZeroPadding2D", "GlobalAveragePooling2D", "AveragePooling2D", "Dropout", "SpatialDropout2D", "Dense",
    "Reshape", "Flatten", "Softmax", "Rescaling", "Normalization", "Resizing", "UpSampling2D", "Concatenate",
    "Multiply", "Identity",
}  # fmt: skip


KERAS_MODELS = {"Functional", "Sequential", "Model"}


def _check_keras_layers(config: dict[str, Any], where: str, depth: int) -> None:
    """Every layer of a Keras model config (and of models nested in it) is one of KERAS_LAYERS."""
    from ..formats.errors import WeightFileError

    name = config.get("class_name")
    if name not in KERAS_MODELS or depth > 4:
        raise WeightFileError(f"{where}: its config.json describes a {str(name)[:60]!r}, not a Keras model.")
    layers = _config_layers(config)
    if layers is None:
        raise WeightFileError(f"{where}: its config.json lists no layers.")
    for layer in layers:
        kind = layer.get("class_name") if isinstance(layer, dict) else None
        if kind in KERAS_MODELS:
            _check_keras_layers(layer, where, depth + 1)
        elif kind not in KERAS_LAYERS:
            raise WeightFileError(
                f"{where}: it holds a {str(kind)[:60]!r} layer, which a MobileNetV2 does not contain (it has "
                "convolutions, batch norms, activations, adds, padding, pooling and a dense head); npmnv2 refuses "
                "it before Keras builds it."
            )


def _config_layers(config: dict[str, Any]) -> list[Any] | None:
    """The `layers` list of a Keras model's config (`{"class_name": ..., "config": {"layers": [...]}}`)."""
    inner = config.get("config")
    layers = inner.get("layers") if isinstance(inner, dict) else None
    return layers if isinstance(layers, list) else None


def keras_file_input_size(path: str | os.PathLike) -> tuple[int, int] | None:
    """(H, W) of a `.keras` file's input layer, read from its checked config.json (Keras is not run)."""
    _, described = checked_keras_file(path)
    for layer in _config_layers(described) or []:
        if isinstance(layer, dict) and layer.get("class_name") == "InputLayer":
            shape = (layer.get("config") or {}).get("batch_shape")
            if isinstance(shape, list) and len(shape) == 4 and all(type(d) is int and d > 0 for d in shape[1:3]):
                return shape[1], shape[2]
    return None


def keras_file_peer(path: str | os.PathLike, pixel_values: np.ndarray) -> PeerRun:
    """A `.keras` file run by Keras (on `keras_backend()`) in the isolated child process, in safe
    mode, with a memory limit and a timeout (`npmnv2.verify.child`), after `checked_keras_file`."""
    import json
    import tempfile

    from .child import Limits, run_child

    path, _ = checked_keras_file(path)
    path = path.resolve()  # the child runs in its own empty folder
    with tempfile.TemporaryDirectory(prefix="npmnv2-keras-") as folder:
        work = Path(folder)
        pixels = np.ascontiguousarray(nchw_to_nhwc(pixel_values), np.float32)
        np.save(work / "pixels.npy", pixels, allow_pickle=False)
        args = [str(path), str(work / "pixels.npy"), str(work / "out.npz"), str(work / "layers.json")]
        limits = Limits(KERAS_MEMORY_LIMIT, KERAS_TIMEOUT)
        run_child("keras", args, file=path, what="Keras", limits=limits, workdir=work, backend=keras_backend())
        described = json.loads((work / "layers.json").read_text())
        with np.load(work / "out.npz", allow_pickle=False) as stored:
            arrays = {k: stored[k] for k in stored.files}
    return keras_run(described, arrays)


def keras_peer(model: Any, pixel_values: np.ndarray) -> PeerRun:
    """A Keras 3 model (functional, e.g. `keras.applications.MobileNetV2`), on any backend: one
    model that outputs every layer's output, and every layer's input, run on pixel_values given
    as NHWC (Keras's layout) in this process (`keras_record`)."""
    from .keras_record import record

    keras = need_peer_framework("keras", "keras")
    return keras_run(*record(keras, model, nchw_to_nhwc(pixel_values)))


def keras_run(described: list[dict[str, Any]], arrays: dict[str, np.ndarray]) -> PeerRun:
    """The PeerRun of a Keras record (`keras_record.record`): weight layers in npmnv2's layouts,
    ReLU layers as relu6 when capped at 6, Dense layers with a softmax activation marked as such."""
    tensors, layers = [], []
    for i, entry in enumerate(described):
        cls, name = entry["class"], entry["name"]
        kind = _KERAS_KINDS.get(cls, "other")
        detail: dict[str, Any] = {}
        weights = {short: arrays[f"w{i}.{short}"] for short in entry["weights"]}
        if cls == "Conv2D":
            layers.append(PeerLayer(name, "conv", weights["kernel"].astype(np.float64), weights.get("bias")))
        elif cls == "DepthwiseConv2D":
            kernel = weights["kernel"][:, :, :, 0].astype(np.float64)  # (KH, KW, C, 1) -> (KH, KW, C)
            layers.append(PeerLayer(name, "depthwise", kernel, weights.get("bias")))
        elif cls == "BatchNormalization":
            mean = weights["moving_mean"]  # scale=False / center=False: no gamma / beta
            attach_batch_norm(
                layers,
                weights.get("gamma", np.ones_like(mean)),
                weights.get("beta", np.zeros_like(mean)),
                mean,
                weights["moving_variance"],
                entry["epsilon"],
            )
        elif cls == "Dense":
            layers.append(PeerLayer(name, "linear", weights["kernel"].astype(np.float64), weights.get("bias")))
        activation = entry["activation"]
        if cls == "ReLU":
            detail["activation"] = "relu6" if entry["max_value"] == 6 else "relu"
        elif activation and activation not in ("linear",):
            detail["activation"] = activation
            if activation == "softmax":
                detail["softmax"] = True
        tensors.append(PeerTensor(name, kind, arrays[f"o{i}"], arrays[f"i{i}"], detail))
    first_conv = next((t for t in tensors if t.kind in ("conv", "depthwise")), None)
    return PeerRun("keras", tensors, layers, "NHWC", None if first_conv is None else first_conv.input)


def saved_peer(source: Any) -> PeerRun:
    """A mapping name -> array, an `.npz` file, or a folder of `.npy` files, with the port's own
    names, in the order given (a folder: sorted by file name). No weights, no kinds: the tensors
    are matched by shape and value, and `check` needs model= for the weights."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir():
            files = sorted(path.glob("*.npy"), key=lambda f: _natural(f.stem))
            if not files:
                raise ValueError(f"verify: folder {str(path)!r} holds no .npy files.")
            arrays, left = {}, BUDGET
            for f in files:  # the budget holds for the folder as a whole
                arrays[f.stem] = read_npy(f, "verify: .npy file", budget=left)
                left -= arrays[f.stem].nbytes
        elif path.suffix == ".npz":
            arrays = read_npz(path, "verify: .npz file")
        else:
            raise ValueError(f"verify: {str(path)!r} is not an .npz file or a folder of .npy files.")
    else:
        arrays = dict(source)
    tensors = [PeerTensor(str(k), None, np.asarray(v)) for k, v in arrays.items()]
    layout = "NHWC" if any(t.array.ndim == 4 and t.array.shape[-1] > t.array.shape[1] for t in tensors[:3]) else "NCHW"
    folder = isinstance(source, (str, os.PathLike)) and Path(source).is_dir()
    return PeerRun("saved", tensors, [], layout, ordered=not folder)


def _natural(name: str) -> list[Any]:
    """A name's sort key with its numbers as numbers: t2 before t10, layer.2 before layer.10."""
    import re

    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]

"""What a port is checked against: the spec (a preset or a `MobileNetV2Config`), an npmnv2 model with
the port's own weights read by structure, and weights random enough to make bugs visible.

Hyperparameters (batch-norm eps, padding, activations, strides) always come from the spec, never
from the peer: the peer is what is being checked.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from ..architecture import layer_specs
from ..configuration_mobilenet_v2 import MobileNetV2Config
from ..layer_kinds import layer_kind
from ..modeling_mobilenet_v2 import MobileNetV2ForImageClassification, MobileNetV2ForSemanticSegmentation
from ..trace import Trace
from ..warnings import NpMnV2Warning
from .peers import PeerRun, torch_weight_kind

# The common specs of a MobileNetV2 port (depth multiplier 1.0 unless given).
PRESETS: dict[str, dict[str, Any]] = {
    # transformers' MobileNetV2ForImageClassification: TF SAME padding, eps 1e-3, 1001 classes (0 = background)
    "transformers": {"tf_padding": True, "layer_norm_eps": 1e-3, "num_labels": 1001},
    # torchvision.models.mobilenet_v2: symmetric padding, eps 1e-5, 1000 classes
    "torchvision": {"tf_padding": False, "layer_norm_eps": 1e-5, "num_labels": 1000},
    # keras.applications.MobileNetV2: explicit (0, 1, 0, 1) padding before stride 2 (TF SAME for even
    # sizes), eps 1e-3, 1000 classes, a softmax inside its last layer
    "keras": {"tf_padding": True, "layer_norm_eps": 1e-3, "num_labels": 1000},
}


def spec_config(config: str | MobileNetV2Config | dict[str, Any], **overrides: Any) -> MobileNetV2Config:
    """A preset name, a config, or config fields, as a `MobileNetV2Config`."""
    if isinstance(config, MobileNetV2Config):
        return MobileNetV2Config.from_dict({**config.to_dict(), **overrides}) if overrides else config
    if isinstance(config, str):
        if config not in PRESETS:
            raise ValueError(
                f"verify: unknown preset {config!r}; the presets are {', '.join(PRESETS)}, or pass a MobileNetV2Config."
            )
        return MobileNetV2Config(**{**PRESETS[config], **overrides})
    if isinstance(config, dict):
        return MobileNetV2Config(**{**config, **overrides})
    raise TypeError(
        f"verify: config must be a preset name, a MobileNetV2Config or a dict, got {type(config).__name__}."
    )


DEPTH_MULTIPLIERS = (1.0, 0.35, 0.5, 0.75, 1.3, 1.4)  # the published widths, the usual one first


def fit_preset(spec: MobileNetV2Config, run: PeerRun, *, task: str = "classification") -> MobileNetV2Config:
    """A preset's hyperparameters with the port's architecture: the depth multiplier whose layers
    have the port's kernel shapes, and the number of labels of its classifier (a preset names a
    family of ports, not one width). The spec as it is when it already fits or nothing does."""
    if not run.layers:
        return spec
    linear = run.layers[-1].kernel.shape[-1] if run.layers[-1].kind == "linear" else spec.num_labels
    candidates = [spec.depth_multiplier, *DEPTH_MULTIPLIERS]
    for multiplier in dict.fromkeys(candidates):
        fields = {k: v for k, v in spec.to_dict().items() if k not in ("id2label", "label2id")}
        config = MobileNetV2Config.from_dict({**fields, "depth_multiplier": multiplier, "num_labels": linear})
        specs = peer_specs(layer_specs(config, task), run, task)  # without building a model
        if len(specs) == len(run.layers) and all(
            layer.kernel.shape == _kernel_shape(s) for s, layer in zip(specs, run.layers, strict=True)
        ):
            return config
    return spec


def computed_specs(specs: list[Any], task: str) -> list[Any]:
    """The layers the task's network computes with: a segmentation model never uses the backbone's
    last 1x1 conv (`conv_1x1`: DeepLabV3's head reads the last block), so exports leave it out."""
    return [s for s in specs if not (task == "segmentation" and s.name == "conv_1x1")]


def peer_specs(specs: list[Any], run: PeerRun, task: str) -> list[Any]:
    """The spec's layers the peer's weight layers stand for, one each: all of them, or the ones the
    task computes with when the peer (an export) left the unused one out and that makes them fit."""
    computed = computed_specs(specs, task)
    return computed if len(run.layers) == len(computed) != len(specs) else specs


def _kernel_shape(spec: Any) -> tuple[int, ...]:
    """A layer's kernel shape in npmnv2's layouts (HWIO, (KH, KW, C) depthwise, (C_in, L) linear)."""
    return layer_kind(spec).kernel_shape(spec)


def _model_class(task: str) -> type:
    return MobileNetV2ForSemanticSegmentation if task == "segmentation" else MobileNetV2ForImageClassification


def model_from_peer(run: PeerRun, config: MobileNetV2Config, *, task: str = "classification") -> Any:
    """An npmnv2 model of the spec `config` holding the peer's weights, read by structure: the peer's
    weight layers in execution order, one per npmnv2 layer, kinds and shapes checked. A peer whose
    batch norm was folded into its conv (a bias, no batch norm) gets an identity batch norm."""
    model = _model_class(task)(config, dtype=np.float64, seed=0)
    specs = peer_specs(model.specs, run, task)
    if len(run.layers) != len(specs):
        kinds = ", ".join(f"{layer.name} ({layer.kind} {layer.kernel.shape})" for layer in run.layers[-3:])
        raise ValueError(
            f"verify: the {run.framework} peer has {len(run.layers)} weight layers, the spec {len(specs)} "
            f"(depth multiplier {config.depth_multiplier}, {config.num_labels} labels); the peer's last ones: "
            f"{kinds}. Give the config the port implements (config=), or model= with its weights."
        )
    for spec, layer in zip(specs, run.layers, strict=True):
        ours = model.params[spec.name]
        want = layer_kind(spec).peer_kind
        if layer.kind != want or layer.kernel.shape != ours["kernel"].shape:
            raise ValueError(
                f"verify: the peer's layer {layer.name!r} ({layer.kind}, kernel {layer.kernel.shape} in npmnv2's "
                f"layout) does not fit {spec.name!r} ({want}, kernel {ours['kernel'].shape}); the port's layers "
                "are matched in execution order, so an extra or missing layer before it shifts them."
            )
        params = {"kernel": layer.kernel.astype(np.float64)}
        if spec.bias or layer_kind(spec).pooled:
            bias = layer.bias if layer.bias is not None else np.zeros(spec.c_out)
            params["bias"] = np.asarray(bias, np.float64)
        if spec.eps is not None:
            if layer.bn is not None:
                gamma, beta, mean, var, _eps = layer.bn  # the peer's eps is not taken: the spec's is
                params.update(gamma=gamma, beta=beta, mean=mean, var=var)
            elif layer.affine is not None:  # exported as x * scale + shift: the conv's bias goes through it
                scale, shift = layer.affine
                bias = np.zeros(spec.c_out) if layer.bias is None else np.asarray(layer.bias, np.float64)
                params.update(
                    gamma=scale,
                    beta=shift + scale * bias,
                    mean=np.zeros(spec.c_out),
                    var=np.full(spec.c_out, 1 - spec.eps),
                )
            else:  # folded by the exporter: conv + bias == conv + identity batch norm
                bias = np.zeros(spec.c_out) if layer.bias is None else np.asarray(layer.bias, np.float64)
                params.update(
                    gamma=np.ones(spec.c_out),
                    beta=bias,
                    mean=np.zeros(spec.c_out),
                    var=np.full(spec.c_out, 1 - spec.eps),
                )
        model.params[spec.name] = params
    return model


class _Calibrate(Trace):
    """A recorder that, at each convolution with a batch norm after it, sets the running mean and
    variance to the statistics of that convolution's output on the calibration image, so that every
    normalized tensor has mean beta and standard deviation gamma: realistic magnitudes everywhere."""

    def __init__(self, model: Any, rng: np.random.Generator) -> None:
        super().__init__(keep=[], tf_padding=model.config.tf_padding)
        self.model, self.rng = model, rng

    def add(self, name: str, kind: str, output: np.ndarray, **info: Any) -> np.ndarray:
        layer = (info.get("attrs") or {}).get("layer") or (info["spec"].name if info.get("spec") else None)
        if kind == "convolution" and layer and "gamma" in self.model.params[layer]:
            p = self.model.params[layer]
            c = output.shape[-1]
            p["mean"] = output.mean(axis=(0, 1, 2)).astype(p["mean"].dtype)
            p["var"] = output.var(axis=(0, 1, 2)).astype(p["var"].dtype) + 1e-2
            p["gamma"] = self.rng.uniform(0.5, 1.5, c).astype(p["gamma"].dtype)
            p["beta"] = self.rng.uniform(-0.5, 0.5, c).astype(p["beta"].dtype) + (
                1.0
                if name.endswith(("expand_1x1.convolution", "conv_3x3.convolution", "first_conv.convolution"))
                else 0.0
            )
        return super().add(name, kind, output, **info)


def random_weights(
    config: str | MobileNetV2Config, seed: int = 0, *, task: str = "classification", dtype: Any = np.float32
) -> Any:
    """An npmnv2 model with verification-grade random weights: He-scale kernels (std sqrt(2 / fan_in)),
    and batch-norm statistics measured on a calibration image, so that every layer's activations
    have a realistic magnitude (order 1, ReLU6 clipping a fair share). transformers' own random
    init gives activations of 1e-12 and logits of 1e-22, where no bug can show."""
    config = spec_config(config)
    model = _model_class(task)(config, dtype=dtype, seed=seed)
    rng = np.random.default_rng(seed)
    for spec in model.specs:
        p = model.params[spec.name]
        kernel = p["kernel"]
        fan_in = layer_kind(spec).fan_in(kernel.shape)
        p["kernel"] = (rng.standard_normal(kernel.shape) * np.sqrt(2.0 / fan_in)).astype(dtype)
        if "bias" in p:
            p["bias"] = (rng.standard_normal(p["bias"].shape) * 0.1).astype(dtype)
    image = calibration_image(config, rng)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NpMnV2Warning)
        model.forward(image.astype(dtype), rec=_Calibrate(model, rng))
    return model


def calibration_image(config: MobileNetV2Config, rng: np.random.Generator) -> np.ndarray:
    """A smooth random image in [-1, 1] (N, 3, H, W) at the config's image size: blobs, not noise."""
    h, w = config.image_hw
    coarse = rng.uniform(-1, 1, (1, config.num_channels, h // 16 + 2, w // 16 + 2))
    ys, xs = np.linspace(0, coarse.shape[2] - 1.001, h), np.linspace(0, coarse.shape[3] - 1.001, w)
    y0, x0 = ys.astype(int), xs.astype(int)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    c = coarse[0]
    img = (
        c[:, y0][:, :, x0] * (1 - fy) * (1 - fx)
        + c[:, y0 + 1][:, :, x0] * fy * (1 - fx)
        + c[:, y0][:, :, x0 + 1] * (1 - fy) * fx
        + c[:, y0 + 1][:, :, x0 + 1] * fy * fx
    )
    return np.clip(img[None] + rng.normal(0, 0.05, img[None].shape), -1, 1)


def set_weights(port: Any, model: Any) -> Any:
    """Write an npmnv2 model's weights into a port by structure (the reverse of reading them): its
    convolutions, batch norms and linear layers in execution order, in the port's own layouts. For
    checking a port that has no trained weights yet with realistic ones (`random_weights`): a
    framework's own random init makes activations vanish, and then no bug can show.

    port: a `torch.nn.Module` or a Keras 3 model; model: an npmnv2 model of the same architecture.
    Returns the port. Raises ValueError naming the first layer whose kind or shape does not fit.
    """
    bases = [c.__module__ for c in type(port).__mro__]
    targets = _keras_targets(port) if any(b.startswith("keras") for b in bases) else _torch_targets(port)
    specs = [s for s in model.specs]
    weight_targets = [t for t in targets if t[0] != "batch_norm"]
    if len(weight_targets) != len(specs):
        raise ValueError(
            f"verify.set_weights: the port has {len(weight_targets)} conv and linear layers, the model {len(specs)}."
        )
    it, spec, p = iter(specs), None, None
    for kind, name, write in targets:
        if kind == "batch_norm":
            if p is None or "gamma" not in p:
                raise ValueError(f"verify.set_weights: the port's batch norm {name!r} follows no layer with one.")
            write(p["gamma"], p["beta"], p["mean"], p["var"])
            continue
        spec = next(it)
        p = {k: np.asarray(v, np.float32) for k, v in model.params[spec.name].items()}
        want = layer_kind(spec).peer_kind
        if kind != want:
            raise ValueError(
                f"verify.set_weights: the port's layer {name!r} is a {kind}, npmnv2's {spec.name} a {want}."
            )
        write(p["kernel"], p.get("bias"))
    return port


def _torch_targets(module: Any) -> list[tuple[str, str, Any]]:
    targets = []

    def conv(mod: Any, depthwise: bool) -> Any:
        def write(kernel: np.ndarray, bias: np.ndarray | None) -> None:
            w = kernel.transpose(2, 0, 1)[:, None] if depthwise else kernel.transpose(3, 2, 0, 1)
            _copy(mod.weight, w, mod)
            if mod.bias is not None:
                _copy(mod.bias, bias if bias is not None else np.zeros(len(w), np.float32), mod)

        return write

    def linear(mod: Any) -> Any:
        def write(kernel: np.ndarray, bias: np.ndarray | None) -> None:
            _copy(mod.weight, kernel.T, mod)
            if mod.bias is not None:
                _copy(mod.bias, bias if bias is not None else np.zeros(kernel.shape[1], np.float32), mod)

        return write

    def batch_norm(mod: Any) -> Any:
        def write(gamma: np.ndarray, beta: np.ndarray, mean: np.ndarray, var: np.ndarray) -> None:
            for target, value in (
                (mod.weight, gamma),
                (mod.bias, beta),
                (mod.running_mean, mean),
                (mod.running_var, var),
            ):
                if target is not None:
                    _copy(target, value, mod)

        return write

    for name, mod in module.named_modules():
        kind = torch_weight_kind(mod)  # read the way `check` reads the port
        if kind in ("conv", "depthwise"):
            targets.append((kind, name, conv(mod, kind == "depthwise")))
        elif kind == "batch_norm":
            targets.append((kind, name, batch_norm(mod)))
        elif kind == "linear":
            targets.append((kind, name, linear(mod)))
    return targets


def _copy(target: Any, value: np.ndarray, mod: Any) -> None:
    import torch

    if tuple(target.shape) != tuple(value.shape):
        raise ValueError(
            f"verify.set_weights: {type(mod).__name__} wants {tuple(target.shape)}, the model gives {value.shape}."
        )
    with torch.no_grad():
        target.copy_(torch.from_numpy(np.ascontiguousarray(value)).to(target.dtype))


def _keras_targets(model: Any) -> list[tuple[str, str, Any]]:
    targets = []
    for layer in model.layers:
        cls = type(layer).__name__
        if cls in ("Conv2D", "DepthwiseConv2D", "Dense"):
            kind = {"Conv2D": "conv", "DepthwiseConv2D": "depthwise", "Dense": "linear"}[cls]

            def write(kernel: np.ndarray, bias: np.ndarray | None, layer: Any = layer, kind: str = kind) -> None:
                kernel = kernel[:, :, :, None] if kind == "depthwise" else kernel
                values = [kernel] + (
                    [bias if bias is not None else np.zeros(kernel.shape[-1], np.float32)] if layer.use_bias else []
                )
                layer.set_weights(values)

            targets.append((kind, layer.name, write))
        elif cls == "BatchNormalization":
            targets.append(("batch_norm", layer.name, lambda g, b, m, v, layer=layer: layer.set_weights([g, b, m, v])))
    return targets

"""transformers' parameter names and PyTorch layouts <-> npmnv2's parameters, and guessing a config.

npmnv2 keeps each layer's arrays under the layer's module path ("layer.3.expand_1x1") as
{"kernel", "bias", "gamma", "beta", "mean", "var"}, kernels HWIO (depthwise (KH, KW, C), the
linear classifier (C_in, L)). transformers names them "<path>.convolution.weight",
"<path>.normalization.running_mean", ... with OIHW kernels. Everything that converts between
the two lives here; it imports only the architecture.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import numpy as np

from .architecture import ConvSpec, Task, backbone_spec, layer_specs
from .configuration_mobilenet_v2 import MobileNetV2Config
from .layer_kinds import LAYER_KINDS, layer_kind

BACKBONE_PREFIX = "mobilenet_v2."  # transformers' prefix of the backbone inside a model with a head
HEAD_PREFIXES = ("classifier.", "segmentation_head.")
_BN_NAMES = {"weight": "gamma", "bias": "beta", "running_mean": "mean", "running_var": "var"}


def hf_name(spec: ConvSpec, task: Task) -> str:
    """The transformers module path of a layer inside a model of this task (backbone layers of a
    model with a head carry the `mobilenet_v2.` prefix)."""
    if task == "backbone" or f"{spec.name}.".startswith(HEAD_PREFIXES):
        return spec.name
    return BACKBONE_PREFIX + spec.name


def hf_tensor_shapes(spec: ConvSpec) -> dict[str, tuple[int, ...]]:
    """transformers' parameter names (suffixes) and PyTorch shapes for one layer."""
    kind = layer_kind(spec)
    shapes = {kind.torch_weight: kind.torch_shape(spec)}
    if spec.bias:
        shapes[kind.torch_weight.replace("weight", "bias")] = (spec.c_out,)
    if spec.eps is not None:
        for suffix in _BN_NAMES:
            shapes[f"normalization.{suffix}"] = (spec.c_out,)
    return shapes


def expected_shapes(config: MobileNetV2Config, task: Task) -> dict[str, tuple[int, ...]]:
    """Every transformers parameter name of a model class and config, with its PyTorch shape
    (batch-norm `num_batches_tracked` counters are accepted but not required)."""
    return {
        f"{hf_name(spec, task)}.{suffix}": shape
        for spec in layer_specs(config, task)
        for suffix, shape in hf_tensor_shapes(spec).items()
    }


def init_params(specs: list[ConvSpec], *, std: float, dtype: np.dtype, seed: int) -> dict[str, dict[str, np.ndarray]]:
    """Seeded random parameters in npmnv2's layout, initialised as transformers' `_init_weights`:
    conv and linear weights ~ N(0, std), biases 0, batch norm gamma=1, beta=0, mean=0, var=1."""
    rng = np.random.default_rng(seed)
    params = {}
    for spec in specs:
        shape = layer_kind(spec).kernel_shape(spec)
        p = {"kernel": rng.normal(0.0, std, shape).astype(dtype)}
        if spec.bias:
            p["bias"] = np.zeros(spec.c_out, dtype)
        if spec.eps is not None:
            p.update(
                gamma=np.ones(spec.c_out, dtype),
                beta=np.zeros(spec.c_out, dtype),
                mean=np.zeros(spec.c_out, dtype),
                var=np.ones(spec.c_out, dtype),
            )
        params[spec.name] = p
    return params


# ============================================================================ kernel layouts


def kernel_from_torch(weight: np.ndarray, kind: str) -> np.ndarray:
    """PyTorch -> npmnv2 kernel layout, by the kind's row of `LAYER_KINDS`.

    conv/pointwise: OIHW (C_out, C_in, KH, KW) -> HWIO (KH, KW, C_in, C_out)
    depthwise:      (C, 1, KH, KW)             -> (KH, KW, C)
    linear:         (L, C_in)                  -> (C_in, L)
    """
    return np.ascontiguousarray(LAYER_KINDS[kind].from_torch(weight))


def kernel_to_torch(kernel: np.ndarray, kind: str) -> np.ndarray:
    """The inverse of `kernel_from_torch`."""
    return np.ascontiguousarray(LAYER_KINDS[kind].to_torch(kernel))


def params_from_torch(spec: ConvSpec, tensors: Mapping[str, np.ndarray], dtype: np.dtype) -> dict[str, np.ndarray]:
    """One layer's npmnv2 parameters from its transformers tensors (names without the layer path).
    Every array is a new one in `dtype`: the caller's arrays are never kept or changed."""
    weight = layer_kind(spec).torch_weight  # "convolution.weight", or the bare nn.Linear's "weight"
    params = {"kernel": kernel_from_torch(tensors[weight], spec.kind).astype(dtype)}
    if spec.bias:
        params["bias"] = np.array(tensors[weight.replace("weight", "bias")], dtype=dtype)
    if spec.eps is not None:
        for hf, ours in _BN_NAMES.items():
            params[ours] = np.array(tensors[f"normalization.{hf}"], dtype=dtype)
    return params


def identity_batch_norm(bias: np.ndarray, eps: float) -> dict[str, np.ndarray]:
    """transformers batch-norm tensors that only add `bias`: gamma 1, beta = bias, mean 0, var 1 - eps,
    so (y - 0) / sqrt(1 - eps + eps) * 1 + bias = y + bias. How a folded conv fits transformers'
    bias-free conv + batch norm (see docs/decisions.md)."""
    c = bias.shape[0]
    return {
        "normalization.weight": np.ones(c, bias.dtype),
        "normalization.bias": bias,
        "normalization.running_mean": np.zeros(c, bias.dtype),
        "normalization.running_var": np.full(c, 1 - eps, bias.dtype),
    }


def params_to_torch(spec: ConvSpec, params: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The inverse of `params_from_torch`; a layer whose batch norm was folded gets an identity one."""
    weight = layer_kind(spec).torch_weight
    tensors = {weight: kernel_to_torch(params["kernel"], spec.kind)}
    if spec.bias:
        tensors[weight.replace("weight", "bias")] = params["bias"].copy()
    if spec.eps is not None:
        if "gamma" in params:
            tensors.update({f"normalization.{hf}": params[ours].copy() for hf, ours in _BN_NAMES.items()})
        else:  # folded
            tensors.update(identity_batch_norm(params["bias"].copy(), spec.eps))
        tensors["normalization.num_batches_tracked"] = np.zeros((), dtype=np.int64)
    return tensors


# ============================================================================ checking and guessing


def check_state_dict(
    arrays: Mapping[str, np.ndarray], config: MobileNetV2Config, task: Task, who: str, dtype: Any = None
) -> None:
    """Raise ValueError naming every missing, unexpected and mis-shaped tensor, a tensor with NaN or
    infinite values, or one that becomes infinite in `dtype` (float64 weights beyond float32's
    range); TypeError for a tensor that is not numbers."""
    expected = expected_shapes(config, task)
    missing = sorted(k for k in expected if k not in arrays)
    unexpected = sorted(k for k in arrays if k not in expected and not k.endswith("num_batches_tracked"))
    wrong = [f"{k} {arrays[k].shape} != {v}" for k, v in expected.items() if k in arrays and arrays[k].shape != v]
    if missing or unexpected or wrong:
        raise ValueError(describe_mismatch(missing, unexpected, wrong, who))
    for k, v in arrays.items():
        if k not in expected:
            continue
        if not (np.issubdtype(v.dtype, np.floating) or np.issubdtype(v.dtype, np.integer)):
            raise TypeError(f"{who}: {k} has dtype {v.dtype}, expected a number type.")
        if not np.isfinite(v).all():
            raise ValueError(
                f"{who}: {k} holds {int(np.count_nonzero(~np.isfinite(v)))} NaN or infinite values; every output "
                "would be NaN. The weights are corrupt or came from a diverged training run."
            )
        if dtype is not None and np.issubdtype(v.dtype, np.number) and v.size:
            limit = float(np.finfo(dtype).max)
            if float(np.max(np.abs(v.astype(np.float64)))) > limit:
                raise ValueError(
                    f"{who}: {k} holds values up to {float(np.max(np.abs(v.astype(np.float64)))):.3g}, beyond "
                    f"{np.dtype(dtype).name}'s largest number {limit:.3g}; in {np.dtype(dtype).name} they would be "
                    "infinite. Load with dtype=np.float64, or fix the weights."
                )
        if k.endswith("running_var") and (v < 0).any():
            raise ValueError(
                f"{who}: {k} has negative variances (min {float(v.min()):.3g}); a batch-norm running_var is >= 0, "
                "so the weights are corrupt or mislabelled."
            )


def describe_mismatch(missing: list[str], unexpected: list[str], wrong: list[str], who: str) -> str:
    def listed(names: list[str], sep: str = ", ") -> str:
        return f"{len(names)}: {sep.join(names[:8])}{' ...' if len(names) > 8 else ''}"

    parts = []
    if missing:
        parts.append(f"missing {listed(missing)}")
    if unexpected:
        parts.append(f"unexpected {listed(unexpected)}")
    if wrong:
        parts.append(f"wrong shape {listed(wrong, '; ')}")
    return (
        f"{who}: the state dict does not fit this config ({' | '.join(parts)}). "
        "Check that the config (depth_multiplier, num_labels, first_layer_is_expansion, ...) is the one "
        "the weights were trained with."
    )


def _backbone_shapes(config: MobileNetV2Config) -> dict[str, tuple[int, ...]]:
    """transformers' backbone tensor shapes (no `mobilenet_v2.` prefix) for a config."""
    return {f"{s.name}.{k}": v for s in backbone_spec(config).convs() for k, v in hf_tensor_shapes(s).items()}


def infer_config(tensors: Mapping[str, np.ndarray], **known: Any) -> dict[str, Any] | None:
    """Guess the config fields a set of transformers-named tensors was made with, from their shapes.

    Tries the published depth multipliers, channel divisors, expansion ratios and stem variants;
    returns the fields that reproduce every backbone shape (plus num_labels from the head), or None.
    `known` fixes fields that are known already. The conv_1x1 layer may be absent (DeepLab exports).
    """
    shapes = {k.removeprefix(BACKBONE_PREFIX): tuple(np.shape(v)) for k, v in tensors.items()}
    first = shapes.get("conv_stem.first_conv.convolution.weight")
    if first is None or len(first) != 4:
        return None
    fields: dict[str, Any] = {"num_channels": first[1]}
    for name in ("classifier.weight", "segmentation_head.classifier.convolution.weight"):
        if name in shapes:
            fields["num_labels"] = shapes[name][0]
    grid = itertools.product([0.35, 0.5, 0.75, 1.0, 1.3, 1.4], [8, 1], [6.0, 4.0], [True, False], [True, False])
    for dm, divisor, ratio, first_is_expansion, finegrained in grid:
        candidate = {
            "depth_multiplier": dm,
            "depth_divisible_by": divisor,
            "expand_ratio": ratio,
            "first_layer_is_expansion": first_is_expansion,
            "finegrained_output": finegrained,
        }
        candidate.update(known)
        config = MobileNetV2Config(num_channels=fields["num_channels"], **candidate)
        expected = _backbone_shapes(config)
        optional = {k for k in expected if k.startswith("conv_1x1.")}
        if all(shapes.get(k) == v for k, v in expected.items() if k not in optional or k in shapes):
            if not all(k in shapes for k in expected if k not in optional):
                continue
            return {**candidate, **fields}
    return None


def adapt_to_task(
    tensors: Mapping[str, np.ndarray], config: MobileNetV2Config, task: Task
) -> tuple[dict[str, np.ndarray], list[str], list[str]]:
    """Fit a checkpoint of a sibling class to `task`: add or strip the `mobilenet_v2.` prefix, and
    find the head it has that this task lacks, and the head this task needs that it lacks.

    Returns (the tensors renamed for `task`, names of head tensors to drop, names of head tensors
    to initialise afresh). When both lists are empty the head (or its absence) is left to the strict
    check to judge.
    """
    prefix = "" if task == "backbone" else BACKBONE_PREFIX
    adopted = {
        prefix + k.removeprefix(BACKBONE_PREFIX): v for k, v in tensors.items() if not k.startswith(HEAD_PREFIXES)
    }
    theirs = {k: v for k, v in tensors.items() if k.startswith(HEAD_PREFIXES)}
    ours = sorted(k for k in expected_shapes(config, task) if k.startswith(HEAD_PREFIXES))
    if theirs.keys() & set(ours) or (not theirs and not ours):
        adopted.update(theirs)  # same head (or none): strict checking decides
        return adopted, [], []
    return adopted, sorted(theirs), ours

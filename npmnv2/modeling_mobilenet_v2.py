"""MobileNetV2 (arXiv 1801.04381) and its DeepLabV3 head, layer by layer, in NumPy.

Mirrors transformers' `models/mobilenet_v2/modeling_mobilenet_v2.py`: the same module paths
(`conv_stem.first_conv`, `layer.12.conv_3x3`, `segmentation_head.conv_pool`, ...), parameter
names and outputs. Inside, activations are NHWC and kernels HWIO (see `ops`); the public edges
take and return transformers' NCHW.

The network itself is assembled once, in `npmnv2.network` (one conv layer -> the inverted
residual block -> the backbone -> pooling and the classifier -> the DeepLabV3 head); this module
holds the three model classes around it. `model.trace` runs the assembly with its textbook
layers (`network.TextbookLayers`, one op of `npmnv2.ops` per step); the plain `model(x)` runs the
same assembly with the folded fast layers of `npmnv2.fast.forward`. The architecture itself
(channels, strides, dilations) is data in `npmnv2.architecture`.
"""

from __future__ import annotations

import copy
import os
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from . import checkpoints, weights
from .architecture import (
    POOLER,
    ConvSpec,
    Task,
    backbone_spec,
    classifier_spec,
    deeplab_head_spec,
    layer_specs,
)
from .configuration_mobilenet_v2 import MobileNetV2Config
from .fast.forward import FastLayers, FoldCache, FoldedConv
from .formats.atomic import write_folder
from .model_inputs import (
    check_pixel_values,
    check_segmentation_labels,
    classification_loss,
    segmentation_loss,
)
from .network import Layers, TextbookLayers, backbone, classifier_layer, deeplab_head, pool
from .ops import fold_batch_norm, nchw_to_nhwc, nhwc_to_nchw
from .outputs import (
    BaseModelOutputWithPoolingAndNoAttention,
    ImageClassifierOutputWithNoAttention,
    SemanticSegmenterOutput,
)
from .parameters import ModelParams
from .state_dict import (
    adapt_to_task,
    check_state_dict,
    expected_shapes,
    hf_name,
    hf_tensor_shapes,
    infer_config,
    init_params,
    params_from_torch,
    params_to_torch,
)
from .summary import Summary, summarize
from .trace import (
    Recorder,
    Step,
    Trace,
    run_from,
    stream_steps,
    trace_forward,
)
from .warnings import NpMnV2Warning

# ============================================================================ helpers of the model classes


def _spatial_to_public(x: np.ndarray) -> np.ndarray:
    """(N, 1, 1, C) -> (N, C) as transformers returns pooled features and logits; a real grid
    (N, h, w, C) -> NCHW (N, C, h, w)."""
    return x[:, 0, 0, :] if x.shape[1:3] == (1, 1) else nhwc_to_nchw(x)


def _hidden(hidden: list[np.ndarray], wanted: bool | None) -> tuple[np.ndarray, ...] | None:
    return tuple(nhwc_to_nchw(h) for h in hidden) if wanted else None


def _as_asked(out: Any, return_dict: bool | None) -> Any:
    """The output record, or transformers' tuple for return_dict=False (None means True, as the
    config's use_return_dict does)."""
    if return_dict is None or return_dict is True:
        return out
    if return_dict is False:
        return out.to_tuple()
    raise TypeError(f"return_dict must be True, False or None, got {return_dict!r}.")


# ============================================================================ the three model classes


class MobileNetV2PreTrainedModel:
    """What the three model classes share: config, dtype, parameters, loading and tracing.

    Parameters live in `self.params` (`npmnv2.parameters.ModelParams`): a dict from layer name
    (transformers module path, "layer.3.expand_1x1", "segmentation_head.conv_pool", "classifier")
    to that layer's arrays in npmnv2's layout ("kernel" HWIO, "bias", batch-norm "gamma", "beta",
    "mean", "var"). Every array is the model's own read-only copy: an edit in place raises, and an
    array you assign (`model.params[name]["kernel"] = edited`) is copied (yours keeps its flags and
    is never changed), so the folded layers the plain forward runs can never go stale.
    """

    base_model_prefix = "mobilenet_v2"
    task: ClassVar[Task]

    def __init__(self, config: MobileNetV2Config | None = None, *, dtype: Any = np.float32, seed: int = 0) -> None:
        """A model with seeded random weights, initialised as transformers does: conv and linear
        weights ~ N(0, initializer_range), biases 0, batch norm gamma=1, beta=0, mean=0, var=1."""
        self._setup(config, dtype)
        self.params = init_params(self.specs, std=self.config.initializer_range, dtype=self.dtype, seed=seed)

    def _setup(self, config: MobileNetV2Config | None, dtype: Any) -> None:
        """Config, dtype and architecture; no parameters yet."""
        self.config = MobileNetV2Config() if config is None else config
        if not isinstance(self.config, MobileNetV2Config):
            raise TypeError(f"{type(self).__name__}: config must be a MobileNetV2Config, got {type(config).__name__}.")
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"{type(self).__name__}: dtype must be float32 or float64, got {self.dtype}.")
        self.arch = backbone_spec(self.config)
        self.specs = layer_specs(self.config, self.task)  # every layer with parameters, in execution order
        self.params = ModelParams()
        self.quantization: dict[str, tuple[float, int]] = {}  # activation (scale, zero point), from TFLite
        self._fold_cache = FoldCache()

    @property
    def params(self) -> ModelParams:
        """Layer name -> its read-only arrays (see the class docstring)."""
        return self._params

    @params.setter
    def params(self, layers: Mapping[str, Mapping[str, Any]]) -> None:
        self._params = layers if isinstance(layers, ModelParams) else ModelParams(layers)

    @classmethod
    def _empty(cls, config: MobileNetV2Config, dtype: Any):
        """A model without parameters, to be filled from a checkpoint (no random draws)."""
        model = cls.__new__(cls)
        cls._setup(model, config, dtype)
        return model

    def __copy__(self):
        """A shallow copy with its own fold cache and its own params mapping: the read-only arrays
        are shared until one model replaces one of its own."""
        new = type(self).__new__(type(self))
        vars(new).update({**vars(self), "_fold_cache": FoldCache()})
        new.params = ModelParams({name: dict(arrays) for name, arrays in self.params.items()})
        return new

    # -- transformers state dicts ----------------------------------------------
    def expected_state_dict_shapes(self) -> dict[str, tuple[int, ...]]:
        """transformers' parameter names for this class and config, with their PyTorch shapes
        (batch-norm `num_batches_tracked` counters are accepted but not required)."""
        return expected_shapes(self.config, self.task)

    @classmethod
    def from_state_dict(cls, state_dict: Mapping[str, Any], config: MobileNetV2Config, dtype: Any = np.float32):
        """Build a model from a mapping of transformers parameter names to arrays (PyTorch layouts).

        Every expected tensor must be present with its exact shape, and nothing else may be;
        otherwise ValueError lists what is missing, unexpected or mis-shaped. The model copies
        the arrays: yours are never kept or changed.
        """
        model = cls._empty(config, dtype)
        if not isinstance(state_dict, Mapping):
            raise TypeError(
                f"{cls.__name__}.from_state_dict: expected a mapping of names to arrays, got "
                f"{type(state_dict).__name__}."
            )
        bad_keys = [k for k in state_dict if not isinstance(k, str)]
        if bad_keys:
            raise TypeError(
                f"{cls.__name__}.from_state_dict: parameter names must be strings such as "
                f"'mobilenet_v2.conv_1x1.convolution.weight', got {bad_keys[:5]!r}."
            )
        arrays = {k: np.asarray(v) for k, v in state_dict.items()}
        check_state_dict(arrays, config, cls.task, f"{cls.__name__}.from_state_dict", dtype=model.dtype)
        for spec in model.specs:
            name = hf_name(spec, cls.task)
            tensors = {s: arrays[f"{name}.{s}"] for s in hf_tensor_shapes(spec)}
            model.params[spec.name] = params_from_torch(spec, tensors, model.dtype)
        return model

    def state_dict(self) -> dict[str, np.ndarray]:
        """transformers' parameter names -> new arrays in PyTorch layouts (OIHW kernels)."""
        return {
            f"{hf_name(spec, self.task)}.{suffix}": value
            for spec in self.specs
            for suffix, value in params_to_torch(spec, self.params[spec.name]).items()
        }

    def num_parameters(self) -> int:
        """Learnable parameters, batch norm included (transformers' `num_parameters()`)."""
        return sum(
            int(np.prod(s))
            for k, s in self.expected_state_dict_shapes().items()
            if not k.endswith(("running_mean", "running_var"))
        )

    # -- files ---------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls, source: str | os.PathLike, dtype: Any = np.float32, *, config: MobileNetV2Config | str | None = None
    ):
        """Load weights from a transformers checkpoint folder, a .safetensors/.bin file, a .tflite file
        or a hub id ("google/mobilenet_v2_1.0_224").

        A single weight file takes its config from `config=` (a MobileNetV2Config or a config.json
        path) or from a config.json beside it. A checkpoint made for the other head (classification
        vs segmentation) loads its backbone and initialises this class's head afresh, with a warning,
        as transformers does.
        """
        source = checkpoints.resolve_checkpoint(source)
        return cls.from_checkpoint(checkpoints.read_source(source), dtype=dtype, config=config)

    @classmethod
    def from_checkpoint(
        cls,
        checkpoint: checkpoints.Checkpoint,
        *,
        dtype: Any = np.float32,
        config: MobileNetV2Config | str | os.PathLike | None = None,
    ):
        """`from_pretrained` after the source was read (`checkpoints.read_source` gives a `Checkpoint`);
        the CLI reads a source once, then picks the class from its tensors."""
        if isinstance(config, (str, os.PathLike)):
            config = MobileNetV2Config.from_json_file(config)
        if config is None:
            if checkpoint.config is None:
                raise ValueError(
                    f"{cls.__name__}.from_pretrained: {checkpoint.where!r} has no config.json beside it; pass "
                    "config=MobileNetV2Config(...) or config='path/to/config.json'."
                )
            config = MobileNetV2Config.from_dict(checkpoint.config)
        tensors = cls._adopt_checkpoint(checkpoint.tensors, config, dtype, checkpoint.where)
        try:
            model = cls.from_state_dict(tensors, config, dtype=dtype)
        except ValueError as err:
            guess = infer_config(tensors)
            described = ", ".join(f"{k}={v!r}" for k, v in (guess or {}).items())
            hint = f" The tensors look like a model with {described}." if guess else ""
            raise ValueError(f"{err}{hint}") from None
        quantization = checkpoint.quantization
        if quantization is None:  # a checkpoint npmnv2 saved from a TFLite import keeps them in config.json
            saved = config.extra.get("npmnv2_activation_quantization", {})
            quantization = {k: (float(v[0]), int(v[1])) for k, v in saved.items()}
        model.quantization = quantization
        return model

    @classmethod
    def _adopt_checkpoint(
        cls, tensors: Mapping[str, np.ndarray], config: MobileNetV2Config, dtype: Any, where: str
    ) -> dict[str, np.ndarray]:
        """Fit a checkpoint of a sibling class, swapping a head this class does not have for a
        freshly initialised one (with a warning)."""
        adopted, dropped, fresh = adapt_to_task(tensors, config, cls.task)
        if not dropped and not fresh:
            return adopted
        new_head = cls(config, dtype=dtype).state_dict()  # this class's head, initialised as transformers does
        adopted.update({k: new_head[k] for k in fresh})
        parts = [f"{cls.__name__}.from_pretrained({where!r}): the checkpoint's backbone was loaded"]
        if dropped:
            heads = sorted({k.split(".")[0] + ".*" for k in dropped})
            parts.append(f"its unused head weights ({', '.join(heads)}) were dropped")
        if fresh:
            heads = sorted({k.split(".")[0] + ".*" for k in fresh})
            parts.append(
                f"this class's head ({', '.join(heads)}) is newly initialised and must be "
                "trained or loaded before its outputs mean anything"
            )
        warnings.warn("; ".join(parts) + ".", NpMnV2Warning, stacklevel=4)
        return adopted

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write a transformers checkpoint folder (config.json + model.safetensors) that
        `transformers.<same class>.from_pretrained` loads with no missing or unexpected keys.
        Both files are written or neither (`formats.atomic.write_folder`)."""
        return write_folder(directory, self.checkpoint_files())

    def checkpoint_files(self) -> dict[str, bytes]:
        """The bytes `save_pretrained` writes: {"model.safetensors": ..., "config.json": ...}."""
        config = self.config.to_dict()
        config["architectures"] = [type(self).__name__]
        if self.quantization:
            config["npmnv2_activation_quantization"] = {k: list(v) for k, v in self.quantization.items()}
        return weights.checkpoint_files(self.state_dict(), config)

    # -- forward helpers --------------------------------------------------------
    def __call__(self, *args: Any, **kwargs: Any):
        return self.forward(*args, **kwargs)

    def _prepare(self, pixel_values: Any) -> np.ndarray:
        """Check and convert NCHW pixel_values to the model dtype, NHWC (a view when possible)."""
        check_pixel_values(pixel_values, self.config, type(self).__name__)
        return nchw_to_nhwc(pixel_values.astype(self.dtype, copy=False))  # (N, H, W, C_in)

    def _layers(self, rec: Recorder | None) -> Layers:
        """How the assembly runs: the plain forward (rec None) on the folded fast layers, a trace on
        the textbook layers, recorded."""
        if rec is None:
            return FastLayers(self.folded_params(), tf_padding=self.config.tf_padding)
        return TextbookLayers(self.params, tf_padding=self.config.tf_padding, rec=rec)

    def folded_params(self) -> dict[str, FoldedConv]:
        """Every layer with its batch norm folded (`fast.forward.FoldedConv`), as the plain forward runs it.

        Folded once from the model's arrays and cached. The arrays are read-only
        (`npmnv2.parameters`), so a layer changes only when one of its arrays is replaced
        (`p["kernel"] = edited`), and then it is refolded: the cache cannot go stale.
        """
        return self._fold_cache.folded(self.specs, self.params, self.dtype)

    # -- tracing (see npmnv2.trace) ---------------------------------------------------
    @property
    def tf_padding(self) -> bool:
        """Does this model pad the TensorFlow way (config.tf_padding)?"""
        return self.config.tf_padding

    def step_names(self) -> list[str]:
        """Every step name a forward records, in execution order (see `trace`), read off the layer
        specs the forward runs: no forward is run to find them."""
        return self._head_step_names(self._backbone_step_names())

    def _layer_step_names(self, spec: ConvSpec) -> list[str]:
        """What `conv_layer` (or `classifier_layer`) records for one layer: conv, batch norm unless
        folded, activation unless linear."""
        names = [spec.conv_step]
        if "gamma" in self.params[spec.name]:
            names.append(spec.norm_step)
        if spec.activation is not None:
            names.append(spec.act_step)
        return names

    def _backbone_step_names(self) -> list[str]:
        names = []
        for block in (self.arch.stem, *self.arch.layers):
            for spec in block.convs:
                names += self._layer_step_names(spec)
            names.append(block.name)  # the residual add, or the projection passed on
        if self.task != "segmentation":  # DeepLab never computes the final 1x1 conv
            names += self._layer_step_names(self.arch.conv_1x1)
        return names

    def _head_step_names(self, backbone: list[str]) -> list[str]:
        return backbone

    def trace(
        self,
        pixel_values: np.ndarray,
        layers: str | list[str] | None = None,
        stop_at: str | None = None,
        **forward_kwargs: Any,
    ) -> Trace:
        """Run the forward pass and record every operation as a Step (see `npmnv2.trace.Trace`).

        layers: names or glob patterns ("layer.*.expand_1x1.activation") of the tensors to keep
            (None keeps all; the others are recorded without their tensors, so memory stays low).
        stop_at: stop right after this step; nothing later is computed.
        Names may carry transformers' full-model prefix ("mobilenet_v2.layer.3").
        """
        return trace_forward(self, pixel_values, layers, stop_at, **forward_kwargs)

    def steps(self, pixel_values: np.ndarray, labels: Any = None, *, target: Any = None) -> Iterator[Step]:
        """The steps of one forward pass, in execution order, all tensors kept, each computed when
        it is asked for (`next(steps)`, or a for loop): a `StepStream`.

        With labels= or target= (as `grad` takes them), the backward steps follow: one per op run
        backward, last forward op first, each holding the gradient it sends to its first input
        (the backward needs the whole forward first, so these are computed before the first step).
        """
        if labels is None and target is None:
            return stream_steps(self, pixel_values)
        result = self.grad(pixel_values, labels, target=target, keep_steps=True)
        return iter([*result.trace.steps, *result.backward_steps])

    def run_from(self, name: str, tensor: np.ndarray, *, pixel_values: np.ndarray | None = None):
        """Continue the forward pass with `tensor` (NCHW) in place of step `name`'s output.

        The steps before `name` are those of `pixel_values` (required: the model keeps no input of
        its own; `trace.run_from(name, tensor)` continues a trace from its input); everything after
        `name` is computed from `tensor`. Returns the model output (logits, ...), so an ablated
        channel or a removed nonlinearity shows in the prediction.
        """
        return run_from(self, name, tensor, pixel_values=pixel_values)

    def grad(
        self,
        pixel_values: np.ndarray,
        labels: Any = None,
        *,
        target: Any = None,
        layers: Any = (),
        keep_steps: bool = False,
    ):
        """The loss and its gradients, by the backward pass of every op run over the trace in reverse
        (see `npmnv2.gradients`): `result.gradients` maps every trainable state_dict name (weights,
        biases, batch-norm gamma and beta, PyTorch layouts), "pixel_values" and the step names in
        `layers` to their gradients. labels= differentiates the model's own loss (as
        `model(pixel_values, labels=labels).loss`); target= a class id (or, for DeepLab,
        (class, boolean mask of the logits' grid)) differentiates that class's score instead.
        On a model whose batch norm was folded, the gradients are those of the folded weights.
        `result.trace` and `result.backward_steps` are filled when layers= is given or
        keep_steps=True (the readable path); otherwise a classifier takes the fast path, with the
        same numbers and no trace."""
        from .gradients import grad

        return grad(self, pixel_values, labels, target=target, layers=layers, keep_steps=keep_steps)

    def summary(self, image_size: int | tuple[int, int] = 224) -> Summary:
        """Output shape, parameters, MACs and activation memory per step for one image of this size."""
        return summarize(self, image_size)

    def fold_batchnorm(self):
        """An equivalent model whose convolutions carry their batch norm (see `ops.fold_batch_norm`):
        its trace has no normalization steps, and its conv steps say folded_bn=True."""
        folded = copy.copy(self)
        folded.params = {}
        for spec in self.specs:
            p = self.params[spec.name]
            if "gamma" in p:
                kernel, bias = fold_batch_norm(
                    p["kernel"], p.get("bias"), p["gamma"], p["beta"], p["mean"], p["var"], eps=spec.eps
                )
                folded.params[spec.name] = {"kernel": kernel.astype(self.dtype), "bias": bias.astype(self.dtype)}
            else:
                folded.params[spec.name] = dict(p)
        return folded

    def __repr__(self) -> str:
        c = self.config
        return (
            f"{type(self).__name__}(depth_multiplier={c.depth_multiplier}, output_stride={c.output_stride}, "
            f"num_labels={c.num_labels}, dtype={self.dtype.name}, parameters={self.num_parameters():,})"
        )


class MobileNetV2Model(MobileNetV2PreTrainedModel):
    """The bare backbone: stem, 16 inverted residual blocks, final 1x1 conv, global average pool."""

    task = "backbone"
    add_pooling_layer = True  # transformers' default; models made by from_state_dict keep it

    def __init__(
        self,
        config: MobileNetV2Config | None = None,
        *,
        add_pooling_layer: bool = True,
        dtype: Any = np.float32,
        seed: int = 0,
    ) -> None:
        super().__init__(config, dtype=dtype, seed=seed)
        self.add_pooling_layer = add_pooling_layer

    def _head_step_names(self, backbone: list[str]) -> list[str]:
        return [*backbone, POOLER] if self.add_pooling_layer else backbone

    def forward(
        self,
        pixel_values: np.ndarray,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        *,
        rec: Recorder | None = None,
    ) -> BaseModelOutputWithPoolingAndNoAttention | tuple[np.ndarray, ...]:
        """pixel_values (N, C, H, W) float -> last_hidden_state (N, C_last, H/os, W/os), pooler_output (N, C_last).
        return_dict=False gives transformers' tuple (`to_tuple()`)."""
        x = self._prepare(pixel_values)
        layers = self._layers(rec)
        last, hidden = backbone(x, self.arch, layers)  # (N, h, w, C_last)
        pooled = None
        if self.add_pooling_layer:
            pooled = pool(last, self.config.pooling, layers, output_stride=self.config.output_stride)
        out = BaseModelOutputWithPoolingAndNoAttention(
            last_hidden_state=nhwc_to_nchw(last),
            pooler_output=None if pooled is None else _spatial_to_public(pooled),
            hidden_states=_hidden(hidden, output_hidden_states),
        )
        return _as_asked(out, return_dict)


class MobileNetV2ForImageClassification(MobileNetV2PreTrainedModel):
    """Backbone + global average pool + (dropout, identity at inference) + linear classifier."""

    task = "classification"

    def _head_step_names(self, backbone: list[str]) -> list[str]:
        spec = classifier_spec(self.config)
        return [*backbone, POOLER, *([] if spec is None else self._layer_step_names(spec))]

    def forward(
        self,
        pixel_values: np.ndarray,
        output_hidden_states: bool | None = None,
        labels: Any = None,
        return_dict: bool | None = None,
        *,
        rec: Recorder | None = None,
    ) -> ImageClassifierOutputWithNoAttention | tuple[np.ndarray, ...]:
        """pixel_values (N, C, H, W) float -> logits (N, L) [and the loss when labels are given].
        return_dict=False gives transformers' tuple (loss if any, logits, hidden states if asked)."""
        x = self._prepare(pixel_values)
        layers = self._layers(rec)
        last, hidden = backbone(x, self.arch, layers)  # (N, h, w, C_last)
        logits = pool(last, self.config.pooling, layers, output_stride=self.config.output_stride)  # (N, 1, 1, C_last)
        spec = classifier_spec(self.config)
        if spec is not None:  # num_labels == 0: no classifier, the logits are the pooled features
            logits = classifier_layer(logits, spec, layers)  # (N, 1, 1, L)
        logits = _spatial_to_public(logits)  # (N, L), or (N, L, h, w) for a grid of logits
        if labels is not None and logits.ndim != 2:
            raise ValueError(
                f"MobileNetV2ForImageClassification: labels need one logit vector per image, but pooling="
                f"{self.config.pooling!r} gave a {logits.shape[2]}x{logits.shape[3]} grid; use a 224x224 input."
            )
        loss = None if labels is None else classification_loss(logits, labels, self.config)
        out = ImageClassifierOutputWithNoAttention(
            loss=loss, logits=logits, hidden_states=_hidden(hidden, output_hidden_states)
        )
        return _as_asked(out, return_dict)


class MobileNetV2ForSemanticSegmentation(MobileNetV2PreTrainedModel):
    """Backbone (without computing its unused final 1x1 conv) + DeepLabV3 head on `layer.15`."""

    task = "segmentation"

    def _head_step_names(self, backbone: list[str]) -> list[str]:
        """The order `deeplab_head` records: image pooling branch, 1x1 branch, concat, projection, logits."""
        head = deeplab_head_spec(self.config)
        pooling = [head.avg_pool, *self._layer_step_names(head.conv_pool), head.interpolate]
        branch = self._layer_step_names(head.conv_aspp)
        after = [head.concat, *self._layer_step_names(head.conv_projection), *self._layer_step_names(head.classifier)]
        return [*backbone, *pooling, *branch, *after]

    def forward(
        self,
        pixel_values: np.ndarray,
        labels: Any = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        *,
        rec: Recorder | None = None,
    ) -> SemanticSegmenterOutput | tuple[np.ndarray, ...]:
        """pixel_values (N, C, H, W) float -> logits (N, L, H/os, W/os) [and the loss for (N, H, W) labels].
        return_dict=False gives transformers' tuple (loss if any, logits, hidden states if asked)."""
        if labels is not None and self.config.num_labels == 1:
            raise ValueError("MobileNetV2ForSemanticSegmentation: the loss needs num_labels > 1, the config has 1.")
        x = self._prepare(pixel_values)
        labels = None if labels is None else check_segmentation_labels(labels, pixel_values.shape[0], self.config)
        layers = self._layers(rec)
        _, hidden = backbone(x, self.arch, layers, run_conv_1x1=False)  # DeepLab never reads the final 1x1 conv
        logits = deeplab_head(hidden[-1], deeplab_head_spec(self.config), layers)  # (N, H/os, W/os, L)
        loss = None if labels is None else segmentation_loss(logits, labels, self.config)
        out = SemanticSegmenterOutput(
            loss=loss, logits=nhwc_to_nchw(logits), hidden_states=_hidden(hidden, output_hidden_states)
        )
        return _as_asked(out, return_dict)

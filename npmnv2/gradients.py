"""The model's backward pass: the recorded trace walked in reverse, each step's op run backward by
the backward on its page (`npmnv2.ops.PAGE_OF`), following the steps' sources by name.

`model.grad(pixel_values, labels=...)` (or `target=` a class, for saliency and Grad-CAM) traces the
forward pass keeping every tensor, starts from d loss / d logits, and for every step from last to
first hands the gradient of its output to the backward of its op, which returns the gradients of
its inputs and parameters. A tensor read by two steps (a block input feeds both the expansion and
the residual add) receives the sum of both gradients.

The gradients are returned under `model.state_dict()`'s names and PyTorch layouts, for the
trainable parameters (conv and linear weights and biases, batch-norm gamma and beta), plus
"pixel_values" and any traced tensor asked for by name (`layers=`).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import ops
from .architecture import classifier_spec
from .fast import gradients as fast_gradients
from .layer_kinds import layer_kind
from .model_inputs import (
    check_pixel_values,
    check_segmentation_labels,
    classification_loss,
    classification_problem,
    segmentation_loss,
)
from .ops import nchw_to_nhwc, nhwc_to_nchw
from .ops.losses import bce_with_logits_backward, cross_entropy_backward, mse_loss_backward
from .ops.resize import resize_bilinear_backward
from .state_dict import hf_name, kernel_to_torch
from .trace import (
    Step,
    Trace,
    check_step_name,
    internal_layout,
    layer_patterns,
    public_layout,
    step_names,
    trace_forward,
)


@dataclass
class GradientResult:
    """What `model.grad` returns.

    loss: the loss differentiated (the model's own loss for labels=; the summed score of the
        target class for target=).
    gradients: state_dict name (or "pixel_values", or a step name) -> gradient, in the layout of that name.
    trace: the forward trace the gradients were computed from; backward_steps: one Step per op
        run backward, in the order they ran (last forward op first), each holding the gradient it
        passed on. Both come from the readable path only (layers= or keep_steps=True); the fast
        path leaves trace None and backward_steps empty.
    """

    loss: float
    gradients: dict[str, np.ndarray]
    trace: Trace | None
    backward_steps: list[Step] = field(default_factory=list)


def loss_gradient(model: Any, logits_nhwc: np.ndarray, labels: Any, target: Any) -> tuple[float, np.ndarray]:
    """The loss and d loss / d logits (NHWC, the classifier's (N, 1, 1, L) or DeepLab's (N, h, w, L))."""
    config = model.config
    n = logits_nhwc.shape[0]
    if target is not None:  # the score of one class (summed over the batch and, for DeepLab, a region)
        classes, region = _target(target, n, config.num_labels, logits_nhwc.shape[1:3])
        grad = np.zeros_like(logits_nhwc)
        for i in range(n):
            grad[i, :, :, classes[i]] = region
        return float((logits_nhwc * grad).sum()), grad
    if model.task == "classification":
        logits = logits_nhwc[:, 0, 0, :]  # (N, L)
        loss = classification_loss(logits, labels, config)
        labels = np.asarray(labels)
        problem = classification_problem(logits.shape[1], labels, config)  # the loss's own choice
        if problem == "regression":
            grad = mse_loss_backward(logits.reshape(labels.shape), labels.astype(logits.dtype)).reshape(logits.shape)
        elif problem == "multi_label_classification":
            grad = bce_with_logits_backward(logits, labels.astype(logits.dtype))
        else:
            grad = cross_entropy_backward(logits, labels)
        return float(loss), grad[:, None, None, :]
    labels = np.asarray(labels)
    loss = segmentation_loss(logits_nhwc, labels, config)
    _, h, w = labels.shape
    upsampled = ops.resize_bilinear(logits_nhwc, (h, w), align_corners=False)  # (N, H, W, L)
    flat = cross_entropy_backward(
        upsampled.reshape(-1, upsampled.shape[-1]), labels.reshape(-1), ignore_index=config.semantic_loss_ignore_index
    )
    grad = resize_bilinear_backward(flat.reshape(upsampled.shape), logits_nhwc.shape, align_corners=False)
    return float(loss), grad


def _target(target: Any, n: int, num_labels: int, grid: tuple[int, int]) -> tuple[list[int], np.ndarray]:
    """(class per image, region weights (h, w)) from target= an int, a list of ints, or for DeepLab
    (class, mask) with a boolean (h, w) mask of the logits' grid."""
    region = np.ones(grid)
    if isinstance(target, tuple) and len(target) == 2:
        target, mask = target
        mask = np.asarray(mask, bool)
        if mask.shape != grid:
            raise ValueError(
                f"grad: the target region must be a boolean mask of the logits' grid {grid}, got {mask.shape}."
            )
        region = mask.astype(float)
    classes = [target] * n if np.ndim(target) == 0 else list(target)
    if len(classes) != n or not all(isinstance(c, (int, np.integer)) and 0 <= c < num_labels for c in classes):
        raise ValueError(f"grad: target must be a class id in [0, {num_labels}) (or one per image), got {target!r}.")
    return [int(c) for c in classes], region


def grad(
    model: Any,
    pixel_values: np.ndarray,
    labels: Any = None,
    *,
    target: Any = None,
    layers: Any = (),
    keep_steps: bool = False,
) -> GradientResult:
    """`model.grad`: the loss, and its gradient for every trainable parameter, for pixel_values, and
    for the traced tensors named in `layers` (names or glob patterns).

    With layers= or keep_steps=True it runs the readable path (the trace walked backward, one
    backward op per step, from its page) and returns the trace and the backward steps. Otherwise a
    classifier with ReLU6/ReLU layers and unfolded batch norm takes the fast path of
    `fast_gradients.classifier_gradients` (same numbers; trace None, no backward steps); any other
    model takes the readable path."""
    if model.task == "backbone":
        raise ValueError("grad needs a model with a head (a loss to differentiate); MobileNetV2Model has none.")
    if (labels is None) == (target is None):
        raise ValueError("grad: give labels= (differentiate the model's loss) or target= (a class's score), not both.")
    patterns = layer_patterns(model, layers) or []  # None: no traced tensor
    # exactly the forward's checks, before anything is converted (a list, uint8, bool, NaN or an 8x8
    # image is refused here as model(pixel_values) refuses it), and the labels' own checks
    check_pixel_values(pixel_values, model.config, f"{type(model).__name__}.grad")
    if labels is not None and model.task == "segmentation":
        labels = check_segmentation_labels(labels, pixel_values.shape[0], model.config)
    pixel_values = np.ascontiguousarray(pixel_values, dtype=model.dtype)
    if not patterns and not keep_steps and fast_path_applies(model, pixel_values.shape):
        loss, params, g_x = fast_gradients.classifier_gradients(
            nchw_to_nhwc(pixel_values),
            model.arch,
            classifier_spec(model.config),
            model.params,
            model.folded_params(),
            lambda logits: loss_gradient(model, logits, labels, target),
            tf_padding=model.config.tf_padding,
        )
        gradients = _to_state_dict(model, params)
        gradients["pixel_values"] = nhwc_to_nchw(g_x)
        return GradientResult(loss, gradients, None, [])
    trace = trace_forward(model, pixel_values)  # every tensor kept
    logits_step = trace.steps[-1]
    loss, g = loss_gradient(model, internal_layout(logits_step.output), labels, target)
    grads: dict[str, np.ndarray] = {logits_step.name: g}  # step name -> gradient of its output (NHWC)
    params: dict[str, dict[str, np.ndarray]] = {}
    wanted: dict[str, np.ndarray] = {}
    backward_steps: list[Step] = []
    for step in reversed(trace.steps):
        g = grads.pop(step.name, None)
        if g is None:
            continue  # nothing downstream of this step reaches the loss
        if any(fnmatch.fnmatchcase(step.name, p) for p in patterns):
            wanted[step.name] = public_layout(step.kind, g).copy()  # the traced tensor's layout
        inputs = [internal_layout(x) for x in step.inputs]
        input_grads = _step_backward(step, inputs, g, params)
        for source, gx in zip(step.sources, input_grads, strict=True):  # follow the names back
            grads[source] = gx if source not in grads else grads[source] + gx
        if inputs:  # what this step sends back to its first input (a residual's skip adds more later)
            page = ops.PAGE_OF.get(step.op)
            backward_steps.append(
                Step(
                    name=f"{step.name}.backward",
                    kind="backward",
                    output_shape=tuple(step.inputs[0].shape),
                    output=public_layout(step.kind, input_grads[0]),
                    op=page.backward_op if page else None,
                    attrs={"of": step.name},
                    sources=(step.name,),
                )
            )
    first = trace.steps[0].inputs[0]
    gradients = _to_state_dict(model, params)
    gradients["pixel_values"] = nhwc_to_nchw(grads.get("pixel_values", np.zeros_like(internal_layout(first))))
    gradients.update(wanted)
    return GradientResult(loss, gradients, trace, backward_steps)


def fast_path_applies(model: Any, shape: tuple[int, ...]) -> bool:
    """Does `fast_gradients.classifier_gradients` compute this model's gradients? A classifier with a
    linear head, batch norm not folded, only ReLU6 / ReLU / linear layers, and a pooler that
    averages the whole last feature map."""
    if model.task != "classification" or classifier_spec(model.config) is None or len(shape) != 4:
        return False
    for spec in model.specs:
        if spec.activation not in fast_gradients.FAST_GRAD_ACTIVATIONS:
            return False
        if spec.eps is not None and "gamma" not in model.params[spec.name]:
            return False
    if model.config.pooling == "global":
        return True
    size = fast_gradients.final_map_size(model.arch, shape[2], shape[3], tf_padding=model.config.tf_padding)
    return size == (7, 7)  # TF-slim's fixed 7x7 average over a 7x7 map is the global average


def _accumulate(params: dict, layer: str, **arrays: np.ndarray) -> None:
    entry = params.setdefault(layer, {})
    for key, value in arrays.items():
        entry[key] = value if key not in entry else entry[key] + value


def _step_backward(step: Step, inputs: list[np.ndarray], g: np.ndarray, params: dict) -> list[np.ndarray]:
    """The gradients of one step's inputs (NHWC), from the backward on its op's page; its
    parameters' gradients are added to `params` under the step's layer."""
    if step.op is None:  # the projection passed on as the block output: the identity
        return [g]
    page = ops.PAGE_OF.get(step.op)
    if page is None or page.backward is None:
        raise ValueError(f"grad: step {step.name!r} ran {step.op.__name__}, which has no backward on its page.")
    input_grads, param_grads = page.backward(step, inputs, g)
    if param_grads:
        _accumulate(params, step.attrs["layer"], **param_grads)
    if step.attrs.get("folded_bn"):  # the identity batch norm transformers' layout gives a folded layer
        y = internal_layout(step.output) - step.params["bias"]
        _accumulate(params, step.attrs["layer"], gamma=(g * y).sum(axis=(0, 1, 2)))
    return input_grads


def _to_state_dict(model: Any, params: dict[str, dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Parameter gradients under state_dict names, in PyTorch layouts (running statistics excluded)."""
    out = {}
    for spec in model.specs:
        g = params.get(spec.name)
        p = model.params[spec.name]
        zeros = {k: np.zeros_like(v) for k, v in p.items()}
        g = {**zeros, **(g or {})}
        name = hf_name(spec, model.task)
        weight = layer_kind(spec).torch_weight  # "convolution.weight", or the bare nn.Linear's "weight"
        out[f"{name}.{weight}"] = kernel_to_torch(g["kernel"], spec.kind)
        if spec.bias:
            out[f"{name}.{weight.replace('weight', 'bias')}"] = g["bias"]
        if spec.eps is not None:
            if "gamma" in p:
                out[f"{name}.normalization.weight"] = g["gamma"]
                out[f"{name}.normalization.bias"] = g["beta"]
            else:  # folded: the bias rides on the identity batch norm's beta
                out[f"{name}.normalization.weight"] = g.get("gamma", np.zeros(spec.c_out, model.dtype))
                out[f"{name}.normalization.bias"] = g["bias"]
    return out


# ============================================================================ explanations


@dataclass
class Explanation:
    """Where the network looked: one heat map per image, at the input's size.

    heatmap: (N, H, W), in [0, 1] per image (0 where nothing counts, 1 at the strongest pixel).
    targets: the class explained per image. layer: the traced tensor Grad-CAM weighted (None for saliency).
    method: "gradcam" or "saliency". loss: the score differentiated (summed over the batch).
    """

    heatmap: np.ndarray
    targets: list[int]
    method: str
    layer: str | None
    loss: float


def default_cam_layer(model: Any) -> str:
    """The last feature map before the head pools or classifies it: `conv_1x1.activation` for the
    classifier (7x7x1280 at 224), the last block's output for DeepLab (before the ASPP head)."""
    names = step_names(model)
    if model.task == "classification":
        return "conv_1x1.activation" if "conv_1x1.activation" in names else names[-3]
    return [n for n in names if n.startswith("layer.") and n.count(".") == 1][-1]


def _explained_target(model: Any, pixel_values: np.ndarray, target: Any) -> Any:
    """target as `model.grad` takes it. None means the predicted class: the top class for a classifier;
    for DeepLab the most frequent predicted class other than background (0), over the pixels
    predicted as it. An int for DeepLab covers the pixels predicted as that class (all, if none)."""
    if model.task == "classification":
        if target is None:
            return [int(k) for k in np.argmax(model(pixel_values).logits, axis=-1)]
        return target
    if isinstance(target, tuple):
        return target
    if pixel_values.shape[0] != 1:
        raise ValueError("explaining a segmentation needs one image at a time (pixel_values of batch 1).")
    predicted = np.argmax(model(pixel_values).logits[0], axis=0)  # (h, w) on the logits' grid
    if target is None:
        counts = np.bincount(predicted.ravel(), minlength=model.config.num_labels)
        counts[0] = 0
        target = int(np.argmax(counts)) if counts.any() else 0
    region = predicted == target
    return (target, region if region.any() else np.ones_like(region))


def _normalise(maps: np.ndarray) -> np.ndarray:
    """Scale each map (N, H, W) to [0, 1] by its own maximum."""
    peak = maps.reshape(len(maps), -1).max(axis=1)[:, None, None]
    return np.where(peak > 0, maps / np.where(peak > 0, peak, 1), 0.0)


def grad_cam(model: Any, pixel_values: np.ndarray, target: Any = None, *, layer: str | None = None) -> Explanation:
    """Grad-CAM (Selvaraju et al. 2017, arXiv 1610.02391) of `target` at `layer`.

    Math: with A (C, h, w) the layer's activations and G = d score / d A,
        alpha_c = mean over (h, w) of G_c          (how much channel c matters for the class)
        cam     = ReLU(sum_c alpha_c A_c)          (h, w), upsampled bilinearly to the input's (H, W)
    Shapes: pixel_values (N, 3, H, W) -> heatmap (N, H, W) in [0, 1].
    target: None (the predicted class), a class id, one per image, or for DeepLab (class, mask of
    the logits' grid); see `model.grad`.
    """
    layer = check_step_name(model, layer) if layer else default_cam_layer(model)
    target = _explained_target(model, pixel_values, target)
    result = grad(model, pixel_values, target=target, layers=[layer])
    activations = result.trace[layer]  # (N, C, h, w)
    gradient = result.gradients[layer]
    if activations.ndim != 4 or activations.shape[2] * activations.shape[3] == 1:
        raise ValueError(
            f"grad_cam needs a feature map (N, C, h, w) larger than 1x1; step {layer!r} gives {activations.shape}. "
            f"Pick a step before the global pooling, such as {default_cam_layer(model)!r}."
        )
    alpha = gradient.mean(axis=(2, 3), keepdims=True)  # (N, C, 1, 1)
    cam = np.maximum((alpha * activations).sum(axis=1), 0)  # (N, h, w)
    size = tuple(pixel_values.shape[2:])
    upsampled = ops.resize_bilinear(cam[..., None], size, align_corners=False)[..., 0]  # (N, H, W)
    classes = _classes(target, len(pixel_values))
    return Explanation(_normalise(upsampled.astype(np.float64)), classes, "gradcam", layer, result.loss)


def saliency(model: Any, pixel_values: np.ndarray, target: Any = None) -> Explanation:
    """A saliency map (Simonyan et al. 2013, arXiv 1312.6034): how strongly each input pixel moves
    the target's score.

    Math: saliency[y, x] = max over colour channels of |d score / d pixel_values[c, y, x]|, divided by
    its 99th percentile and clipped at 1 (a few speckles would otherwise take the whole scale).
    Shapes: pixel_values (N, 3, H, W) -> heatmap (N, H, W) in [0, 1].
    """
    target = _explained_target(model, pixel_values, target)
    result = grad(model, pixel_values, target=target)
    heat = np.abs(result.gradients["pixel_values"]).max(axis=1)  # (N, H, W)
    # raw gradients are speckled: a few pixels would take the whole colour scale, so 1 is the 99th percentile
    heat = np.minimum(heat / np.percentile(heat, 99, axis=(1, 2), keepdims=True).clip(1e-30), 1)
    return Explanation(
        _normalise(heat.astype(np.float64)), _classes(target, len(pixel_values)), "saliency", None, result.loss
    )


def _classes(target: Any, n: int) -> list[int]:
    if isinstance(target, tuple):
        target = target[0]
    return [int(target)] * n if np.ndim(target) == 0 else [int(t) for t in target]

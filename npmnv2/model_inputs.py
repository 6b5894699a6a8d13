"""What the model classes check of their inputs, and the loss each head computes (as transformers)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .architecture import MIN_INPUT_SIZE
from .configuration_mobilenet_v2 import MobileNetV2Config
from .ops import bce_with_logits, cross_entropy, mse_loss, resize_bilinear


def classification_problem(num_labels: int, labels: np.ndarray, config: MobileNetV2Config) -> str:
    """config.problem_type, or when it is None the one transformers infers: num_labels == 1 ->
    "regression"; integer labels -> "single_label_classification"; otherwise "multi_label_classification"."""
    if config.problem_type is not None:
        return config.problem_type
    if num_labels == 1:
        return "regression"
    if np.issubdtype(labels.dtype, np.integer):
        return "single_label_classification"
    return "multi_label_classification"


def classification_loss(logits: np.ndarray, labels: Any, config: MobileNetV2Config) -> np.ndarray:
    """transformers' loss for image classification, with the problem type inferred the same way:
    num_labels == 1 -> MSE; integer labels -> cross-entropy; otherwise -> BCE with logits."""
    labels = np.asarray(labels)
    n, num_labels = logits.shape
    problem = classification_problem(num_labels, labels, config)
    if problem == "regression":
        if num_labels == 1:
            if labels.size != n:
                raise ValueError(f"labels: regression with num_labels=1 expects {n} values, got shape {labels.shape}.")
            return mse_loss(logits.reshape(-1), labels.reshape(-1).astype(logits.dtype))
        if labels.shape != logits.shape:
            raise ValueError(f"labels: regression expects shape {logits.shape}, got {labels.shape}.")
        return mse_loss(logits, labels.astype(logits.dtype))
    if problem == "single_label_classification":
        if not np.issubdtype(labels.dtype, np.integer) or labels.shape != (n,):
            raise ValueError(
                f"labels: single-label classification expects integer class ids of shape ({n},), "
                f"got dtype {labels.dtype} shape {labels.shape}."
            )
        bad = (labels != -100) & ((labels < 0) | (labels >= num_labels))
        if bad.any():
            raise ValueError(
                f"labels: class ids must be in [0, {num_labels}) or -100 (ignored), got {labels[bad][:5]}."
            )
        return cross_entropy(logits, labels)
    if labels.shape != logits.shape:
        raise ValueError(
            f"labels: multi-label classification expects 0/1 targets of shape {logits.shape}, got {labels.shape}."
        )
    return bce_with_logits(logits, labels.astype(logits.dtype))


def check_pixel_values(pixel_values: Any, config: MobileNetV2Config, cls_name: str) -> None:
    """Raise a clear error for anything but a float NCHW batch of size >= 32x32."""
    if not isinstance(pixel_values, np.ndarray):
        raise TypeError(
            f"{cls_name}: pixel_values must be a numpy array (N, C, H, W), got {type(pixel_values).__name__}; "
            "use np.asarray(...) or MobileNetV2ImageProcessor."
        )
    if pixel_values.ndim != 4:
        hint = " Add a batch axis with pixel_values[None]." if pixel_values.ndim == 3 else ""
        raise ValueError(
            f"{cls_name}: pixel_values must have rank 4 (N, C, H, W), got shape {pixel_values.shape}.{hint}"
        )
    if not np.issubdtype(pixel_values.dtype, np.floating):
        raise TypeError(
            f"{cls_name}: pixel_values must be floating point (normalised pixels), got dtype {pixel_values.dtype}. "
            "Raw uint8 images go through MobileNetV2ImageProcessor first (rescale 1/255, normalise to [-1, 1])."
        )
    n, c, h, w = pixel_values.shape
    if n == 0:
        raise ValueError(f"{cls_name}: pixel_values holds no image (batch of 0, shape {pixel_values.shape}).")
    if c != config.num_channels:
        hint = ""
        if pixel_values.shape[-1] == config.num_channels:
            hint = " This looks like NHWC: pass pixel_values.transpose(0, 3, 1, 2)."
        raise ValueError(
            f"{cls_name}: expected {config.num_channels} channels on axis 1 (N, C, H, W), got shape "
            f"{pixel_values.shape}.{hint}"
        )
    if h < MIN_INPUT_SIZE or w < MIN_INPUT_SIZE:
        raise ValueError(
            f"{cls_name}: input {h}x{w} is smaller than the minimum {MIN_INPUT_SIZE}x{MIN_INPUT_SIZE} "
            "(after 5 stride-2 layers the feature map would vanish); resize the image up."
        )
    config.check_activation_size(h, w, f"{cls_name}: pixel_values of shape {pixel_values.shape}")
    if not np.isfinite(pixel_values).all():
        raise ValueError(f"{cls_name}: pixel_values contains NaN or Inf; check the preprocessing.")


def check_segmentation_labels(labels: Any, n: int, config: MobileNetV2Config) -> np.ndarray:
    """labels as an integer (N, H, W) class map, or a clear error."""
    labels = np.asarray(labels)
    if labels.ndim != 3 or labels.shape[0] != n or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"MobileNetV2ForSemanticSegmentation: labels must be an integer class map of shape ({n}, H, W), "
            f"got dtype {labels.dtype} shape {labels.shape}."
        )
    ignore, num = config.semantic_loss_ignore_index, config.num_labels
    bad = (labels != ignore) & ((labels < 0) | (labels >= num))
    if bad.any():
        raise ValueError(
            f"MobileNetV2ForSemanticSegmentation: labels must be class ids in [0, {num}) or {ignore} (ignored), "
            f"found {np.unique(labels[bad])[:5]}."
        )
    return labels


def segmentation_loss(logits: np.ndarray, labels: np.ndarray, config: MobileNetV2Config) -> np.ndarray:
    """transformers' segmentation loss: the logits upsampled bilinearly (align_corners=False) to the
    label size, then cross-entropy over every pixel, skipping `semantic_loss_ignore_index` (255).

    Shapes: logits (N, h, w, L) NHWC, labels (N, H, W) -> scalar.
    """
    n, h, w = labels.shape
    upsampled = resize_bilinear(logits, (h, w), align_corners=False)  # (N, H, W, L)
    flat_logits = upsampled.reshape(n * h * w, -1)  # (N*H*W, L)
    return cross_entropy(flat_logits, labels.reshape(-1), ignore_index=config.semantic_loss_ignore_index)

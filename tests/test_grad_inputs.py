"""model.grad, saliency and grad_cam check their inputs exactly as the forward does, and check
segmentation labels (issue 20, point 9): nothing reaches the backward that the forward refuses."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import tiny_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import npmnv2
from npmnv2 import gradients

CONFIG = tiny_config(num_labels=5)
GOOD = np.random.default_rng(0).uniform(-1, 1, (1, 3, 64, 64)).astype(np.float32)


@pytest.fixture(scope="module")
def classifier():
    return npmnv2.MobileNetV2ForImageClassification(CONFIG)


@pytest.fixture(scope="module")
def segmenter():
    return npmnv2.MobileNetV2ForSemanticSegmentation(tiny_config(num_labels=4))


def _bad_inputs():
    nan = GOOD.copy()
    nan[0, 0, 0, 0] = np.nan
    inf = GOOD.copy()
    inf[0, 1, 2, 3] = np.inf
    return {
        "nan": (nan, ValueError, "NaN or Inf"),
        "inf": (inf, ValueError, "NaN or Inf"),
        "uint8": ((GOOD * 100).astype(np.uint8), TypeError, "floating point"),
        "bool": (GOOD > 0, TypeError, "floating point"),
        "complex": (GOOD.astype(np.complex64), TypeError, "floating point"),
        "list": (GOOD.tolist(), TypeError, "numpy array"),
        "8x8": (GOOD[:, :, :8, :8], ValueError, "smaller than the minimum"),
    }


@pytest.mark.parametrize("case", list(_bad_inputs()))
def test_grad_refuses_what_the_forward_refuses(classifier, case):
    pixels, error, message = _bad_inputs()[case]
    with pytest.raises(error, match=message):
        classifier(pixels)
    with pytest.raises(error, match=message):
        classifier.grad(pixels, labels=np.array([1]))
    with pytest.raises(error, match=message):
        gradients.saliency(classifier, pixels)


def test_saliency_of_an_all_nan_image_is_an_error_not_a_blank_map(classifier):
    with pytest.raises(ValueError, match="NaN or Inf"):
        gradients.saliency(classifier, np.full_like(GOOD, np.nan))


@pytest.mark.parametrize(
    "labels,message",
    [
        (np.full((1, 64, 64), -5), r"class ids in \[0, 4\) or 255"),
        (np.full((1, 64, 64), 3.9), "integer class map"),
        (np.full((1, 64, 64), 50), r"class ids in \[0, 4\) or 255"),
    ],
)
def test_segmentation_labels_are_checked_before_the_backward(segmenter, labels, message):
    with pytest.raises(ValueError, match=message):
        segmenter.grad(GOOD, labels=labels)


def test_good_inputs_still_give_gradients(classifier, segmenter):
    assert np.isfinite(classifier.grad(GOOD, labels=np.array([2])).gradients["pixel_values"]).all()
    result = segmenter.grad(GOOD, labels=np.full((1, 64, 64), 255, np.int64))  # every pixel ignored
    assert result.gradients["pixel_values"].shape == GOOD.shape


# ============================================================================ the standing fuzz suite: grad inputs

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(
    dtype=st.sampled_from([np.float32, np.float64, np.float16, np.uint8, np.int32, np.bool_, np.complex64]),
    size=st.sampled_from([8, 31, 32, 64]),
    poison=st.sampled_from([None, np.nan, np.inf, -np.inf]),
    where=st.integers(0, 10**6),
)
def test_fuzzed_grad_inputs_are_refused_like_the_forward_or_give_finite_gradients(
    classifier, dtype, size, poison, where
):
    """Whatever the forward refuses, grad refuses with the same error; whatever it accepts gives finite gradients."""
    x = GOOD[:, :, :size, :size].astype(dtype)
    if poison is not None and np.issubdtype(x.dtype, np.floating):
        x.flat[where % x.size] = poison
    try:
        classifier(x)
    except (TypeError, ValueError) as forward_error:
        with pytest.raises(type(forward_error)):
            classifier.grad(x, labels=np.array([1]))
        return
    grads = classifier.grad(x, labels=np.array([1])).gradients["pixel_values"]
    assert np.isfinite(grads).all()


@FUZZ
@given(labels=st.lists(st.integers(-300, 300) | st.floats(allow_nan=True), min_size=1, max_size=4))
def test_fuzzed_segmentation_labels_are_refused_or_valid(segmenter, labels):
    values = np.resize(np.asarray(labels), (1, 64, 64))
    valid = values.dtype.kind in "iu" and bool(np.all(((values >= 0) & (values < 4)) | (values == 255)))
    if valid:
        assert np.isfinite(segmenter.grad(GOOD, labels=values).gradients["pixel_values"]).all()
    else:
        with pytest.raises(ValueError):
            segmenter.grad(GOOD, labels=values)

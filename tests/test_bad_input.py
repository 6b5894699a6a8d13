"""Wrong inputs get a clear error that says what was given and what is expected."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import tiny_config

import npmnv2
from npmnv2 import MobileNetV2ForImageClassification as Cls
from npmnv2 import MobileNetV2ForSemanticSegmentation as Seg

SMALL = tiny_config(num_labels=3)


@pytest.fixture(scope="module")
def cls():
    return Cls(SMALL)


@pytest.fixture(scope="module")
def seg():
    return Seg(SMALL)


def test_too_small_input(cls):
    with pytest.raises(ValueError, match=r"input 31x64 is smaller than the minimum 32x32"):
        cls(np.zeros((1, 3, 31, 64), np.float32))


def test_wrong_rank_suggests_batch_axis(cls):
    with pytest.raises(ValueError, match=r"rank 4 \(N, C, H, W\), got shape \(3, 64, 64\). Add a batch axis"):
        cls(np.zeros((3, 64, 64), np.float32))


def test_nhwc_input_is_explained_not_guessed(cls):
    with pytest.raises(
        ValueError, match=r"expected 3 channels on axis 1.*looks like NHWC: pass pixel_values.transpose\(0, 3, 1, 2\)"
    ):
        cls(np.zeros((1, 64, 64, 3), np.float32))


def test_wrong_channel_count(cls):
    with pytest.raises(ValueError, match=r"expected 3 channels on axis 1 \(N, C, H, W\), got shape \(1, 1, 64, 64\)"):
        cls(np.zeros((1, 1, 64, 64), np.float32))


def test_integer_pixels_point_to_the_image_processor(cls):
    with pytest.raises(TypeError, match=r"got dtype uint8. Raw uint8 images go through MobileNetV2ImageProcessor"):
        cls(np.zeros((1, 3, 64, 64), np.uint8))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf_is_refused(cls, bad):
    x = np.zeros((1, 3, 64, 64), np.float32)
    x[0, 0, 0, 0] = bad
    with pytest.raises(ValueError, match="contains NaN or Inf"):
        cls(x)


def test_not_an_array(cls):
    with pytest.raises(TypeError, match=r"pixel_values must be a numpy array \(N, C, H, W\), got list"):
        cls([[0.0]])


def test_classification_labels_of_wrong_shape(cls):
    with pytest.raises(ValueError, match=r"expects integer class ids of shape \(2,\), got dtype int64 shape \(2, 1\)"):
        cls(np.zeros((2, 3, 64, 64), np.float32), labels=np.zeros((2, 1), np.int64))


def test_classification_labels_out_of_range(cls):
    with pytest.raises(ValueError, match=r"class ids must be in \[0, 3\)"):
        cls(np.zeros((1, 3, 64, 64), np.float32), labels=np.array([7]))


def test_segmentation_labels_of_wrong_shape(seg):
    with pytest.raises(
        ValueError, match=r"labels must be an integer class map of shape \(1, H, W\), got dtype int64 shape \(64, 64\)"
    ):
        seg(np.zeros((1, 3, 64, 64), np.float32), labels=np.zeros((64, 64), np.int64))


def test_segmentation_labels_out_of_range(seg):
    with pytest.raises(ValueError, match=r"class ids in \[0, 3\) or 255 \(ignored\), found \[9\]"):
        seg(np.zeros((1, 3, 64, 64), np.float32), labels=np.full((1, 64, 64), 9))


def test_state_dict_mismatch_lists_missing_unexpected_and_misshaped():
    state = Cls(SMALL).state_dict()
    state.pop("mobilenet_v2.layer.3.expand_1x1.convolution.weight")
    state["mobilenet_v2.extra.weight"] = np.zeros(3)
    state["classifier.weight"] = np.zeros((5, 1280))
    with pytest.raises(
        ValueError,
        match=(
            r"missing 1: mobilenet_v2.layer.3.expand_1x1.convolution.weight \| "
            r"unexpected 1: mobilenet_v2.extra.weight \| "
            r"wrong shape 1: classifier.weight \(5, 1280\) != \(3, 1280\)"
        ),
    ):
        Cls.from_state_dict(state, SMALL)


def test_unsupported_model_dtype():
    with pytest.raises(ValueError, match="dtype must be float32 or float64, got float16"):
        Cls(SMALL, dtype=np.float16)


def test_float64_input_runs_in_the_model_dtype(cls):
    assert cls(np.zeros((1, 3, 64, 64))).logits.dtype == np.float32


def test_state_dict_round_trip_is_exact():
    model = Cls(SMALL, seed=3)
    again = Cls.from_state_dict(model.state_dict(), SMALL)
    x = np.random.default_rng(0).normal(size=(1, 3, 64, 64)).astype(np.float32)
    np.testing.assert_array_equal(model(x).logits, again(x).logits)
    assert npmnv2.MobileNetV2Model(SMALL).state_dict().keys() == {
        k.removeprefix("mobilenet_v2.") for k in model.state_dict() if k.startswith("mobilenet_v2.")
    }

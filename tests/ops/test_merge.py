"""`npmnv2.ops.merge`: residual add and channel concat, against PyTorch, its loop twin and finite differences."""

from __future__ import annotations

import numpy as np

from npmnv2 import ops

RNG = np.random.default_rng(643)


def test_concat_backward_splits_and_add_backward_copies():
    parts = ops.merge.concat_channels_backward(np.arange(10.0).reshape(1, 1, 1, 10), [3, 7])
    assert [p.shape[-1] for p in parts] == [3, 7]
    g = np.ones(3)
    assert all(a is g for a in ops.merge.add_backward(g))


def test_concatenation_requantizes_in_float32_and_copies_matching_inputs():
    a, b = RNG.integers(0, 256, (1, 2, 2, 3)), RNG.integers(0, 256, (1, 2, 2, 2))
    out = ops.merge.concat_channels_int([a, b], [0.05, 0.02], [128, 0], 0.05, 128, (0, 255))
    np.testing.assert_array_equal(out[..., :3], a)  # same scale and zero point: copied
    expected = np.floor(b.astype(np.float32) * np.float32(0.02 / 0.05) + 0.5) + 128
    assert np.abs(out[..., 3:] - np.clip(expected, 0, 255)).max() <= 1

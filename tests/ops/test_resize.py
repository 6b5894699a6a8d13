"""`npmnv2.ops.resize`: bilinear resize (float and integer), against PyTorch, its loop twin and finite differences."""

from __future__ import annotations

import numpy as np
import pytest

from npmnv2 import ops

RNG = np.random.default_rng(39)


@pytest.mark.parametrize(
    ("size", "align_corners", "half_pixel"),
    [((9, 11), True, False), ((7, 4), False, False), ((8, 10), False, True), ((1, 1), True, False)],
)
def test_integer_resize_equals_its_loops(size, align_corners, half_pixel):
    x = RNG.integers(0, 256, (1, 4, 5, 2))
    args = dict(align_corners=align_corners, half_pixel_centers=half_pixel)
    np.testing.assert_array_equal(
        ops.resize.resize_bilinear_int(x, size, **args), ops.resize.resize_bilinear_int_loops(x, size, **args)
    )

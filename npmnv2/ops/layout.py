"""The two layout conversions at the public edges: NCHW (transformers) <-> NHWC (inside npmnv2).

Forms: the transposes (views, no copy) and their loop twins.
"""

from __future__ import annotations

import numpy as np

# ============================================================================ textbook forward


def nchw_to_nhwc(x: np.ndarray) -> np.ndarray:
    """The public API's NCHW (transformers' layout) to npmnv2's NHWC: a view, no copy.

    Shapes: (N, C, H, W) -> (N, H, W, C).
    """
    return x.transpose(0, 2, 3, 1)


def nhwc_to_nchw(x: np.ndarray) -> np.ndarray:
    """npmnv2's NHWC back to the public API's NCHW: a view, no copy.

    Shapes: (N, H, W, C) -> (N, C, H, W).
    """
    return x.transpose(0, 3, 1, 2)


# ============================================================================ loop twins


def nchw_to_nhwc_loops(x: np.ndarray) -> np.ndarray:
    """out[n, y, x, c] = x[n, c, y, x]. The twin of `ops.nchw_to_nhwc`."""
    n, c, h, w = x.shape
    out = np.zeros((n, h, w, c), dtype=x.dtype)
    for index in np.ndindex(x.shape):
        b, ch, y, x_ = index
        out[b, y, x_, ch] = x[index]
    return out


def nhwc_to_nchw_loops(x: np.ndarray) -> np.ndarray:
    """out[n, c, y, x] = x[n, y, x, c]. The twin of `ops.nhwc_to_nchw`."""
    n, h, w, c = x.shape
    out = np.zeros((n, c, h, w), dtype=x.dtype)
    for index in np.ndindex(x.shape):
        b, y, x_, ch = index
        out[b, ch, y, x_] = x[index]
    return out

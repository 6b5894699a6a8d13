"""The plain forward pass, fast: the layers of the one assembly (`npmnv2.network`) run on folded
layers, each by the fast form of its kind (`npmnv2.layer_kinds.LAYER_KINDS`).

`model(pixel_values)` without a trace runs `npmnv2.network` with `FastLayers`; `model.trace`
runs the same assembly with `npmnv2.network.TextbookLayers`, one textbook op per step. So the two
cannot run different networks: a layer or op added to the assembly runs in both, and an op
with no fast form here runs its textbook function. `tests/test_fast_path.py` asserts the two
agree on every block output, logits included, for many configurations.

Batch norm is folded into every kernel once (`fold_conv`) and cached (`FoldCache`), not once
per call; the cache folds copies, so the model's and the caller's arrays are never changed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..architecture import ConvSpec
from ..layer_kinds import layer_kind
from ..ops import add, concat_channels, fold_batch_norm, resize_bilinear
from .kernels import ChannelParts, FoldedConv, as_array, geometry

# ============================================================================ folding


def _frozen(array: np.ndarray | None) -> np.ndarray | None:
    if array is not None:
        array.flags.writeable = False
    return array


def fold_conv(spec: ConvSpec, params: Mapping[str, np.ndarray], dtype: np.dtype) -> FoldedConv:
    """Fold one layer's batch norm (when it has one) into new arrays laid out as `FoldedConv` says."""
    kernel, bias = params["kernel"], params.get("bias")
    if "gamma" in params:
        kernel, bias = fold_batch_norm(
            kernel, bias, params["gamma"], params["beta"], params["mean"], params["var"], eps=spec.eps
        )
    kernel = np.array(kernel, dtype=dtype)  # always a copy: the model's arrays stay as they are
    bias = None if bias is None else np.array(bias, dtype=dtype)
    if not layer_kind(spec).as_matrix:
        return FoldedConv(_frozen(kernel), _frozen(bias), None)
    kernel = kernel.reshape(1, 1, -1, kernel.shape[-1])  # (1, 1, P, C_out)
    row = np.zeros(kernel.shape[-1], dtype) if bias is None else bias
    homogeneous = np.concatenate([kernel, row[None, None, None, :]], axis=2)  # (1, 1, P + 1, C_out)
    _frozen(homogeneous)
    # The plain kernel is the homogeneous one without its bias row: a view, not a second copy.
    return FoldedConv(homogeneous[:, :, :-1], _frozen(bias), homogeneous)


class FoldCache:
    """Folded layers, folded once and reused while the model's arrays stay the same objects.

    A layer is refolded when any of its arrays in `model.params` is replaced by another array
    (the cache holds the arrays it folded, so their ids cannot be reused while cached). The model's
    arrays are read-only (`npmnv2.parameters`), so replacing one is the only way to change it.
    """

    def __init__(self) -> None:
        self._entries: dict[str, tuple[tuple[int, ...], FoldedConv, tuple[np.ndarray, ...]]] = {}

    def folded(
        self, specs: list[ConvSpec], params: Mapping[str, Mapping[str, np.ndarray]], dtype: np.dtype
    ) -> dict[str, FoldedConv]:
        out = {}
        for spec in specs:
            arrays = tuple(params[spec.name].values())
            ids = tuple(map(id, arrays))
            hit = self._entries.get(spec.name)
            if hit is None or hit[0] != ids:
                hit = self._entries[spec.name] = (ids, fold_conv(spec, params[spec.name], dtype), arrays)
            out[spec.name] = hit[1]
        return out

    def clear(self) -> None:
        self._entries.clear()


# ============================================================================ the fast layers


def _add_into_second(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The residual add written into y, the block's fresh projection (no other step reads it)."""
    if x.shape != y.shape:
        return add(x, y)  # the textbook op's error
    return np.add(y, x, out=y)


def _resize_one_pixel(x: np.ndarray, size: tuple[int, int], *, align_corners: bool) -> np.ndarray:
    """A 1x1 map resized is a broadcast (a view); any other size, the textbook resize."""
    if x.shape[1:3] == (1, 1):
        return np.broadcast_to(x, (x.shape[0], *size, x.shape[3]))
    return resize_bilinear(x, size, align_corners=align_corners)


# The fast forms of the ops with no weights, by textbook op; an op not here runs its textbook
# function. Each takes the textbook op's arguments.
FAST_OPS: dict[Callable[..., Any], Callable[..., Any]] = {
    add: _add_into_second,
    concat_channels: lambda *parts: ChannelParts(parts),  # made only by a layer that needs it whole
    resize_bilinear: _resize_one_pixel,
}


class FastLayers:
    """How the plain forward runs the assembly: folded layers, fast forms, nothing recorded.

    Every tensor the assembly hands these layers is their own except the model's input, so the
    fast forms may write into their outputs (and `add` into its second input).
    """

    def __init__(self, folded: Mapping[str, FoldedConv], *, tf_padding: bool) -> None:
        self.folded = folded
        self.tf_padding = tf_padding

    def conv(self, x: Any, spec: ConvSpec, *, feeds: ConvSpec | None = None) -> Any:
        """One layer by its kind's fast form; its output comes back padded (`Padded`) when the
        layer it feeds reads padded inputs (a depthwise conv)."""
        out_pad = None
        if feeds is not None and layer_kind(feeds).reads_padded:
            x_shape = x.parts[0].shape if isinstance(x, ChannelParts) else x.shape
            _, ho, wo = geometry(spec, x_shape[1], x_shape[2], self.tf_padding)
            out_pad, _, _ = geometry(feeds, ho, wo, self.tf_padding)
        return layer_kind(spec).fast(x, spec, self.folded[spec.name], self.tf_padding, out_pad)

    def op(
        self,
        name: str,
        kind: str,
        fn: Callable[..., np.ndarray] | None,
        *inputs: Any,
        attrs: Mapping[str, Any] | None = None,
        tf_scope: str = "",
        **kwargs: Any,
    ) -> Any:
        """An op with no weights by its fast form (`FAST_OPS`), or its textbook function."""
        if fn is None:
            return inputs[0]
        plain = [x.made() if isinstance(x, ChannelParts) else as_array(x, name) for x in inputs]
        return FAST_OPS.get(fn, fn)(*plain, **kwargs)

    def output(self, x: Any) -> np.ndarray:
        """A tensor the assembly returns (a block output, the logits) as a plain array."""
        return as_array(x, "the network's output")

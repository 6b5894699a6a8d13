"""A model's parameters: read-only arrays that can be replaced, never edited where they lie.

`model.params` maps a layer name to that layer's arrays ("kernel", "bias", "gamma", ...). The plain
forward runs every layer with its batch norm folded in, folded once and cached; a cache that an
edit in place could leave stale would make `model(x)` and `model.trace(x)` disagree without a
word. So the arrays cannot be edited in place:

    model.params["layer.4.conv_3x3"]["kernel"][..., :8] = 0      # ValueError: ... read-only
    kernel = model.params["layer.4.conv_3x3"]["kernel"].copy()
    kernel[..., :8] = 0
    model.params["layer.4.conv_3x3"]["kernel"] = kernel           # a new array: refolded next time

Every array stored here is the model's own read-only copy (made when it is stored), so the arrays
you hand in keep their flags and are never changed, and a stored array is never changed either:
the fold cache knows a layer changed exactly when one of its arrays was replaced.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np


def frozen(value: Any) -> np.ndarray:
    """A read-only copy of `value`; an array already read-only that owns its memory (one stored here
    before, moved to another model or layer) is kept as it is."""
    if isinstance(value, np.ndarray) and not value.flags.writeable and value.flags.owndata:
        return value
    array = np.array(value, copy=True)
    array.flags.writeable = False
    return array


class _Stored(dict):
    """A dict that converts every value it stores (`stored`), through every way of storing one."""

    def __init__(self, items: Any = (), /, **more: Any) -> None:
        super().__init__()
        self.update(items, **more)

    @staticmethod
    def stored(value: Any) -> Any:
        raise NotImplementedError

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, self.stored(value))

    def update(self, items: Any = (), /, **more: Any) -> None:
        for key, value in dict(items, **more).items():
            self[key] = value

    def setdefault(self, key: str, value: Any = None) -> Any:
        if key not in self:
            self[key] = value
        return self[key]


class LayerParams(_Stored):
    """One layer's arrays by name; storing an array stores a read-only copy of it."""

    stored = staticmethod(frozen)


class ModelParams(_Stored):
    """Layer name -> `LayerParams`; storing a layer's mapping stores it as LayerParams."""

    @staticmethod
    def stored(arrays: Mapping[str, Any] | None) -> LayerParams:
        return arrays if isinstance(arrays, LayerParams) else LayerParams(arrays or {})

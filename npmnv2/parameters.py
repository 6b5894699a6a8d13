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

from collections.abc import Iterable, Mapping
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


class LayerParams(dict):
    """One layer's arrays by name; storing an array stores a read-only copy of it."""

    def __init__(self, arrays: Mapping[str, Any] | Iterable[tuple[str, Any]] = (), **more: Any) -> None:
        super().__init__()
        self.update(arrays, **more)

    def __setitem__(self, name: str, value: Any) -> None:
        super().__setitem__(name, frozen(value))

    def update(self, arrays: Any = (), /, **more: Any) -> None:
        for name, value in dict(arrays, **more).items():
            self[name] = value

    def setdefault(self, name: str, value: Any = None) -> np.ndarray:
        if name not in self:
            self[name] = value
        return self[name]


class ModelParams(dict):
    """Layer name -> `LayerParams`; storing a layer's mapping stores it as LayerParams."""

    def __init__(self, layers: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        super().__init__()
        self.update(layers or {})

    def __setitem__(self, name: str, arrays: Mapping[str, Any]) -> None:
        super().__setitem__(name, arrays if isinstance(arrays, LayerParams) else LayerParams(arrays))

    def update(self, layers: Any = (), /, **more: Any) -> None:
        for name, arrays in dict(layers, **more).items():
            self[name] = arrays

    def setdefault(self, name: str, arrays: Any = None) -> LayerParams:
        if name not in self:
            self[name] = arrays or {}
        return self[name]

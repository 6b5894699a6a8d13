"""timm without torchvision: a test-only shim.

timm's model code is pure PyTorch, but `import timm` imports torchvision (data transforms, dataset
classes, `FrozenBatchNorm2d` for `freeze_batch_norm_2d`). The only torchvision wheel on this
project's machines is a CUDA build whose compiled ops do not load beside the CPU build of torch
("operator torchvision::nms does not exist"), so `import torchvision` fails. `import_timm()` puts a
stand-in `torchvision` on the import path while timm is imported, and takes it away right after:
every module and name timm imports from it exists, and using any of them raises; nothing imported
later (transformers looks for torchvision too) sees it. No MobileNetV2 code path of timm touches
torchvision, so `timm.create_model("mobilenetv2_100")` builds and runs the real timm model.

Nothing outside the tests sees the stand-in; npmnv2 itself never imports timm or torchvision.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import types
from typing import Any


class _Unavailable(type):
    """A class (and metaclass) standing for any torchvision name: attributes give more stand-ins,
    calling one raises."""

    def __getattr__(cls, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return _Unavailable(name, (), {})

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"torchvision.{cls.__name__} is not available here (tests/timm_shim.py)")

    def __hash__(cls) -> int:
        return id(cls)


class _Module(types.ModuleType):
    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        value = _Unavailable(name, (), {})
        setattr(self, name, value)
        return value


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname == "torchvision" or fullname.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec: Any) -> types.ModuleType:
        module = _Module(spec.name)
        module.__path__ = []
        module.__version__ = "0.0+timm-shim"
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        return None


def import_timm() -> Any:
    """timm, imported with the torchvision stand-in in place (once per process)."""
    if "timm" in sys.modules:
        return sys.modules["timm"]
    for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
        del sys.modules[name]  # a half-imported real torchvision from an earlier failed import
    finder = _Finder()
    sys.meta_path.insert(0, finder)
    try:
        import timm
    finally:  # withdrawn at once: transformers, later in the same process, must not find a torchvision
        sys.meta_path.remove(finder)
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]
    return timm

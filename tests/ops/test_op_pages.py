"""Every op the network runs, checked from its own page (`npmnv2.ops.PAGE_OF`), with no list of ops.

Small random float64 models (every activation, classification and DeepLab, both paddings) are
traced; every recorded step whose op has a page is recomputed three ways from the step's own
inputs, attributes and parameters:
- the page's `forward_step` gives back the recorded output (what `verify` relies on);
- the page's loop twin (`OpPage.loops`) gives the same numbers;
- the page's backward equals finite differences of `forward_step`, for every input and every
  parameter it returns a gradient of.
An op added to `npmnv2.ops` and used by `npmnv2.network` is tested here without editing this file;
one that a page leaves without a loop twin or a backward fails `test_every_float_page_...`.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from conftest import randomised

from npmnv2 import MobileNetV2Config, MobileNetV2ForImageClassification, MobileNetV2ForSemanticSegmentation, ops
from npmnv2.ops import ACTIVATIONS, PAGE_OF

TINY = dict(depth_multiplier=0.35)


def _traced_steps() -> list:
    """One recorded step per (op, attributes, parameter names) over the small models."""
    rng = np.random.default_rng(5)
    runs = [(MobileNetV2ForImageClassification, dict(hidden_act=name, num_labels=4), 33) for name in ACTIVATIONS]
    runs += [
        (MobileNetV2ForImageClassification, dict(tf_padding=False, num_labels=3, output_stride=16), 35),
        (MobileNetV2ForSemanticSegmentation, dict(num_labels=3, output_stride=8), 33),
        (MobileNetV2ForSemanticSegmentation, dict(num_labels=2, output_stride=16, tf_padding=False), 34),
    ]
    seen: dict[tuple, object] = {}
    for cls, fields, size in runs:
        model = randomised(cls(MobileNetV2Config(**TINY, **fields), dtype=np.float64), seed=len(seen))
        pixels = rng.normal(size=(1, 3, size, size + 2))
        for step in model.trace(pixels).steps:
            if step.op not in PAGE_OF:
                continue
            attrs = {k: v for k, v in step.attrs.items() if k not in ("layer", "c_in", "c_out")}  # not the layer
            key = (step.op, repr(sorted(attrs.items())), tuple(step.params))
            seen.setdefault(key, step)
    return list(seen.values())


STEPS = _traced_steps()
IDS = [f"{s.name}:{s.op.__name__}" for s in STEPS]


def nhwc(x: np.ndarray) -> np.ndarray:
    """A recorded (NCHW) tensor in the layout the pages compute in; (N, C) features stay as they are."""
    return np.ascontiguousarray(ops.nchw_to_nhwc(x)) if x.ndim == 4 else np.asarray(x)


def test_every_float_page_has_a_loop_twin_a_backward_and_a_traced_step() -> None:
    """A page the network uses must say how to rerun, twin and differentiate its op."""
    float_pages = [page for page in PAGE_OF.values() if page.forward_step is not None or page.backward is not None]
    missing = [p.forward.__name__ for p in float_pages if p.loops is None or p.backward is None]
    assert not missing, f"pages without a loop twin or a backward: {missing}"
    traced = {s.op for s in STEPS}
    # avg_pool2d is the TF-slim classifier's fixed 7x7 pool: only imported TF graphs run it.
    unused = {p.forward.__name__ for p in float_pages if p.forward not in traced and p.forward is not ops.avg_pool2d}
    assert not unused, f"float op pages no small model runs (add a run above): {sorted(unused)}"


@pytest.mark.parametrize("step", STEPS, ids=IDS)
def test_forward_step_gives_back_the_recorded_output(step) -> None:
    out = PAGE_OF[step.op].forward_step(step, [nhwc(x) for x in step.inputs])
    np.testing.assert_allclose(out, nhwc(step.output), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("step", STEPS, ids=IDS)
def test_the_loop_twin_computes_the_same_numbers(step) -> None:
    page = PAGE_OF[step.op]
    xs = [nhwc(x) for x in step.inputs]
    twin = page.forward_step(dataclasses.replace(step, op=page.loops), xs)
    np.testing.assert_allclose(twin, page.forward_step(step, xs), rtol=1e-10, atol=1e-11)


def _directional(f, x: np.ndarray, v: np.ndarray, g: np.ndarray, h: float = 1e-6) -> float:
    """d/dt <g, f(x + t v)> at t = 0, by central differences."""
    return float(np.sum(g * (f(x + h * v) - f(x - h * v)))) / (2 * h)


@pytest.mark.parametrize("step", STEPS, ids=IDS)
def test_the_backward_equals_finite_differences(step) -> None:
    page = PAGE_OF[step.op]
    rng = np.random.default_rng(7)
    xs = [nhwc(x) for x in step.inputs]
    g = rng.normal(size=nhwc(step.output).shape)
    grad_inputs, grad_params = page.backward(step, xs, g)
    checks = []
    for i, x in enumerate(xs):

        def f(z, i=i):
            return page.forward_step(step, [z if j == i else y for j, y in enumerate(xs)])

        checks.append((f"input {i}", f, x, grad_inputs[i]))
    for name, grad in grad_params.items():

        def f(p, name=name):
            return page.forward_step(dataclasses.replace(step, params={**step.params, name: p}), xs)

        checks.append((name, f, step.params[name], grad))
    assert checks, "a backward with nothing to check"
    for what, f, x, grad in checks:
        v = rng.normal(size=np.shape(x))
        numeric, analytic = _directional(f, x, v, g), float(np.sum(grad * v))
        assert abs(numeric - analytic) <= 1e-6 * max(1.0, abs(analytic)), f"{what}: {numeric} vs {analytic}"

"""How npmnv2's objects show in Jupyter: steps computed one at a time, a step as a card, a trace
filtered to its kept rows, a summary whose params column adds up, explanations as text."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from conftest import tiny_config

import npmnv2
from npmnv2 import viz
from npmnv2.trace import Explanation, StepStream

X = np.random.default_rng(0).uniform(-1, 1, (1, 3, 64, 64)).astype(np.float32)


@pytest.fixture(scope="module")
def model():
    return npmnv2.MobileNetV2ForImageClassification(tiny_config(num_labels=7))


def test_steps_computes_each_step_only_when_asked(model):
    steps = model.steps(X)
    assert isinstance(steps, StepStream) and "0 computed so far" in repr(steps)
    first = next(steps)
    assert first.name == "conv_stem.first_conv.convolution" and first.output is not None
    assert len(steps.trace.steps) == 1  # nothing after the first step has run
    second = next(steps)
    assert second.name == "conv_stem.first_conv.normalization" and len(steps.trace.steps) == 2
    steps.close()
    assert "finished after 2 steps" in repr(steps)
    assert not any(t.name == "npmnv2-steps" for t in threading.enumerate() if t.is_alive())


def test_steps_run_to_the_end_give_the_same_steps_and_logits_as_a_trace(model):
    streamed = list(model.steps(X))
    traced = model.trace(X)
    assert [s.name for s in streamed] == [s.name for s in traced.steps]
    np.testing.assert_array_equal(streamed[-1].output, traced.steps[-1].output)


def test_steps_raise_the_forwards_input_error(model):
    steps = model.steps(np.zeros((1, 3, 8, 8), np.float32))
    with pytest.raises(ValueError, match="smaller than the minimum"):
        next(steps)


def test_a_step_shows_as_a_card_with_its_explanation(model):
    step = model.trace(X).step("layer.1.conv_3x3.convolution")
    card = step._repr_html_()
    for text in ("layer.1.conv_3x3.convolution", "npmnv2.ops.depthwise_conv2d", "padding", "MACs", "Computed by"):
        assert text in card
    explanation = step.explain()
    assert isinstance(explanation, Explanation) and isinstance(explanation, str)

    shown: list[str] = []
    printer = type("Printer", (), {"text": lambda self, value: shown.append(value)})()
    explanation._repr_pretty_(printer, False)
    assert shown == [str(explanation)] and not shown[0].startswith("'")


def test_a_filtered_trace_shows_its_kept_rows_and_counts_the_hidden(model):
    trace = model.trace(X, layers="layer.3*")
    text = repr(trace)
    rows = text.splitlines()[1:-1]
    assert rows and all(line.startswith("layer.3") for line in rows)
    hidden = len(trace.steps) - len(trace)
    assert f"{hidden} steps whose tensors were not kept are hidden" in text.splitlines()[-1]
    assert "<td>-</td>" not in trace._repr_html_() and f"{hidden} steps" in trace._repr_html_()
    assert len(trace.format(kept_only=False).splitlines()) == len(trace.steps) + 2


def test_the_summary_counts_each_parameter_once(model):
    summary = model.summary(96)
    assert sum(r["params"] for r in summary.rows) == model.num_parameters() == summary.total_params
    assert "<table>" in summary._repr_html_()


def test_feature_maps_of_the_classifier_say_what_to_do_instead(model):
    trace = model.trace(X)
    with pytest.raises(ValueError, match="not feature maps"):
        viz.feature_map_grid(trace.step("classifier"))

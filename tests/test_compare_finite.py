"""compare judges finite numbers only: NaN or inf anywhere is a divergence, named with its count, and
the API checks its tolerance and reference as the command line does (issue 20, point 2)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import tiny_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import npmnv2
from npmnv2.verify import QuantizedTensors

X = np.random.default_rng(0).uniform(-1, 1, (1, 3, 64, 64)).astype(np.float32)


@pytest.fixture(scope="module")
def trace():
    model = npmnv2.MobileNetV2ForImageClassification(tiny_config(num_labels=5))
    return model.trace(X, stop_at="layer.1")


def test_a_reference_of_infinities_is_a_divergence_not_agreement(trace):
    reference = {name: np.full_like(trace[name], np.inf) for name in trace}
    result = npmnv2.compare(trace, reference)
    assert result.first_divergence == trace.steps[0].name
    assert "non-finite" in repr(result)


def test_a_single_infinite_value_among_correct_ones_is_found(trace):
    reference = {name: trace[name].copy() for name in trace}
    name = "layer.0.conv_3x3.activation"
    reference[name][0, 0, 0, 0] = np.inf
    result = npmnv2.compare(trace, reference)
    assert result.first_divergence == name
    assert next(r for r in result.rows if r.name == name).nonfinite == 1


def test_nan_tensors_or_nan_scales_of_a_quantized_reference_diverge(trace):
    names = list(trace)
    tensors = {name: trace[name].copy() for name in names}
    tensors[names[2]][...] = np.nan
    result = npmnv2.compare(trace, QuantizedTensors(tensors, {n: 0.02 for n in names}))
    assert result.first_divergence == names[2]
    clean = {name: trace[name].copy() for name in names}
    result = npmnv2.compare(trace, QuantizedTensors(clean, {**{n: 0.02 for n in names}, names[1]: float("nan")}))
    assert result.first_divergence == names[1]


@pytest.mark.parametrize("tolerance", [float("nan"), -1.0, float("inf"), "1e-4", True])
def test_the_api_refuses_a_tolerance_the_command_line_refuses(trace, tolerance):
    with pytest.raises(ValueError, match="tolerance must be a finite number >= 0"):
        npmnv2.compare(trace, {name: trace[name] for name in trace}, tolerance=tolerance)


def test_an_empty_reference_is_refused(trace):
    with pytest.raises(ValueError, match="holds no tensors"):
        npmnv2.compare(trace, {})


# ======================================== the standing fuzz suite: references with NaN and inf

FUZZ = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(
    step=st.integers(0, 10**6),
    poison=st.sampled_from([np.nan, np.inf, -np.inf]),
    count=st.integers(1, 5),
    seed=st.integers(0, 2**16),
    quantized=st.booleans(),
)
def test_fuzzed_references_with_nan_or_inf_always_diverge_where_poisoned(trace, step, poison, count, seed, quantized):
    names = list(trace)
    name = names[step % len(names)]
    tensors = {n: trace[n].copy() for n in names}
    rng = np.random.default_rng(seed)
    tensors[name].flat[rng.integers(0, tensors[name].size, count)] = poison
    reference = QuantizedTensors(tensors, dict.fromkeys(names, 0.01)) if quantized else tensors
    result = npmnv2.compare(trace, reference)
    row = next(r for r in result.rows if r.name == name)
    assert row.nonfinite >= 1 and not row.ok
    assert result.first_divergence is not None

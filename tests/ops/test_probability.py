"""`npmnv2.ops.probability`: softmax and log-softmax (float and integer).
Each form against PyTorch where it has a twin there, its loop twin and finite differences."""

from __future__ import annotations

import numpy as np
import torch
from op_checks import close, x4

from npmnv2 import ops

RNG = np.random.default_rng(313)


# ---------------------------------------------------------------- softmax + losses
def test_softmax_and_log_softmax_match_torch_on_large_logits():
    z = RNG.normal(size=(4, 10)) * 100
    np.testing.assert_allclose(ops.softmax(z), torch.softmax(torch.from_numpy(z), -1).numpy(), rtol=1e-12, atol=1e-300)
    # log-probabilities near 0 carry the rounding of logits of size ~100: an ulp of 100 is 1.4e-14
    np.testing.assert_allclose(
        ops.log_softmax(z), torch.log_softmax(torch.from_numpy(z), -1).numpy(), rtol=1e-12, atol=1e-13
    )


def test_softmax_and_losses_equal_their_loops() -> None:
    logits, labels = x4(6, 4) * 3, np.array([0, 3, -100, 2, 1, -100])
    close(ops.softmax(logits), ops.probability.softmax_loops(logits))
    close(ops.log_softmax(logits), ops.probability.log_softmax_loops(logits))
    close(ops.cross_entropy(logits, labels), ops.losses.cross_entropy_loops(logits, labels))
    targets = RNG.uniform(size=(6, 4))
    close(ops.mse_loss(logits, targets), ops.losses.mse_loss_loops(logits, targets))
    close(ops.bce_with_logits(logits, targets), ops.losses.bce_with_logits_loops(logits, targets))


def test_integer_softmax_equals_its_fixed_point_loops_and_sums_to_about_one():
    x = RNG.integers(0, 256, (3, 40))
    ours = ops.probability.softmax_int(x, 0.0986, out_range=(0, 255))
    np.testing.assert_array_equal(ours, ops.probability.softmax_int_loops(x, 0.0986, out_range=(0, 255)))
    assert np.all(np.abs(ours.sum(axis=1) / 256 - 1) < 0.1)
    signed = ops.probability.softmax_int(x - 128, 0.0986, out_range=(-128, 127))
    np.testing.assert_array_equal(signed, ours - 128)

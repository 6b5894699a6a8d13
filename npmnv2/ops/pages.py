"""`OpPage`: what the rest of npmnv2 asks of an op, answered on the op's own page (its module).

A trace asks a recorded step's op for its attributes and its description, `npmnv2.gradients` asks
it to run the step backward, the MAC column asks it to count. Each op module ends with the
`PAGES` of its ops; `npmnv2.ops.PAGE_OF` maps every forward function to its page. So adding an
op is adding one module (or one function and one `OpPage` to an existing one): nothing else
branches on what kind of op a step was.

The `step` these functions receive is a recorded `npmnv2.trace.Step` (duck-typed here: `attrs`,
`params`, `input_shapes`, `output_shape`, `macs`); `inputs` and `grad_out` are NHWC arrays.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

StepBackward = Callable[[Any, list[np.ndarray], np.ndarray], tuple[list[np.ndarray], dict[str, np.ndarray]]]


@dataclass(frozen=True)
class OpPage:
    """One op as the rest of the package sees it.

    forward: the textbook function a trace records as `step.op`.
    describe(step): the step in words, with its real numbers (`Step.explain`).
    backward(step, inputs, grad_out): the gradients of the step's inputs, in order, and of its
        parameters by name (`{"kernel": ..., "bias": ...}`); None for an op with no backward.
    backward_op: the public backward function it calls (what a backward step shows as its op).
    macs(output_shape, kernel_shape): its multiply-accumulates; None for an op that multiplies
        by no weights.
    spec_attrs(spec, tf_padding): the attributes a layer spec gives a step of this op.
    forward_step(step, inputs): the step computed again from `inputs` (NHWC), with the step's own
        attributes and parameters, by the step's own function (`step.op`): what `npmnv2.verify`
        runs on another implementation's tensors.
    loops: the op's loop twin, called as the forward is (so `forward_step` runs it on a step whose
        `op` is the twin): explicit Python loops, a test oracle for small arrays.

    `tests/ops/test_op_pages.py` reads these pages: every op a traced model runs is recomputed by its
    `forward_step`, checked against its loop twin and, where it has a backward, against finite
    differences, with no list of ops to keep.
    """

    forward: Callable[..., np.ndarray]
    describe: Callable[[Any], str]
    backward: StepBackward | None = None
    backward_op: Callable[..., Any] | None = None
    macs: Callable[[tuple[int, ...], tuple[int, ...]], int] | None = None
    spec_attrs: Callable[[Any, bool], Mapping[str, Any]] | None = None
    forward_step: Callable[[Any, list[np.ndarray]], np.ndarray] | None = None
    loops: Callable[..., np.ndarray] | None = None


def spatial(shape: tuple[int, ...]) -> str:
    """'14x14' of an NCHW shape (the H and W a description names); '1x1' for (N, C) features."""
    return "x".join(map(str, shape[2:])) if len(shape) > 2 else "1x1"


def parameter_grads(step: Any, kernel: np.ndarray, bias: np.ndarray | None) -> dict[str, np.ndarray]:
    """{"kernel": ..., "bias": ...}: the bias only when the step has one."""
    return {"kernel": kernel, **({"bias": bias} if "bias" in step.params else {})}

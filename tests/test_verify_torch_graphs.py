"""`verify.check` on PyTorch ports handed over as graphs (issue 27): a `torch.fx` GraphModule (timm's
fused batch norms inlined as `F.batch_norm`, the skip as `operator.add`), TorchScript modules from
`torch.jit.script` and `torch.jit.trace` (which refuse Python hooks) and `torch.export` programs (ATen
ops; decomposed, a linear is an addmm and a batch norm returns a tuple) are read op by op, judged as
their eager module is, and a batch norm npmnv2 cannot read never turns into a "diverges"."""

from __future__ import annotations

import pytest
import torch
from test_verify_ports import PLANTED, _timm_port
from torchvision_port import Port, randomize

from npmnv2 import verify

GRAPHS = {
    "fx": torch.fx.symbolic_trace,
    "script": torch.jit.script,
    "trace": lambda port: torch.jit.trace(port, torch.zeros(1, 3, 96, 96)),
    "export": lambda port: torch.export.export(port, (torch.zeros(1, 3, 96, 96),)),
    "export-decomposed": lambda port: torch.export.export(port, (torch.zeros(1, 3, 96, 96),)).run_decompositions(),
}


@pytest.fixture(scope="module")
def cat(coral_dir):
    return coral_dir / "cat.bmp"


@pytest.mark.parametrize("make", GRAPHS.values(), ids=GRAPHS.keys())
def test_a_timm_port_as_a_graph_is_faithful_with_every_batch_norm_read(cat, make):
    port, config = _timm_port()
    report = verify.check(make(port), cat, config=config)
    assert report.faithful, report.explain()
    assert len(report.weights_read) == 53 and all("batch norm" in w for _, _, w in report.weights_read[:-1])
    assert "NOT READ" not in report.coverage()


@pytest.mark.parametrize("make", [GRAPHS["script"], GRAPHS["trace"]], ids=["script", "trace"])
def test_a_timm_port_with_tf_same_padding_as_torchscript_is_faithful(cat, make):
    port, config = _timm_port(pad_type="same")
    report = verify.check(make(port), cat, config=config)
    assert report.faithful, report.explain()


@pytest.mark.parametrize("make", GRAPHS.values(), ids=GRAPHS.keys())
@pytest.mark.parametrize("plant,where,cause,theirs", PLANTED, ids=[c for _, _, c, _ in PLANTED])
def test_a_bug_planted_in_a_timm_graph_is_located_and_named(cat, make, plant, where, cause, theirs):
    port, config = _timm_port(seed=1)
    plant(port)
    report = verify.check(make(port), cat, config=config)
    assert report.first_local_divergence == where and report.cause == cause, report.explain()
    assert theirs.rsplit(".", 1)[0] in report.verdict(), report.verdict()


TORCHVISION_GRAPHS = {
    "fx": torch.fx.symbolic_trace,
    "trace": lambda port: torch.jit.trace(port, torch.zeros(1, 3, 224, 224)),
}
BUGS = [
    ({"transposed": 4}, "layer.3.conv_3x3.convolution", "kernel.transposed"),
    ({"stride_on_expand": 6}, "layer.5.conv_3x3.convolution", "stride.misplaced"),
    ({"activation_on_projection": 3}, "layer.2.reduce_1x1.normalization", "activation.on_projection"),
]


@pytest.mark.parametrize("make", TORCHVISION_GRAPHS.values(), ids=TORCHVISION_GRAPHS.keys())
@pytest.mark.parametrize("bugs,where,cause", BUGS, ids=[c for _, _, c in BUGS])
def test_a_kernel_the_graph_transforms_on_the_fly_is_judged_as_stored(cat, make, bugs, where, cause):
    """A port that transposes its kernel inside forward: the graph reads the stored parameter through
    the transpose, so the convolution is judged on the kernel the port holds (freezing must not fold
    the transpose into a new constant, which would make the port look faithful)."""
    report = verify.check(make(randomize(Port(bugs=bugs), seed=1).eval()), cat, config="torchvision")
    assert report.first_local_divergence == where and report.cause == cause, report.explain()


class _ScaleShift(torch.nn.Module):
    """A batch norm written out as a per-channel scale and shift with its ReLU6: no batch norm npmnv2
    can read."""

    def __init__(self, bn):
        super().__init__()
        self.scale = torch.nn.Parameter(bn.weight / torch.sqrt(bn.running_var + bn.eps))
        self.shift = torch.nn.Parameter(bn.bias - bn.running_mean * self.scale)

    def forward(self, x):
        return torch.nn.functional.relu6(x * self.scale.view(1, -1, 1, 1) + self.shift.view(1, -1, 1, 1))


@pytest.mark.parametrize("make", [lambda p: p, GRAPHS["fx"]], ids=["eager", "fx"])
def test_a_difference_behind_an_unread_batch_norm_is_inconclusive_not_diverges(cat, make):
    port, config = _timm_port(seed=2)
    port.bn1 = _ScaleShift(port.bn1)
    report = verify.check(make(port), cat, config=config)
    assert report.status == "inconclusive", report.explain()
    assert report.unread_batch_norm == "conv_stem.first_conv"
    assert "batch norm of conv_stem.first_conv was not read" in report.verdict()
    assert "52 of the spec's 53 weight layers read" in report.explain()


def test_a_torchscript_module_is_not_changed_by_being_read(cat):
    port, config = _timm_port()
    scripted = torch.jit.script(port)
    before = {k: v.clone() for k, v in scripted.state_dict().items()}
    verify.check(scripted, cat, config=config)
    after = scripted.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)

"""`verify.check` on ports made by real producers, handed over as they come (issue 27): faithful
ports are faithful, planted bugs are located and named, and the port's own names are spoken."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from timm_shim import import_timm

from npmnv2 import verify

timm = import_timm()

# timm's mobilenetv2_* : symmetric padding (pad_type "") or TF SAME (pad_type "same", Conv2dSame),
# batch-norm eps 1e-5, 1000 classes; BatchNormAct2d (batch norm with its ReLU6 inside). Its stages
# blocks[0..6] hold 1, 2, 3, 4, 3, 3, 1 blocks: blocks[0][0] is npmnv2's conv_stem (with first_conv),
# blocks[1][0] layer.0, blocks[3][1] layer.6, blocks[4][1] layer.10.
SMALL = {"depth_multiplier": 0.35, "image_size": 96, "layer_norm_eps": 1e-5, "num_labels": 1000}


def _timm_port(name: str = "mobilenetv2_035", seed: int = 0, **kwargs):
    same = kwargs.get("pad_type") == "same"
    config = verify.spec_config({**SMALL, "tf_padding": same}) if name == "mobilenetv2_035" else "torchvision"
    port = timm.create_model(name, pretrained=False, **kwargs)
    verify.set_weights(port, verify.random_weights(config, seed=seed))
    return port.eval(), config


@pytest.fixture(scope="module")
def cat(coral_dir):
    return coral_dir / "cat.bmp"


def test_timm_mobilenetv2_100_as_created_is_faithful_and_its_batch_norms_are_read(cat):
    """Issue 27: BatchNormAct2d was matched by exact class name, so timm's batch norms were never
    read and every timm port "diverged at conv_stem.first_conv.activation"."""
    port = timm.create_model("mobilenetv2_100", pretrained=False).eval()
    report = verify.check(port, cat, config="torchvision")
    assert report.faithful, report.explain()
    assert len(report.weights_read) == 53 and all("batch norm" in w for _, _, w in report.weights_read[:-1])
    assert report.weights_read[0][1] == "conv_stem"


@pytest.mark.parametrize("pad_type", ["", "same"], ids=["symmetric", "Conv2dSame"])
def test_timm_ports_with_realistic_weights_are_faithful(cat, pad_type):
    port, config = _timm_port(pad_type=pad_type)
    if pad_type == "same":
        assert type(port.conv_stem).__name__ == "Conv2dSame"
    report = verify.check(port, cat, config=config)
    assert report.faithful, report.explain()
    assert report.rows[-1].peer_name == "classifier"


def _relu(port):
    port.blocks[3][1].bn1.act = torch.nn.ReLU()


def _eps(port):
    port.blocks[2][0].bn2.eps = 1e-1


def _no_skip(port):
    port.blocks[4][1].has_skip = False


PLANTED = [
    (_relu, "layer.6.expand_1x1.activation", "activation.relu", "blocks.3.1.bn1"),
    (_eps, "layer.2.conv_3x3.normalization", "batch_norm.eps", "blocks.2.0.bn2"),
    (_no_skip, "layer.10", "residual.missing", "blocks.4.2.conv_pw"),  # the block has no tensor of its own
]


@pytest.mark.parametrize("plant,where,cause,theirs", PLANTED, ids=[c for _, _, c, _ in PLANTED])
def test_a_bug_planted_in_a_timm_port_is_located_named_and_given_timms_name(cat, plant, where, cause, theirs):
    port, config = _timm_port(seed=1)
    plant(port)
    report = verify.check(port, cat, config=config)
    assert report.first_local_divergence == where and report.cause == cause, report.explain()
    assert f"your {theirs})" in report.verdict(), report.verdict()


def test_timm_same_padding_judged_against_a_symmetric_spec_is_named(cat):
    port, config = _timm_port(pad_type="same")
    symmetric = verify.spec_config({**SMALL, "tf_padding": False})
    report = verify.check(port, cat, config=symmetric)
    assert report.first_local_divergence == "conv_stem.first_conv.convolution"
    assert report.cause == "padding.tf_same" and "your conv_stem" in report.verdict()


def test_a_timm_port_with_a_fused_batch_norm_and_unknown_children_is_not_silently_identity(cat):
    port, config = _timm_port()
    port.bn2.act = torch.nn.GELU()  # an activation npmnv2 does not model, inside the fused batch norm
    report = verify.check(port, cat, config=config)
    assert not report.faithful, report.explain()


def test_set_weights_reads_back_what_it_wrote(cat):
    port, config = _timm_port(seed=3)
    reference = verify.random_weights(config, seed=3)
    model = verify.model_from_peer(verify.peers.torch_peer(port, np.zeros((1, 3, 96, 96), np.float32)), config)
    for spec in reference.specs:
        np.testing.assert_allclose(model.params[spec.name]["kernel"], reference.params[spec.name]["kernel"], rtol=1e-6)

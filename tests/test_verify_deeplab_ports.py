"""DeepLabV3 ports from a real producer: transformers' MobileNetV2ForSemanticSegmentation, handed
over as a module, as a torch.jit.trace or torch.export graph, and as an ONNX file from PyTorch's
TorchScript exporter (which leaves out the backbone's last 1x1 conv: DeepLabV3's head never reads
it); faithful as made, and bugs planted in the backbone and in the head located and named."""

import copy

import pytest
import torch

from npmnv2 import verify

SPEC = verify.spec_config("transformers", depth_multiplier=0.5, num_labels=21, output_stride=16, image_size=129)


class Logits(torch.nn.Module):
    """What a porter exports: the segmentation logits, not transformers' output dataclass."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).logits


@pytest.fixture(scope="module")
def deeplab():
    return verify.transformers_twin(verify.random_weights(SPEC, seed=0, task="segmentation")).eval()


@pytest.fixture(scope="module")
def bird(coral_dir):
    return coral_dir / "bird_segmentation.bmp"


def _as(form: str, port: torch.nn.Module, tmp_path):
    x = torch.zeros(1, 3, 129, 129)
    if form == "module":
        return port
    if form == "trace":
        return torch.jit.trace(Logits(port), x)
    if form == "export":
        return torch.export.export(Logits(port), (x,))
    path = tmp_path / "deeplab.onnx"
    torch.onnx.export(Logits(port), x, str(path), dynamo=False)
    return path


@pytest.mark.parametrize("form", ["module", "trace", "export", "onnx"])
def test_transformers_deeplabv3_in_every_form_is_faithful_with_every_weight_it_computes_with_read(
    deeplab, bird, form, tmp_path
):
    report = verify.check(_as(form, deeplab, tmp_path), bird, config=SPEC, task="segmentation")
    assert report.faithful, report.explain()
    assert report.rows[-1].name == "segmentation_head.classifier.convolution"  # the logits were judged
    read = {ours for ours, _, _ in report.weights_read}
    computed = {s.name for s in verify.random_weights(SPEC, task="segmentation").specs} - {"conv_1x1"}
    assert read - computed <= {"conv_1x1"} and read >= computed  # an export may drop the unused conv_1x1


def _relu_in_the_backbone(port):
    port.mobilenet_v2.layer[5].expand_1x1.activation = torch.nn.ReLU()


def _eps_in_the_head(port):
    port.segmentation_head.conv_aspp.normalization.eps = 1e-3


def _no_activation_in_the_head(port):
    port.segmentation_head.conv_projection.activation = torch.nn.Identity()


PLANTED = [
    (_relu_in_the_backbone, "layer.5.expand_1x1.activation", "activation.relu"),
    (_eps_in_the_head, "segmentation_head.conv_aspp.normalization", "batch_norm.eps"),
    (_no_activation_in_the_head, "segmentation_head.conv_projection.activation", "activation.missing"),
]


@pytest.mark.parametrize("form", ["module", "onnx"])
@pytest.mark.parametrize("plant,where,cause", PLANTED, ids=[c for _, _, c in PLANTED])
def test_a_bug_planted_in_a_deeplabv3_port_is_located_and_named(deeplab, bird, form, plant, where, cause, tmp_path):
    port = copy.deepcopy(deeplab)
    plant(port)
    folded = form == "onnx" and cause == "batch_norm.eps"  # the exporter folds the eps into the weights
    reference = verify.random_weights(SPEC, seed=0, task="segmentation") if folded else None
    report = verify.check(_as(form, port, tmp_path), bird, config=SPEC, task="segmentation", reference=reference)
    assert report.status == "diverges", report.explain()
    if folded:  # its values are what its folded weights say: only the reference shows the eps
        where, cause = where.removesuffix(".normalization"), "weights.batch_norm_eps"
        assert (report.weight_divergence, report.weight_causes[0].cause) == (where, cause), report.explain()
        return
    assert report.first_local_divergence == where and report.cause == cause, report.explain()

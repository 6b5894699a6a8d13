"""Build transformers' PyTorch MobileNetV2 with randomised weights and collect its activations."""

from __future__ import annotations

import numpy as np
import torch
import transformers

import npmnv2

HF_CLASSES = {
    npmnv2.MobileNetV2Model: transformers.MobileNetV2Model,
    npmnv2.MobileNetV2ForImageClassification: transformers.MobileNetV2ForImageClassification,
    npmnv2.MobileNetV2ForSemanticSegmentation: transformers.MobileNetV2ForSemanticSegmentation,
}


def randomize(model: torch.nn.Module, seed: int) -> None:
    """Give every parameter and batch-norm running statistic a random, non-default value.

    The defaults (mean 0, var 1, gamma 1, beta 0) would hide eps and folding bugs.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                c = module.num_features
                module.weight.copy_(torch.rand(c, generator=g) + 0.5)
                module.bias.copy_(torch.randn(c, generator=g) * 0.2)
                module.running_mean.copy_(torch.randn(c, generator=g) * 0.2)
                module.running_var.copy_(torch.rand(c, generator=g) + 0.5)
            elif isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
                w = module.weight
                fan_in = w[0].numel()
                w.copy_(torch.randn(w.shape, generator=g) * (1.0 / fan_in) ** 0.5)
                if module.bias is not None:
                    module.bias.copy_(torch.randn(module.bias.shape, generator=g) * 0.1)


def build_pair(np_cls, config_kwargs: dict, *, dtype=np.float32, seed: int = 0):
    """(transformers model, npmnv2 model) with the same random weights."""
    hf_config = transformers.MobileNetV2Config(**config_kwargs)
    hf_model = HF_CLASSES[np_cls](hf_config).eval()
    randomize(hf_model, seed)
    if dtype == np.float64:
        hf_model = hf_model.double()
    state = {k: v.detach().numpy() for k, v in hf_model.state_dict().items()}
    config = npmnv2.MobileNetV2Config(**config_kwargs)
    return hf_model, np_cls.from_state_dict(state, config, dtype=dtype)


def torch_activations(hf_model: torch.nn.Module, pixel_values: np.ndarray, **forward_kwargs):
    """Forward-hook outputs of every module, keyed by module path without the `mobilenet_v2.` prefix."""
    acts: dict[str, np.ndarray] = {}
    handles = []
    for name, module in hf_model.named_modules():
        short = name.removeprefix("mobilenet_v2.").removeprefix("mobilenet_v2")

        def hook(_module, _inputs, output, short=short):
            if isinstance(output, torch.Tensor):
                acts[short] = output.detach().numpy().copy()

        handles.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            out = hf_model(torch.from_numpy(pixel_values), **forward_kwargs)
    finally:
        for h in handles:
            h.remove()
    return acts, out


class Collect:
    """A minimal recorder: keeps every step's output, NCHW, in execution order."""

    def __init__(self) -> None:
        self.outputs: dict[str, np.ndarray] = {}

    def keeps(self, name):
        return True  # every tensor is kept, so no step may be overwritten in place

    def add(self, name, kind, output, **info):
        self.outputs[name] = npmnv2.ops.nhwc_to_nchw(output)
        return output

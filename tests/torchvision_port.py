"""A torchvision-style MobileNetV2 written for the tests (torchvision's own wheel does not load beside
the CPU torch here), with switches that plant the porting bugs of npmnv2's catalogue.

`Port(bugs=...)` builds torchvision's layout: `features` (Conv2dNormActivation stem, 17
InvertedResidual blocks, a final 1x1 conv), then adaptive average pooling, dropout and a Linear
classifier. Symmetric padding, eps 1e-5, 1000 classes, as torchvision. A bug is a key of `bugs`:
    "eps": float                      every batch norm's eps
    "padding": "tf_same"              TF SAME padding at the stride-2 convs (not torchvision's)
    "relu": int                       block index whose ReLU6 becomes ReLU
    "no_activation": int              block index whose depthwise conv has no activation
    "activation_on_projection": int   block index with a ReLU6 after its projection
    "no_residual": int                block index that drops its skip connection
    "transposed": int / "flipped": int   block index whose depthwise conv uses its kernel transposed / flipped
    "stride_on_expand": int           block index with its stride on the expansion instead of the depthwise conv
    "dilation": (int, int)            (block index, dilation) of a depthwise conv
    "bgr": True / "unit_range": True  the input pipeline: channels reversed / pixels mapped to [0, 1]
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

SETTINGS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]


class Conv(nn.Module):
    """conv -> batch norm -> activation, with the port's padding and kernel handling."""

    def __init__(self, c_in, c_out, k, stride=1, groups=1, act=nn.ReLU6, eps=1e-5, padding="symmetric",
                 kernel_op=None, dilation=1):  # fmt: skip
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, k, stride, 0, dilation=dilation, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(c_out, eps=eps)
        self.act = act() if act is not None else None
        self.k, self.stride, self.dilation, self.padding, self.kernel_op = k, stride, dilation, padding, kernel_op

    def forward(self, x):
        k_eff = self.dilation * (self.k - 1) + 1
        if self.padding == "tf_same" and self.stride > 1:
            h = x.shape[-1]
            total = max((-(-h // self.stride) - 1) * self.stride + k_eff - h, 0)
            x = F.pad(x, (total // 2, total - total // 2, total // 2, total - total // 2))
        else:
            p = (k_eff - 1) // 2
            x = F.pad(x, (p, p, p, p))
        w = self.conv.weight
        if self.kernel_op == "transposed":
            w = w.transpose(2, 3)
        elif self.kernel_op == "flipped":
            w = w.flip(2, 3)
        y = F.conv2d(x, w, None, self.conv.stride, 0, self.conv.dilation, self.conv.groups)
        y = self.bn(y)
        return self.act(y) if self.act is not None else y


class InvertedResidual(nn.Module):
    def __init__(self, c_in, c_out, stride, t, index, bugs):
        super().__init__()
        eps, padding = bugs.get("eps", 1e-5), bugs.get("padding", "symmetric")
        hidden = c_in * t
        act = nn.ReLU if bugs.get("relu") == index else nn.ReLU6
        stride_expand = stride if bugs.get("stride_on_expand") == index and t != 1 else 1
        stride_dw = 1 if stride_expand > 1 else stride
        kernel_op = (
            "transposed" if bugs.get("transposed") == index else ("flipped" if bugs.get("flipped") == index else None)
        )
        dilation = bugs["dilation"][1] if bugs.get("dilation", (None,))[0] == index else 1
        layers = []
        if t != 1:
            layers.append(Conv(c_in, hidden, 1, stride_expand, act=act, eps=eps, padding=padding))
        layers.append(Conv(hidden, hidden, 3, stride_dw, groups=hidden, eps=eps, padding=padding,
                           act=None if bugs.get("no_activation") == index else act, kernel_op=kernel_op,
                           dilation=dilation))  # fmt: skip
        project_act = nn.ReLU6 if bugs.get("activation_on_projection") == index else None
        layers.append(Conv(hidden, c_out, 1, act=project_act, eps=eps, padding=padding))
        self.conv = nn.Sequential(*layers)
        self.use_res = stride == 1 and c_in == c_out and bugs.get("no_residual") != index

    def forward(self, x):
        return x + self.conv(x) if self.use_res else self.conv(x)


class Port(nn.Module):
    def __init__(self, num_classes=1000, bugs=None):
        super().__init__()
        bugs = bugs or {}
        self.bugs = bugs
        eps, padding = bugs.get("eps", 1e-5), bugs.get("padding", "symmetric")
        features = [Conv(3, 32, 3, 2, eps=eps, padding=padding)]
        c_in, index = 32, 0
        for t, c, n, s in SETTINGS:
            for i in range(n):
                features.append(InvertedResidual(c_in, c, s if i == 0 else 1, t, index, bugs))
                c_in, index = c, index + 1
        features.append(Conv(c_in, 1280, 1, eps=eps, padding=padding))
        self.features = nn.Sequential(*features)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))

    def forward(self, x):
        if self.bugs.get("bgr"):
            x = x.flip(1)
        if self.bugs.get("unit_range"):
            x = (x + 1) / 2
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


def randomize(port: nn.Module, seed: int = 0) -> nn.Module:
    """He-scale kernels and batch-norm statistics measured on a smooth random image (the same
    recipe as npmnv2.verify.random_weights), so every layer's activations are of order 1."""
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for module in port.modules():
            if isinstance(module, nn.Conv2d):
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
            elif isinstance(module, nn.Linear):
                module.weight.copy_(torch.randn(module.weight.shape, generator=g) * (2.0 / module.in_features) ** 0.5)
                module.bias.copy_(torch.randn(module.bias.shape, generator=g) * 0.1)
        image = torch.from_numpy(rng.uniform(-1, 1, (1, 3, 8, 8))).float()
        image = F.interpolate(image, size=(224, 224), mode="bilinear", align_corners=False)
        bns = [m for m in port.modules() if isinstance(m, nn.BatchNorm2d)]
        hooks = []
        for bn in bns:

            def pre(module, inputs):
                x = inputs[0]
                module.running_mean.copy_(x.mean(dim=(0, 2, 3)))
                module.running_var.copy_(x.var(dim=(0, 2, 3), unbiased=False) + 1e-2)
                module.weight.copy_(torch.rand(x.shape[1], generator=g) + 0.5)
                module.bias.copy_(torch.rand(x.shape[1], generator=g) - 0.5)

            hooks.append(bn.register_forward_pre_hook(pre))
        port.eval()(image)
        for hook in hooks:
            hook.remove()
    return port

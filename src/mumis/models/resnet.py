"""ResNet-18, CIFAR style: 3x3 stem with stride 1, no max-pool (He et al. 2016; the variant
used by SalUn, SSD and the MU-Mis paper on 32x32 images). Written here because torchvision does
not import beside the pinned CPU torch. Activations are functional and never in place, so
double backward through input gradients works.

`norm` chooses the normalisation layer: `batch` (the standard ResNet), `group` (GroupNorm, 8
groups or fewer when a layer is narrower), `layer` (GroupNorm with one group: LayerNorm over
channels and positions) or `none`. Only `batch` keeps running statistics, so only it behaves
differently in train and eval mode.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..exceptions import ModelError
from .layers import Normalize

NormName = Literal["batch", "group", "layer", "none"]
NORMS = ("batch", "group", "layer", "none")


def norm_layer(norm: str) -> Callable[[int], nn.Module]:
    """channels -> the normalisation module of `norm` (see the module docstring)."""
    if norm == "batch":
        return nn.BatchNorm2d
    if norm == "group":
        return lambda c: nn.GroupNorm(math.gcd(8, c), c)
    if norm == "layer":
        return lambda c: nn.GroupNorm(1, c)
    if norm == "none":
        return lambda c: nn.Identity()
    raise ModelError(f"resnet18 norm must be one of {', '.join(NORMS)}, got {norm!r}")


class BasicBlock(nn.Module):
    """Two 3x3 conv-norm layers with an identity (or 1x1 conv) shortcut."""

    def __init__(self, cin: int, cout: int, stride: int, norm: Callable[[int], nn.Module] = nn.BatchNorm2d) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = norm(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=1, padding=1, bias=False)
        self.bn2 = norm(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), norm(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))  # out-of-place add: `out += x` breaks autograd


class ResNet18(nn.Module):
    """ResNet-18 for small images (1 or 3 channels, any size >= 8x8).

    Args:
        input_shape: (C, H, W) of one sample.
        num_classes: number of logits K.
        mean, std: per-channel normalisation of the [0, 1] inputs.
        width: channels of the first stage (64 in the paper; 16-32 for quick CPU runs).
        norm: normalisation layers, `batch` (default), `group`, `layer` or `none`.
    """

    def __init__(
        self,
        *,
        input_shape: Sequence[int],
        num_classes: int,
        mean: Sequence[float],
        std: Sequence[float],
        width: int = 64,
        norm: NormName = "batch",
    ) -> None:
        super().__init__()
        if len(input_shape) != 3:
            raise ModelError(f"resnet18 needs image inputs (C, H, W), got input shape {tuple(input_shape)}")
        if int(width) < 1:
            raise ModelError(f"resnet18 width must be a positive integer, got {width}")
        make_norm = norm_layer(str(norm))
        c = int(input_shape[0])
        w = int(width)
        self.normalize = Normalize(mean, std, ndim=3)
        self.conv1 = nn.Conv2d(c, w, 3, stride=1, padding=1, bias=False)
        self.bn1 = make_norm(w)
        stages = []
        cin = w
        for i, cout in enumerate((w, 2 * w, 4 * w, 8 * w)):
            stride = 1 if i == 0 else 2
            stages.append(nn.Sequential(BasicBlock(cin, cout, stride, make_norm), BasicBlock(cout, cout, 1, make_norm)))
            cin = cout
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8 * w, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(self.normalize(x))))  # (N, w, H, W)
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))  # (N, 8w, H/8, W/8)
        return self.fc(torch.flatten(self.pool(out), 1))  # (N, K)

"""RL: fine-tune on the forget set relabelled with random wrong labels.

Paper: A. Golatkar, A. Achille, S. Soatto, "Eternal Sunshine of the Spotless Net: Selective
Forgetting in Deep Networks", CVPR 2020 (arXiv 1911.04933); as implemented in the SalUn code
(Fan et al., ICLR 2024, https://github.com/OPTML-Group/Unlearn-Saliency, `unlearn/RL.py`):
cross-entropy towards random labels drawn once per run, SGD with momentum 0.9 and weight decay
5e-4, in train mode. Differences: the SalUn code draws labels uniformly (a sample may keep its
own label); we draw a wrong label for every sample, (y + U{1..K-1}) mod K.

Two registered variants (data needs are declared per class):
- `random_label`: the relabelled forget set only (remaining-data-free).
- `random_label_retain`: the relabelled forget set and the retain set, shuffled together into
  one training set (the SalUn code's RL).

Defaults: the SalUn code's RL (`--unlearn_lr 0.013 --unlearn_epochs 10`, momentum 0.9, weight
decay 5e-4) for `random_label_retain`, batch_size 64 instead of 256 (digits-size data). The
forget-only variant, which has no retain data to repair the damage, uses 5 epochs of batch 32 at
lr 3e-4, chosen on digits class-wise forgetting (MLP; classes 3 and 5): forget accuracy reaches
0 at any lr from 3e-4 to 0.01, while the retain accuracy falls to ~66 % at 0.01, ~82-91 % at
1e-3 and ~89-91 % at 3e-4.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..config import setting
from ._loop import Batch, LossMethod
from .base import RunContext, register_method


def wrong_labels(y: torch.Tensor, num_classes: int, generator: torch.Generator) -> torch.Tensor:
    """A uniformly random label different from `y`, per sample (needs num_classes >= 2)."""
    shift = torch.randint(1, num_classes, y.shape, generator=generator).to(y.device)
    return (y + shift) % num_classes


@dataclass
class RandomLabelConfig:
    epochs: int = setting("passes over the training set (the relabelled forget set)", default=5, ge=1)
    lr: float = setting("learning rate (constant)", default=3e-4, gt=0)
    batch_size: int = setting("samples per step; 0 = full batch", default=32, ge=0, note="0 = full batch")
    momentum: float = setting("SGD momentum", default=0.9, ge=0, lt=1)
    weight_decay: float = setting("SGD weight decay", default=5e-4, ge=0)


@register_method
class RandomLabel(LossMethod):
    """Cross-entropy towards random wrong labels on the forget set."""

    name = "random_label"
    paper = "Golatkar et al., CVPR 2020, arXiv 1911.04933 (SalUn code)"
    summary = "fine-tune on the forget set relabelled with random wrong labels; forget data only"
    Config = RandomLabelConfig
    batchnorm_mode = "train"
    batchnorm_note = "fine-tunes on relabelled data in train mode (SalUn code): running statistics updated"

    def prepare(self, model: nn.Module, ctx: RunContext) -> dict[str, Any]:
        fx, fy = ctx.forget
        self.x, self.y = fx, wrong_labels(fy, ctx.num_classes, ctx.generator)  # drawn once, as the SalUn code
        if self.requires_retain:
            assert ctx.retain is not None  # the front door enforces requires_retain
            self.x, self.y = torch.cat([self.x, ctx.retain[0]]), torch.cat([self.y, ctx.retain[1]])
        self.relabelled = int(len(fy))
        return {}

    def compute_loss(self, model: nn.Module, batch: Batch, ctx: RunContext) -> torch.Tensor:
        return F.cross_entropy(model(self.x[batch.idx]), self.y[batch.idx])

    def result_extra(self, model: nn.Module, stop_reason: str) -> dict[str, Any]:
        return {"relabelled": self.relabelled}


@dataclass
class RandomLabelRetainConfig(RandomLabelConfig):
    epochs: int = setting("passes over the training set (relabelled forget + retain)", default=10, ge=1)
    lr: float = setting("learning rate (constant)", default=0.013, gt=0)
    batch_size: int = setting("samples per step; 0 = full batch", default=64, ge=0, note="0 = full batch")


@register_method
class RandomLabelRetain(RandomLabel):
    """RL with the retain set mixed in (the SalUn code's RL)."""

    name = "random_label_retain"
    summary = "fine-tune on relabelled forget + retain, shuffled together"
    Config = RandomLabelRetainConfig
    requires_retain = True

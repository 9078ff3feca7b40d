"""RL: fine-tune on the forget set relabelled with random labels.

Paper: A. Golatkar, A. Achille, S. Soatto, "Eternal Sunshine of the Spotless Net: Selective
Forgetting in Deep Networks", CVPR 2020 (arXiv 1911.04933); as implemented in the SalUn code
(Fan et al., ICLR 2024, https://github.com/OPTML-Group/Unlearn-Saliency, `unlearn/RL.py`):
cross-entropy towards random labels, SGD with momentum 0.9 and weight decay 5e-4, in train mode.

Follows: `Classification/unlearn/RL.py`, its CIFAR-10 branch: each epoch a pass over the forget
set, each batch with labels drawn afresh uniformly over all K classes (`torch.randint`: a sample
may draw its own label), then a pass over the retain set with its true labels. (The CIFAR-100
branch interleaves the two; it is not followed.) `wrong_labels_only` (off) draws among the K-1
wrong classes instead.

Two registered variants (data needs are declared per class):
- `random_label`: the forget pass only (remaining-data-free; not in the SalUn code, which always
  has the retain pass).
- `random_label_retain`: the forget pass, then the retain pass (the SalUn code's RL).

Defaults: the SalUn code's RL (`--unlearn_lr 0.013 --unlearn_epochs 10`, momentum 0.9, weight
decay 5e-4) for `random_label_retain`; departure: batch_size 64 instead of 256 (digits-size
data). The forget-only variant, which has no retain data to repair the damage, uses 5 epochs of
batch 32 at lr 3e-4, chosen on digits class-wise forgetting (MLP; classes 3 and 5).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..config import setting
from ._loop import Batch, LossMethod, Pass
from .base import RunContext, register_method


def wrong_labels(y: torch.Tensor, num_classes: int, generator: torch.Generator) -> torch.Tensor:
    """A uniformly random label different from `y`, per sample (needs num_classes >= 2)."""
    shift = torch.randint(1, num_classes, y.shape, generator=generator).to(y.device)
    return (y + shift) % num_classes


def random_labels(y: torch.Tensor, num_classes: int, generator: torch.Generator,
                  wrong_only: bool = False) -> torch.Tensor:
    """One random label per sample: uniform over all K classes (the SalUn code's RL), or over the
    K-1 classes other than `y` (`wrong_only`)."""
    if wrong_only:
        return wrong_labels(y, num_classes, generator)
    return torch.randint(0, num_classes, y.shape, generator=generator).to(y.device)


@dataclass
class RandomLabelConfig:
    epochs: int = setting("epochs (each a pass over the forget set with fresh random labels)", default=5, ge=1)
    lr: float = setting("learning rate (constant)", default=3e-4, gt=0)
    batch_size: int = setting("samples per step; 0 = full batch", default=32, ge=0, note="0 = full batch")
    momentum: float = setting("SGD momentum", default=0.9, ge=0, lt=1)
    weight_decay: float = setting("SGD weight decay", default=5e-4, ge=0)
    wrong_labels_only: bool = setting(
        "draw random labels among the K-1 wrong classes instead of all K (the SalUn code)", default=False)


@register_method
class RandomLabel(LossMethod):
    """Cross-entropy towards random labels on the forget set, drawn per batch."""

    name = "random_label"
    paper = "Golatkar et al., CVPR 2020, arXiv 1911.04933 (SalUn code)"
    summary = "fine-tune on the forget set relabelled with random labels; forget data only"
    Config = RandomLabelConfig
    batchnorm_mode = "train"
    batchnorm_note = "fine-tunes on relabelled data in train mode (SalUn code): running statistics updated"

    def prepare(self, model: nn.Module, ctx: RunContext) -> dict[str, Any]:
        self.x, self.y = ctx.forget
        self.n_retain = len(ctx.retain[1]) if self.requires_retain and ctx.retain is not None else 0
        return {}

    def passes(self, epoch: int) -> list[Pass]:
        bs = self.config.batch_size
        walks = [Pass(len(self.y), bs, self.compute_loss, "forget")]
        if self.requires_retain:
            walks.append(Pass(self.n_retain, bs, self.retain_loss, "retain"))
        return walks

    def compute_loss(self, model: nn.Module, batch: Batch, ctx: RunContext) -> torch.Tensor:
        """CE of a forget batch towards labels drawn for this batch (for the global batch, so
        torchrun ranks draw as one process does)."""
        y = random_labels(self.y[batch.full], ctx.num_classes, ctx.generator, self.config.wrong_labels_only)
        return F.cross_entropy(model(self.x[batch.idx]), y[batch.part])

    def retain_loss(self, model: nn.Module, batch: Batch, ctx: RunContext) -> torch.Tensor:
        assert ctx.retain is not None  # the front door enforces requires_retain
        rx, ry = ctx.retain
        return F.cross_entropy(model(rx[batch.idx]), ry[batch.idx])

    def result_extra(self, model: nn.Module, stop_reason: str) -> dict[str, Any]:
        return {"relabelled": int(len(self.y))}


@dataclass
class RandomLabelRetainConfig(RandomLabelConfig):
    epochs: int = setting("epochs (each a forget pass with fresh random labels, then a retain pass)",
                          default=10, ge=1)
    lr: float = setting("learning rate (constant)", default=0.013, gt=0)
    batch_size: int = setting("samples per step; 0 = full batch", default=64, ge=0, note="0 = full batch")


@register_method
class RandomLabelRetain(RandomLabel):
    """RL with a retain pass after each forget pass (the SalUn code's RL, CIFAR-10 branch)."""

    name = "random_label_retain"
    summary = "fine-tune on the randomly relabelled forget set, then on the retain set, each epoch"
    Config = RandomLabelRetainConfig
    requires_retain = True

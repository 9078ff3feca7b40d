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

import torch
import torch.nn.functional as F
from torch import nn

from ._loops import check_ranges, epoch_loop, h, sgd, sgd_checks, train_mode
from .base import RunContext, RunOutput, UnlearningMethod, register_method


def wrong_labels(y: torch.Tensor, num_classes: int, generator: torch.Generator) -> torch.Tensor:
    """A uniformly random label different from `y`, per sample (needs num_classes >= 2)."""
    shift = torch.randint(1, num_classes, y.shape, generator=generator).to(y.device)
    return (y + shift) % num_classes


@dataclass
class RandomLabelConfig:
    epochs: int = h("passes over the training set (the relabelled forget set)", default=5)
    lr: float = h("learning rate (constant)", default=3e-4)
    batch_size: int = h("samples per step; 0 = full batch", default=32)
    momentum: float = h("SGD momentum", default=0.9)
    weight_decay: float = h("SGD weight decay", default=5e-4)

    def validate(self) -> None:
        check_ranges("random_label", sgd_checks(self))


@register_method
class RandomLabel(UnlearningMethod):
    """Cross-entropy towards random wrong labels on the forget set."""

    name = "random_label"
    paper = "Golatkar et al., CVPR 2020, arXiv 1911.04933 (SalUn code)"
    summary = "fine-tune on the forget set relabelled with random wrong labels; forget data only"
    Config = RandomLabelConfig
    batchnorm_mode = "train"
    batchnorm_note = "fine-tunes on relabelled data in train mode (SalUn code): running statistics updated"
    supports_distributed = True  # torchrun: epoch_loop splits each batch across ranks

    def run(self, model: nn.Module, ctx: RunContext) -> RunOutput:
        cfg = self.config
        fx, fy = ctx.forget
        x, y = fx, wrong_labels(fy, ctx.num_classes, ctx.generator)  # drawn once, as the SalUn code
        if self.requires_retain:
            assert ctx.retain is not None  # the front door enforces requires_retain
            x, y = torch.cat([x, ctx.retain[0]]), torch.cat([y, ctx.retain[1]])
        opt = sgd(model, cfg.lr, cfg.momentum, cfg.weight_decay)
        with train_mode(model):
            steps, reason, history = epoch_loop(
                ctx, opt, len(y), epochs=cfg.epochs, batch_size=cfg.batch_size,
                loss_fn=lambda idx, _: F.cross_entropy(model(x[idx]), y[idx]))
        return RunOutput(steps=steps, stop_reason=reason, history=history,
                         extra={"relabelled": int(len(fy))})


@dataclass
class RandomLabelRetainConfig(RandomLabelConfig):
    epochs: int = h("passes over the training set (relabelled forget + retain)", default=10)
    lr: float = h("learning rate (constant)", default=0.013)
    batch_size: int = h("samples per step; 0 = full batch", default=64)

    def validate(self) -> None:
        check_ranges("random_label_retain", sgd_checks(self))


@register_method
class RandomLabelRetain(RandomLabel):
    """RL with the retain set mixed in (the SalUn code's RL)."""

    name = "random_label_retain"
    summary = "fine-tune on relabelled forget + retain, shuffled together"
    Config = RandomLabelRetainConfig
    requires_retain = True

"""SalUn: saliency-based unlearning (weight saliency mask + random labelling).

Paper: C. Fan, J. Liu, Y. Zhang, E. Wong, D. Wei, S. Liu, "SalUn: Empowering Machine Unlearning
via Gradient-based Weight Saliency in Both Image Classification and Generation", ICLR 2024
(arXiv 2310.12508). Official code: https://github.com/OPTML-Group/Unlearn-Saliency
(`Classification/generate_mask.py`, `Classification/unlearn/RL.py`).

1. Saliency: g = |sum over forget batches of the gradient of -CE| (model in eval mode). The mask
   keeps the top `mask_ratio` of all weights by g, one threshold over all parameters together
   (the official `generate_mask.py` ranks the concatenation of every tensor).
2. Random-label fine-tuning (train mode), each epoch a pass over the forget set towards random
   labels, then a pass over the retain set with its true labels (`RL.py`, its CIFAR-10 branch;
   the interleaved forget/retain branch is the CIFAR-100 one); every gradient is multiplied by
   the mask, so only salient weights move. The random labels are drawn afresh for each forget
   batch, uniformly over all K classes (`torch.randint`, so a sample may keep its label).

Follows: OPTML-Group/Unlearn-Saliency, `Classification/generate_mask.py` and
`Classification/unlearn/RL.py`. Defaults: the official code's (mask ratio 0.5, SGD momentum 0.9,
weight decay 5e-4, batch 256, 10 epochs, lr 0.013 (CIFAR-10 value)). Weight decay is added to
the gradient before the mask, so unmasked weights do not move at all (the paper's description).
Issue 17 reports the official code fixed that way on 2026-02-28; the stored copy I could read
(`Classification/unlearn/impl.py` at 1ceff3f) still passes `weight_decay` to the SGD optimiser
while `RL.py` masks only the gradient, so there unmasked weights decay too. Otherwise no
departure. `wrong_labels_only` (off) draws among the K-1 wrong classes instead (y' != y).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..config import setting
from ..exceptions import ConfigError
from ._loop import Batch, LossMethod, Pass
from .base import RunContext, batches, register_method
from .random_label import random_labels


@dataclass
class SalUnConfig:
    mask_ratio: float = setting("fraction of all weights kept by the saliency mask (global threshold)", default=0.5,
                                gt=0, le=1)
    lr: float = setting("SGD learning rate (official CIFAR-10 value)", default=0.013, gt=0)
    momentum: float = setting("SGD momentum", default=0.9, ge=0, lt=1)
    weight_decay: float = setting("weight decay (applied to masked weights only)", default=5e-4, ge=0)
    epochs: int = setting("epochs; each a pass over forget (random labels), then one over retain", default=10, ge=1)
    batch_size: int = setting("samples per step, in the forget pass and in the retain pass", default=256, ge=1)
    mask_batch_size: int = setting("forget samples per batch when accumulating the saliency gradient", default=256,
                                   ge=1)
    wrong_labels_only: bool = setting(
        "draw random labels among the K-1 wrong classes (paper's y' != y) instead of all K (official code)",
        default=False)


def saliency_mask(model: nn.Module, x: torch.Tensor, y: torch.Tensor, ratio: float, batch_size: int,
                  generator: torch.Generator) -> dict[str, torch.Tensor]:
    """{parameter name: 0/1 mask}; 1 for the top `ratio` of all weights by |grad of -CE on forget|."""
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    grad = {n: torch.zeros_like(p) for n, p in params.items()}
    for idx in batches(len(y), batch_size, generator):
        idx = idx.to(x.device)
        loss = -F.cross_entropy(model(x[idx]), y[idx])
        for n, g in zip(params, torch.autograd.grad(loss, list(params.values()), allow_unused=True), strict=True):
            if g is not None:
                grad[n] += g
    flat = torch.cat([g.abs().flatten() for g in grad.values()])  # (total weights,)
    keep = int(flat.numel() * ratio)
    order = torch.argsort(-flat, stable=True)  # most salient first; ties in parameter order
    hard = torch.zeros_like(flat)
    hard[order[:keep]] = 1.0
    sizes = [t.numel() for t in grad.values()]
    return {n: m.view_as(grad[n]) for n, m in zip(grad, hard.split(sizes), strict=True)}


@register_method
class SalUn(LossMethod):
    """SalUn (Fan et al., ICLR 2024): random labelling restricted to salient weights."""

    name = "salun"
    paper = "Fan, Liu, Zhang, Wong, Wei, Liu, ICLR 2024, arXiv 2310.12508"
    summary = "random-label fine-tuning on forget + CE on retain, updating only the top-saliency weights"
    Config = SalUnConfig
    batchnorm_mode = "train"
    batchnorm_note = "saliency mask in eval mode, then random-label fine-tuning in train mode (SalUn code)"
    requires_retain = True

    def prepare(self, model: nn.Module, ctx: RunContext) -> dict[str, Any]:
        cfg = self.config
        if ctx.retain is None:  # the front door enforces requires_retain; guard direct calls
            raise ConfigError("salun needs retain data")
        fx, fy = ctx.forget
        self.mask = saliency_mask(model, fx, fy, cfg.mask_ratio, cfg.mask_batch_size, ctx.generator)
        self.named = [(n, p) for n, p in model.named_parameters() if n in self.mask]
        self.x, self.y, self.n_retain = fx, fy, len(ctx.retain[1])
        self.kept = sum(int(m.sum()) for m in self.mask.values())
        return {"mask_kept": self.kept}

    def parameters_to_update(self, model: nn.Module, ctx: RunContext) -> list[nn.Parameter]:
        return [p for _, p in self.named]

    def make_optimizer(self, params: list[nn.Parameter]) -> torch.optim.Optimizer:
        return torch.optim.SGD(params, lr=self.config.lr, momentum=self.config.momentum)  # decay: adjust_grads

    def passes(self, epoch: int) -> list[Pass]:
        bs = self.config.batch_size
        return [Pass(len(self.y), bs, self.compute_loss, "forget"), Pass(self.n_retain, bs, self.retain_loss, "retain")]

    def compute_loss(self, model: nn.Module, batch: Batch, ctx: RunContext) -> torch.Tensor:
        """CE of a forget batch towards labels drawn for this batch (RL.py, CIFAR-10 branch)."""
        y = random_labels(self.y[batch.full], ctx.num_classes, ctx.generator, self.config.wrong_labels_only)
        return F.cross_entropy(model(self.x[batch.idx]), y[batch.part])

    def retain_loss(self, model: nn.Module, batch: Batch, ctx: RunContext) -> torch.Tensor:
        assert ctx.retain is not None
        rx, ry = ctx.retain
        return F.cross_entropy(model(rx[batch.idx]), ry[batch.idx])

    @torch.no_grad()
    def adjust_grads(self, params: list[nn.Parameter]) -> None:
        for n, p in self.named:
            if p.grad is not None:
                # decay before masking: unmasked weights must not move at all
                p.grad.add_(p, alpha=self.config.weight_decay).mul_(self.mask[n])

    def result_extra(self, model: nn.Module, stop_reason: str) -> dict[str, Any]:
        return {"mask_kept": self.kept}

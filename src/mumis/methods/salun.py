"""SalUn: saliency-based unlearning (weight saliency mask + random labelling).

Paper: C. Fan, J. Liu, Y. Zhang, E. Wong, D. Wei, S. Liu, "SalUn: Empowering Machine Unlearning
via Gradient-based Weight Saliency in Both Image Classification and Generation", ICLR 2024
(arXiv 2310.12508). Official code: https://github.com/OPTML-Group/Unlearn-Saliency
(`Classification/generate_mask.py`, `Classification/unlearn/RL.py`).

1. Saliency: g = |sum over forget batches of the gradient of -CE| (model in eval mode). The mask
   keeps the top `mask_ratio` of all weights by g, one threshold over all parameters together
   (the official `generate_mask.py` ranks the concatenation of every tensor).
2. Random-label fine-tuning (train mode): each epoch the forget samples get fresh random
   labels and are shuffled together with the retain samples; SGD on the CE of that mixture,
   with every gradient multiplied by the mask, so only salient weights move.

Defaults: the official code's (mask ratio 0.5, SGD momentum 0.9, weight decay 5e-4, batch
256, 10 epochs, lr 0.013 (CIFAR-10 value), labels drawn uniformly over all K classes as
`np.random.randint` does); they work unchanged on the digits MLP (class:3: forget accuracy
100 -> 4.8 %, test_remaining 99.1 %). One deliberate difference: the official code lets SGD's
weight decay shrink unmasked weights too; here the decay is added to the gradient before the
mask, so unmasked weights stay exactly as they were (the paper's description).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..exceptions import ConfigError
from ._loops import nonfinite_stop
from .base import RunContext, RunOutput, UnlearningMethod, batches, register_method


def _h(text: str, **kw: Any) -> Any:
    return field(metadata={"help": text}, **kw)


@dataclass
class SalUnConfig:
    mask_ratio: float = _h("fraction of all weights kept by the saliency mask (global threshold)", default=0.5)
    lr: float = _h("SGD learning rate (official CIFAR-10 value)", default=0.013)
    momentum: float = _h("SGD momentum", default=0.9)
    weight_decay: float = _h("weight decay (applied to masked weights only)", default=5e-4)
    epochs: int = _h("passes over forget (random labels) + retain", default=10)
    batch_size: int = _h("samples per step, drawn from the shuffled forget + retain mixture", default=256)
    mask_batch_size: int = _h("forget samples per batch when accumulating the saliency gradient", default=256)
    wrong_labels_only: bool = _h(
        "draw random labels among the K-1 wrong classes (paper's y' != y) instead of all K (official code)",
        default=False)

    def validate(self) -> None:
        checks = [
            (0 < self.mask_ratio <= 1, "mask_ratio must be in (0, 1]"),
            (self.lr > 0, "lr must be > 0"),
            (0 <= self.momentum < 1, "momentum must be in [0, 1)"),
            (self.weight_decay >= 0, "weight_decay must be >= 0"),
            (self.epochs >= 1, "epochs must be >= 1"),
            (self.batch_size >= 1 and self.mask_batch_size >= 1, "batch sizes must be >= 1"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ConfigError(f"salun: {msg}")


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


class SalUn(UnlearningMethod):
    """SalUn (Fan et al., ICLR 2024): random labelling restricted to salient weights."""

    name = "salun"
    paper = "Fan, Liu, Zhang, Wong, Wei, Liu, ICLR 2024, arXiv 2310.12508"
    summary = "random-label fine-tuning on forget + CE on retain, updating only the top-saliency weights"
    Config = SalUnConfig
    batchnorm_mode = "train"
    batchnorm_note = "saliency mask in eval mode, then random-label fine-tuning in train mode (SalUn code)"
    requires_retain = True

    def run(self, model: nn.Module, ctx: RunContext) -> RunOutput:
        cfg, g, k = self.config, ctx.generator, ctx.num_classes
        if ctx.retain is None:  # the front door enforces requires_retain; guard direct calls
            raise ConfigError("salun needs retain data")
        (fx, fy), (rx, ry) = ctx.forget, ctx.retain
        mask = saliency_mask(model, fx, fy, cfg.mask_ratio, cfg.mask_batch_size, g)
        named = [(n, p) for n, p in model.named_parameters() if n in mask]
        opt = torch.optim.SGD([p for _, p in named], lr=cfg.lr, momentum=cfg.momentum)
        x_all = torch.cat([fx, rx])
        kept = sum(int(m.sum()) for m in mask.values())
        history: list[dict[str, Any]] = [{"step": 0, "mask_kept": kept}]
        step = 0
        model.train()
        for epoch in range(1, cfg.epochs + 1):
            # fresh random labels for the forget part each epoch (official: a new RL dataset per epoch)
            if cfg.wrong_labels_only:
                shift = torch.randint(1, k, fy.shape, generator=g).to(fy.device)
                rand = (fy + shift) % k
            else:
                rand = torch.randint(0, k, fy.shape, generator=g).to(fy.device)
            y_all = torch.cat([rand, ry])
            total = 0.0
            parts = batches(len(y_all), cfg.batch_size, g)
            for idx in parts:
                idx = idx.to(x_all.device)
                loss = F.cross_entropy(model(x_all[idx]), y_all[idx])
                stop = nonfinite_stop(float(loss.detach()), step, epoch)
                if stop is not None:
                    model.eval()
                    return RunOutput(steps=step, stop_reason=stop, history=history, extra={"mask_kept": kept})
                opt.zero_grad(set_to_none=True)
                loss.backward()
                with torch.no_grad():
                    for n, p in named:
                        if p.grad is not None:
                            # decay before masking: unmasked weights must not move at all
                            p.grad.add_(p, alpha=cfg.weight_decay).mul_(mask[n])
                opt.step()
                step, total = step + 1, total + float(loss.detach())
            row = {"step": step, "epoch": epoch, "loss": total / len(parts)}
            ctx.record(history, row)
        model.eval()
        return RunOutput(steps=step, stop_reason=f"epochs ({cfg.epochs}) done", history=history,
                         extra={"mask_kept": kept})


register_method(SalUn)

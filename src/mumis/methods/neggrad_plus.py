"""NG+ (NegGrad+): descend on the retain loss while ascending on the forget loss.

Paper: M. Kurmanji, P. Triantafillou, J. Hayes, E. Triantafillou, "Towards Unbounded Machine
Unlearning", NeurIPS 2023 (arXiv 2302.09880; the SCRUB paper, which introduces NegGrad+):
    loss = alpha * CE(retain batch) - (1 - alpha) * CE(forget batch),
one retain batch and one forget batch per step, an epoch being a pass over the retain set (the
forget batches cycle), SGD in train mode.

Defaults: SGD with momentum 0.9 and weight decay 5e-4 (as the SalUn-code baselines), lr 0.01,
5 epochs and alpha 0.99, chosen on digits class-wise forgetting (class 3, MLP): alpha 0.95 wrecks
the model (retain accuracy ~11 %), 0.999 barely forgets (the SCRUB paper tunes alpha and lr per
setting and gives no single default).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ._loops import check_ranges, epoch_loop, h, sgd, sgd_checks, train_mode
from .base import RunContext, RunOutput, UnlearningMethod, batches, register_method


@dataclass
class NegGradPlusConfig:
    alpha: float = h("weight of the retain loss; 1 - alpha weighs the (negated) forget loss", default=0.99)
    epochs: int = h("passes over the retain set", default=5)
    lr: float = h("learning rate (constant)", default=0.01)
    batch_size: int = h("samples per step from each set; 0 = full batch", default=64)
    momentum: float = h("SGD momentum", default=0.9)
    weight_decay: float = h("SGD weight decay", default=5e-4)

    def validate(self) -> None:
        check_ranges("neggrad_plus", [(0 <= self.alpha <= 1, "alpha must be in [0, 1]"), *sgd_checks(self)])


@register_method
class NegGradPlus(UnlearningMethod):
    """alpha * CE(retain) - (1 - alpha) * CE(forget), one batch of each per step."""

    name = "neggrad_plus"
    paper = "Kurmanji et al., NeurIPS 2023, arXiv 2302.09880 (SCRUB paper)"
    summary = "descend on retain cross-entropy, ascend on forget cross-entropy (weighted by alpha)"
    Config = NegGradPlusConfig
    batchnorm_mode = "train"
    batchnorm_note = "forget + retain steps in train mode (SCRUB code): running statistics updated on both"
    supports_distributed = True  # torchrun: epoch_loop splits each batch across ranks
    requires_retain = True

    def run(self, model: nn.Module, ctx: RunContext) -> RunOutput:
        cfg = self.config
        assert ctx.retain is not None  # the front door enforces requires_retain
        (fx, fy), (rx, ry) = ctx.forget, ctx.retain

        def forget_batches() -> Iterator[torch.Tensor]:
            while True:  # the forget set is smaller: cycle through fresh seeded permutations
                yield from batches(len(fy), cfg.batch_size, ctx.generator)

        fb = forget_batches()

        def loss_fn(idx: torch.Tensor, _: int) -> torch.Tensor:
            f = next(fb).to(ctx.device)
            retain_loss = F.cross_entropy(model(rx[idx]), ry[idx])
            forget_loss = F.cross_entropy(model(fx[f]), fy[f])
            return cfg.alpha * retain_loss - (1 - cfg.alpha) * forget_loss

        opt = sgd(model, cfg.lr, cfg.momentum, cfg.weight_decay)
        with train_mode(model):
            steps, reason, history = epoch_loop(ctx, opt, len(ry), epochs=cfg.epochs,
                                                batch_size=cfg.batch_size, loss_fn=loss_fn)
        return RunOutput(steps=steps, stop_reason=reason, history=history)

"""FT: fine-tune on the retained data only, relying on catastrophic forgetting.

Paper: A. Warnecke, L. Pirch, C. Wressnegger, K. Rieck, "Machine Unlearning of Features and
Labels", NDSS 2023 (arXiv 2108.11577); as implemented in the SalUn code (Fan et al., ICLR 2024,
https://github.com/OPTML-Group/Unlearn-Saliency, `unlearn/FT.py`): cross-entropy on retain,
SGD with momentum 0.9 and weight decay 5e-4, in train mode.

Defaults: the SalUn code's (`--unlearn FT --unlearn_lr 0.01 --unlearn_epochs 10`, momentum
0.9, weight decay 5e-4), except batch_size 64 instead of 256 (our digits sets have ~1.6k
samples; 64 is the quick recipe's batch size there).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import nn

from ._loops import check_ranges, epoch_loop, h, sgd, sgd_checks, train_mode
from .base import RunContext, RunOutput, UnlearningMethod, register_method


@dataclass
class FinetuneConfig:
    epochs: int = h("passes over the retain set", default=10)
    lr: float = h("learning rate (constant)", default=0.01)
    batch_size: int = h("retain samples per step; 0 = full batch", default=64)
    momentum: float = h("SGD momentum", default=0.9)
    weight_decay: float = h("SGD weight decay", default=5e-4)

    def validate(self) -> None:
        check_ranges("finetune", sgd_checks(self))


@register_method
class Finetune(UnlearningMethod):
    """Fine-tune on retain with cross-entropy (the forget set is never seen)."""

    name = "finetune"
    paper = "Warnecke et al., NDSS 2023, arXiv 2108.11577 (SalUn code)"
    summary = "fine-tune on the retain set with cross-entropy; catastrophic forgetting does the rest"
    Config = FinetuneConfig
    batchnorm_mode = "train"
    batchnorm_note = "fine-tunes on the retain set in train mode (SalUn code): running statistics follow the retain batches"
    supports_distributed = True  # torchrun: epoch_loop splits each batch across ranks
    requires_retain = True

    def run(self, model: nn.Module, ctx: RunContext) -> RunOutput:
        cfg = self.config
        assert ctx.retain is not None  # the front door enforces requires_retain
        x, y = ctx.retain
        opt = sgd(model, cfg.lr, cfg.momentum, cfg.weight_decay)
        with train_mode(model):
            steps, reason, history = epoch_loop(
                ctx, opt, len(y), epochs=cfg.epochs, batch_size=cfg.batch_size,
                loss_fn=lambda idx, _: F.cross_entropy(model(x[idx]), y[idx]))
        return RunOutput(steps=steps, stop_reason=reason, history=history)

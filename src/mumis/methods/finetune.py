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

import torch
import torch.nn.functional as F
from torch import nn

from ..config import setting
from ._loop import Batch, LossMethod
from .base import RunContext, register_method


@dataclass
class FinetuneConfig:
    epochs: int = setting("passes over the retain set", default=10, ge=1)
    lr: float = setting("learning rate (constant)", default=0.01, gt=0)
    batch_size: int = setting("retain samples per step; 0 = full batch", default=64, ge=0, note="0 = full batch")
    momentum: float = setting("SGD momentum", default=0.9, ge=0, lt=1)
    weight_decay: float = setting("SGD weight decay", default=5e-4, ge=0)


@register_method
class Finetune(LossMethod):
    """Fine-tune on retain with cross-entropy (the forget set is never seen)."""

    name = "finetune"
    paper = "Warnecke et al., NDSS 2023, arXiv 2108.11577 (SalUn code)"
    summary = "fine-tune on the retain set with cross-entropy; catastrophic forgetting does the rest"
    Config = FinetuneConfig
    batchnorm_mode = "train"
    batchnorm_note = "fine-tunes on the retain set in train mode (SalUn code): running statistics follow the retain batches"
    requires_retain = True
    walks = "retain"

    def compute_loss(self, model: nn.Module, batch: Batch, ctx: RunContext) -> torch.Tensor:
        return F.cross_entropy(model(self.x[batch.idx]), self.y[batch.idx])

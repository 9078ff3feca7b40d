"""GA (NG): gradient ascent on the forget loss, with the forget data only.

Paper: A. Thudi, G. Deza, V. Chandrasekaran, N. Papernot, "Unrolling SGD: Understanding Factors
Influencing Machine Unlearning", IEEE EuroS&P 2022 (arXiv 2109.13398); as implemented in the
SalUn code (Fan et al., ICLR 2024, https://github.com/OPTML-Group/Unlearn-Saliency,
`unlearn/GA.py`): loss = -CE on forget batches, SGD with momentum 0.9 and weight decay 5e-4, in
train mode.

Defaults: the SalUn code's optimiser (momentum 0.9, weight decay 5e-4) and 5 epochs; lr 1e-3
instead of its 1e-4 and batch_size 32 instead of 256, adapted to our small models: a digits
class has ~145 samples, so 5 epochs of 256 are 5 steps, and at lr 1e-4 the forget accuracy
does not move. The loss is unbounded: lr and epochs are the only brake, and the result sits on a
cliff (digits MLP, class forgetting: at lr 5e-4 forget accuracy stays ~90 %, at 1e-3 it reaches
0 with test-remaining accuracy 97 % on class 3 but 73 % on class 5, seed 1).
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
class GradAscentConfig:
    epochs: int = setting("passes over the forget set", default=5, ge=1)
    lr: float = setting("learning rate (constant)", default=1e-3, gt=0)
    batch_size: int = setting("forget samples per step; 0 = full batch", default=32, ge=0, note="0 = full batch")
    momentum: float = setting("SGD momentum", default=0.9, ge=0, lt=1)
    weight_decay: float = setting("SGD weight decay", default=5e-4, ge=0)


@register_method
class GradAscent(LossMethod):
    """Maximise the cross-entropy on the forget set."""

    name = "grad_ascent"
    paper = "Thudi et al., EuroS&P 2022, arXiv 2109.13398 (SalUn code)"
    summary = "gradient ascent on the forget cross-entropy; forget data only"
    Config = GradAscentConfig
    batchnorm_mode = "train"
    batchnorm_note = "ascends on the forget set in train mode (SalUn code): running statistics drift towards the forget batches"

    def compute_loss(self, model: nn.Module, batch: Batch, ctx: RunContext) -> torch.Tensor:
        return -F.cross_entropy(model(self.x[batch.idx]), self.y[batch.idx])

"""SCRUB: teacher-student unlearning with alternating max and min steps.

Paper: M. Kurmanji, P. Triantafillou, J. Hayes, E. Triantafillou, "Towards Unbounded Machine
Unlearning", NeurIPS 2023 (arXiv 2302.09880). Official code: https://github.com/meghdadk/SCRUB
(`large_scale_unlearning.ipynb`, `repdistiller/loops.py::train_distill`).

Teacher = frozen copy of the model given (the current model: on a chain of deletion requests,
the previous request's result, not the chain's original; the result's extra says
`state_from: "current model"`); the student starts as that model too. Each epoch:
- max-steps (only in the first `max_epochs` epochs): one pass over the forget set, maximising
  KL(teacher || student) (the student moves away from the teacher on the forget data);
- min-steps: one pass over the retain set, minimising gamma * CE + alpha * KL(teacher || student)
  (the student stays close to the teacher, and correct, on the retain data).
KL at temperature T, scaled by T^2, summed over classes, mean over the batch (official DistillKL).
Student in train mode, teacher in eval mode, as in the official loops.

Follows: meghdadk/SCRUB, `large_scale_unlearning.ipynb` (settings, loaders) and
`repdistiller/loops.py::train_distill` (the loop). Defaults: the notebook's large-scale settings
(lr 5e-4, gamma 0.99, alpha 0.001, T 4, SGD momentum 0.9, weight decay 5e-4, 3 epochs of which
2 max-epochs, lr decay x0.1 after epochs 3, 5, 9) and its loaders: forget batches of 512, retain
batches of 256 (the notebook also sets 32 / 128, but those variables are never used to build
the loaders). Departures: none in the loss and loop (checked side by side in issue 17). On our
small digits models the official lr barely moves the student; the digits-adapted preset `configs/methods/adapted/scrub.yaml` (lr 0.03, 5
epochs, official loaders) forgets class:3 at about the retrained model's accuracies.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..config import setting
from ..exceptions import ConfigError
from ._loop import Batch, LoopState, LossMethod, Pass
from .base import RunContext, register_method

#: Where the run's per-request state comes from (result extra `state_from`; see the class).
STATE_FROM = "current model"


@dataclass
class SCRUBConfig:
    lr: float = setting("SGD learning rate (official large-scale: 5e-4)", default=5e-4, gt=0)
    momentum: float = setting("SGD momentum", default=0.9, ge=0, lt=1)
    weight_decay: float = setting("SGD weight decay", default=5e-4, ge=0)
    epochs: int = setting("epochs; each is a max pass on forget (first max_epochs only) then a min pass on retain",
                          default=3, ge=1)
    max_epochs: int = setting("number of leading epochs that include a max pass ('msteps' in the official code)",
                              default=2, ge=0)
    batch_size: int = setting("retain samples per min-step (official loader: 256)", default=256, ge=1)
    forget_batch_size: int = setting("forget samples per max-step (official loader: 512)", default=512, ge=1)
    temperature: float = setting("distillation temperature T ('kd_T')", default=4.0, gt=0)
    gamma: float = setting("weight of the retain cross-entropy in the min-steps", default=0.99, ge=0)
    alpha: float = setting("weight of the retain KL(teacher || student) in the min-steps", default=0.001, ge=0)
    lr_decay_epochs: tuple[int, ...] = setting("epochs after which the lr is multiplied by lr_decay_rate",
                                               default=(3, 5, 9))
    lr_decay_rate: float = setting("lr multiplier at each lr_decay_epochs entry", default=0.1, gt=0, le=1)


def distill_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, t: float) -> torch.Tensor:
    """KL(teacher_T || student_T) * T^2, summed over classes, mean over the batch (official DistillKL)."""
    log_p_s = F.log_softmax(student_logits / t, dim=1)  # (B, K)
    p_t = F.softmax(teacher_logits / t, dim=1)  # (B, K)
    return F.kl_div(log_p_s, p_t, reduction="sum") * t**2 / student_logits.shape[0]


@register_method
class SCRUB(LossMethod):
    """SCRUB (Kurmanji et al., NeurIPS 2023): two passes per epoch (`passes`), max then min."""

    name = "scrub"
    paper = "Kurmanji, Triantafillou, Hayes, Triantafillou, NeurIPS 2023, arXiv 2302.09880"
    summary = "student moves away from the original (teacher) on forget, stays close to it on retain"
    Config = SCRUBConfig
    batchnorm_mode = "train"
    batchnorm_note = "student in train mode for the max and min steps, teacher in eval mode (SCRUB code)"
    requires_retain = True

    def prepare(self, model: nn.Module, ctx: RunContext) -> dict[str, Any]:
        if ctx.retain is None:  # the front door enforces requires_retain; guard direct calls
            raise ConfigError("scrub needs retain data")
        self.teacher = copy.deepcopy(model).eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.lr = self.config.lr
        self.forget_y, self.retain_y = ctx.forget[1], ctx.retain[1]
        return {}

    def result_extra(self, model: nn.Module, stop_reason: str) -> dict[str, Any]:
        return {"state_from": STATE_FROM}  # the teacher: the model this run started from

    def on_epoch_start(self, epoch: int, opt: torch.optim.Optimizer, ctx: RunContext) -> None:
        # official sgda_adjust_learning_rate: lr x rate^(number of decay epochs already passed)
        cfg = self.config
        self.lr = cfg.lr * cfg.lr_decay_rate ** sum(epoch + 1 > e for e in cfg.lr_decay_epochs)
        for group in opt.param_groups:
            group["lr"] = self.lr

    def passes(self, epoch: int) -> list[Pass]:
        """A max pass over forget (first max_epochs epochs only), then a min pass over retain."""
        cfg = self.config
        walks = [Pass(len(self.retain_y), cfg.batch_size, self.min_loss, "min")]
        if epoch < cfg.max_epochs:
            walks.insert(0, Pass(len(self.forget_y), cfg.forget_batch_size, self.max_loss, "max"))
        return walks

    def max_loss(self, model: nn.Module, batch: Batch, ctx: RunContext) -> torch.Tensor:
        x = ctx.forget[0][batch.idx]
        with torch.no_grad():
            t_logits = self.teacher(x)
        return -distill_kl(model(x), t_logits, self.config.temperature)  # ascend the KL

    def min_loss(self, model: nn.Module, batch: Batch, ctx: RunContext) -> torch.Tensor:
        cfg = self.config
        assert ctx.retain is not None
        x, y = ctx.retain[0][batch.idx], ctx.retain[1][batch.idx]
        with torch.no_grad():
            t_logits = self.teacher(x)
        logits = model(x)
        return cfg.gamma * F.cross_entropy(logits, y) + cfg.alpha * distill_kl(logits, t_logits, cfg.temperature)

    def epoch_row(self, model: nn.Module, state: LoopState) -> dict[str, Any] | None:
        ascent, descent = state.stats.get("max"), state.stats.get("min")
        return {"lr": self.lr, "forget_kl": -ascent.mean if ascent else 0.0,
                "retain_loss": descent.mean if descent else 0.0}

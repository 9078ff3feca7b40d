"""Bad Teacher: unlearning by distilling from a competent and an incompetent teacher.

Paper: V. S. Chundawat, A. K. Tarun, M. Mandal, M. Kankanhalli, "Can Bad Teaching Induce
Forgetting? Unlearning in Deep Networks Using an Incompetent Teacher", AAAI 2023
(arXiv 2205.08096). Official code: https://github.com/vikram2000b/bad-teaching-unlearning
(`unlearn.py`: `UnlearnerLoss`, `blindspot_unlearner`).

The student starts as the original model. Competent teacher = a frozen copy of the original;
incompetent teacher = a randomly initialised copy of the same architecture (frozen). On a
shuffled mixture of the forget set and a random `retain_fraction` of the retain set, the
student minimises KL(teacher_T || student_T) where the teacher is the incompetent one for
forget samples and the competent one for retain samples (official `UnlearnerLoss`).

Defaults: the official code's (Adam, KL temperature 1, batch 256, 30 % of the retain set),
adapted to our small digits models: lr 1e-3 and 5 epochs instead of lr 1e-4 and 1 epoch (the
digits mixture is about 3 batches, so the official budget makes 3 tiny Adam steps that leave
the forget accuracy unchanged). The KL is averaged over the batch ("batchmean") instead of
over batch x classes (the official `F.kl_div` default "mean"): a constant factor 1/K, which
Adam's scale invariance makes immaterial. The incompetent teacher is initialised by each
module's own `reset_parameters()`, under torch's RNG forked and seeded from the run's
generator (the caller's global RNG state is restored afterwards).
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
from ._loop import Batch, LossMethod
from .base import RunContext, register_method


@dataclass
class BadTeacherConfig:
    lr: float = setting("Adam learning rate (official 1e-4 for ResNet/CIFAR; adapted to digits)", default=1e-3, gt=0)
    epochs: int = setting("passes over the forget + retain-subset mixture (official 1; adapted to digits)", default=5,
                          ge=1)
    batch_size: int = setting("samples per step from the shuffled mixture", default=256, ge=1)
    temperature: float = setting("KL temperature of both teachers and the student", default=1.0, gt=0)
    retain_fraction: float = setting("fraction of the retain set, drawn at random once, used in the mixture",
                                     default=0.3, gt=0, le=1)


def random_copy(model: nn.Module, generator: torch.Generator) -> nn.Module:
    """A copy of `model` with every module re-initialised by its own `reset_parameters()`.

    Module initialisers draw from torch's global RNG; it is forked, seeded from `generator` and
    restored, so the copy is reproducible and the caller's RNG state is untouched.
    """
    fresh = copy.deepcopy(model)
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    devices = [p.device for p in fresh.parameters() if p.device.type == "cuda"][:1]
    with torch.random.fork_rng(devices=devices):
        # seed only the generators forked (and so restored) here, not every GPU's
        torch.default_generator.manual_seed(seed)
        for d in devices:
            with torch.cuda.device(d):
                torch.cuda.manual_seed(seed)
        for m in fresh.modules():
            reset = getattr(m, "reset_parameters", None)
            if callable(reset):
                reset()
    return fresh


def unlearner_loss(student: torch.Tensor, competent: torch.Tensor, incompetent: torch.Tensor,
                   is_forget: torch.Tensor, t: float) -> torch.Tensor:
    """KL(teacher_T || student_T), teacher = incompetent on forget rows, competent on the rest."""
    f = is_forget.float().unsqueeze(1)  # (B, 1)
    target = f * F.softmax(incompetent / t, dim=1) + (1 - f) * F.softmax(competent / t, dim=1)  # (B, K)
    return F.kl_div(F.log_softmax(student / t, dim=1), target, reduction="batchmean")


@register_method
class BadTeacher(LossMethod):
    """Bad Teacher (Chundawat et al., AAAI 2023)."""

    name = "bad_teacher"
    paper = "Chundawat, Tarun, Mandal, Kankanhalli, AAAI 2023, arXiv 2205.08096"
    summary = "student distils a random (incompetent) teacher on forget and the original on retain"
    Config = BadTeacherConfig
    batchnorm_mode = "train"
    batchnorm_note = "student in train mode, both teachers in eval mode (Bad Teacher code)"
    requires_retain = True

    def prepare(self, model: nn.Module, ctx: RunContext) -> dict[str, Any]:
        cfg, g = self.config, ctx.generator
        if ctx.retain is None:  # the front door enforces requires_retain; guard direct calls
            raise ConfigError("bad_teacher needs retain data")
        (fx, fy), (rx, ry) = ctx.forget, ctx.retain
        self.competent = copy.deepcopy(model).eval()
        self.incompetent = random_copy(model, g).eval()
        for p in (*self.competent.parameters(), *self.incompetent.parameters()):
            p.requires_grad_(False)
        self.n_keep = max(1, round(cfg.retain_fraction * len(ry)))
        keep = torch.randperm(len(ry), generator=g)[:self.n_keep].to(rx.device)
        self.x = torch.cat([fx, rx[keep]])
        is_forget = torch.cat([torch.ones(len(fy), dtype=torch.bool), torch.zeros(self.n_keep, dtype=torch.bool)])
        self.is_forget = is_forget.to(self.x.device)
        return {"retain_used": self.n_keep}

    def make_optimizer(self, params: list[nn.Parameter]) -> torch.optim.Optimizer:
        return torch.optim.Adam(params, lr=self.config.lr)

    def compute_loss(self, model: nn.Module, batch: Batch, ctx: RunContext) -> torch.Tensor:
        x = self.x[batch.idx]
        with torch.no_grad():
            comp, incomp = self.competent(x), self.incompetent(x)
        return unlearner_loss(model(x), comp, incomp, self.is_forget[batch.idx], self.config.temperature)

    def result_extra(self, model: nn.Module, stop_reason: str) -> dict[str, Any]:
        return {"retain_used": self.n_keep}

"""Retrain: the exact oracle, training a freshly initialised model on the retain set only.

Not an approximation but the gold standard every other method is measured against;
registered so it can be run and timed like the others. The model's
parameters are re-initialised (`reset_parameters()` of every sub-module, under a forked global
RNG seeded from the run's generator, so the caller's RNG is untouched) and trained with
`mumis.training.train_model`: SGD with momentum, weight decay and a cosine schedule.

Defaults: the `quick` recipe for digits (50 epochs, batch 64, lr 0.05, momentum 0.9, weight
decay 5e-4, cosine, 1-pixel random crops), the recipe the project's oracles are trained with;
set epochs / lr / augment to the recipe of the model being unlearned for other datasets.
Note: with the same seed the oracle of `mumis train --forget` is not bit-identical (that one
seeds initialisation from the training seed, this one from the unlearning seed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from ..config import setting
from ..training import TrainConfig, choose_threads, train_model
from .base import RunContext, RunOutput, UnlearningMethod, register_method


@dataclass
class RetrainConfig:
    epochs: int = setting("passes over the retain set", default=50, ge=1)
    lr: float = setting("peak learning rate (cosine schedule to 0)", default=0.05, gt=0)
    batch_size: int = setting("retain samples per step", default=64, ge=1)
    momentum: float = setting("SGD momentum", default=0.9, ge=0, lt=1)
    weight_decay: float = setting("SGD weight decay", default=5e-4, ge=0)
    schedule: Literal["cosine", "step", "constant"] = setting("learning-rate schedule: cosine, step or constant",
                                                              default="cosine")
    augment: bool = setting("random-crop augmentation (images only)", default=True)
    crop_padding: int = setting("zero padding of the random crop, in pixels", default=1, ge=0, le=16)


def reset_parameters(model: nn.Module, seed: int) -> int:
    """Re-initialise every sub-module that has `reset_parameters()`; the global RNG is restored.

    Returns:
        How many sub-modules were reset.
    """
    p = next(model.parameters(), None)
    devices = [p.device.index or 0] if p is not None and p.device.type == "cuda" else []
    count = 0
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for m in model.modules():
            reset = getattr(m, "reset_parameters", None)
            if callable(reset):
                reset()
                count += 1
    return count


@register_method
class Retrain(UnlearningMethod):
    """Re-initialise and train on the retain set (the exact, expensive oracle)."""

    name = "retrain"
    paper = "exact unlearning oracle (retrain from scratch on the remaining data)"
    summary = "re-initialise the model and train it on the retain set only"
    Config = RetrainConfig
    batchnorm_mode = "train"
    batchnorm_note = "re-initialises (running statistics reset) and trains from scratch in train mode"
    requires_retain = True

    def run(self, model: nn.Module, ctx: RunContext) -> RunOutput:
        cfg = self.config
        assert ctx.retain is not None  # the front door enforces requires_retain
        x, y = ctx.retain
        init_seed, train_seed = (int(s) for s in torch.randint(2**31 - 1, (2,), generator=ctx.generator))
        n_reset = reset_parameters(model, init_seed)
        if n_reset == 0:
            from ..exceptions import ModelError

            raise ModelError("retrain: no sub-module of the model has reset_parameters(); cannot re-initialise")
        tcfg = TrainConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, momentum=cfg.momentum,
                           weight_decay=cfg.weight_decay, schedule=cfg.schedule,
                           augment=cfg.augment, crop_padding=cfg.crop_padding)
        epochs = train_model(model, x, y, tcfg, seed=train_seed, device=ctx.device, progress=ctx.progress,
                             threads=choose_threads(model, x, cfg.batch_size, ctx.device))
        model.eval()
        n, bs = len(y), min(cfg.batch_size, len(y))
        per_epoch = n // bs + int(n % bs >= 2)  # train_model skips a last batch of 1
        history = [{"step": 0}] + [{"step": e["epoch"] * per_epoch, **e} for e in epochs]
        if ctx.log is not None:
            for row in history[1:]:
                ctx.log(row)
        return RunOutput(steps=cfg.epochs * per_epoch, stop_reason=f"epochs ({cfg.epochs}) done",
                         history=history, extra={"modules_reset": n_reset})

"""The learning-rate schedule of `train_model`: optional linear warm-up, then cosine, step or constant."""

from __future__ import annotations

import math

from .recipes import TrainConfig


def lr_at(cfg: TrainConfig, step: int, total_steps: int, steps_per_epoch: int) -> float:
    """Learning rate at optimiser step `step` (0-based) of `total_steps`."""
    warm = int(round(cfg.warmup_epochs * steps_per_epoch))
    if step < warm:
        return cfg.lr * (0.1 + 0.9 * step / warm)
    if cfg.schedule == "constant":
        return cfg.lr
    progress = (step - warm) / max(total_steps - warm, 1)
    if cfg.schedule == "cosine":
        return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * progress))
    return cfg.lr * cfg.gamma ** ((progress >= 0.5) + (progress >= 0.75))  # step

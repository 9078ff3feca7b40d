"""The recovery audits inside `evaluate`: BatchNorm re-estimation, a relearning attack, a feature probe.

The audits themselves are `mumis.metrics.recovery`; here they run on copies of the model and of
the reference with the same settings and data, and their accuracies get prefixed keys. See
docs/evaluation-audits.md.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..data.splits import Pair, Splits
from ..exceptions import DataError, ModelError
from ..metrics.accuracy import logits_accuracy
from ..metrics.recovery import (
    RecoveryConfig,
    audit_slices,
    batchnorm_layers,
    feature_probe,
    reestimate_batchnorm,
    relearn,
)
from ..utils import hash_arrays
from .compute import SplitLogits


@dataclass
class RecoverySpec:
    """The recovery audits of one evaluation: settings and the retain slices (or given images)."""

    cfg: RecoveryConfig
    seed: int
    bn_images: torch.Tensor  # (N, ...) unlabelled
    relearn_data: Pair
    bn_source: str
    key: str  # identity of the settings and data, to check a reused reference report

    @classmethod
    def make(cls, splits: Splits, cfg: RecoveryConfig, seed: int,
             images: torch.Tensor | None) -> RecoverySpec:
        rx, ry = splits.retain
        if len(ry) < 2:
            raise DataError(f"the recovery audits fine-tune on retain samples and need at least 2; "
                            f"this split has {len(ry)}: leave 'recovery' out of metrics")
        bn_idx, rl_idx = audit_slices(len(ry), cfg, seed)
        if images is None:
            bn_images, source = rx[bn_idx], f"a seeded slice of {len(bn_idx)} retain images"
        else:
            if not isinstance(images, torch.Tensor) or not images.dtype.is_floating_point:
                raise DataError("recovery_images must be a floating-point tensor of unlabelled "
                                f"inputs shaped like the data, got {type(images).__name__}")
            if tuple(images.shape[1:]) != tuple(rx.shape[1:]) or len(images) < 2:
                raise DataError(f"recovery_images must hold at least 2 inputs of shape "
                                f"{tuple(rx.shape[1:])}; got a tensor of shape {tuple(images.shape)}")
            bn_images, source = images, f"{len(images)} images given by the caller"
        key = hash_arrays(str(sorted(cfg.to_dict().items())), seed, bn_images, rl_idx)
        return cls(cfg, seed, bn_images, (rx[rl_idx], ry[rl_idx]), source, key)

    def describe(self) -> dict[str, Any]:
        c = self.cfg
        summary = (
            f"BatchNorm running statistics reset and re-estimated (cumulative average, BatchNorm "
            f"layers in train mode, no gradient, no weight change) on {self.bn_source}; relearning "
            f"attack: {c.relearn_steps} SGD steps (lr {c.relearn_lr:g}, momentum "
            f"{c.relearn_momentum:g}, batch {c.relearn_batch_size}, seed {self.seed}) of "
            f"cross-entropy fine-tuning on {len(self.relearn_data[1])} labelled retain samples, "
            "BatchNorm in train mode, dropout off; feature probe: a logistic regression on the "
            "classifier's input features, fitted on half the forget set and half that retain slice, "
            "scored on the other halves; the same for the model and the reference")
        return {"summary": summary, "settings": c.to_dict(), "seed": self.seed,
                "bn_data": self.bn_source, "relearn_samples": len(self.relearn_data[1]),
                "key": self.key}


def audited_accuracies(audited: nn.Module, splits: Splits, prefix: str,
                        batch_size: int) -> dict[str, float]:
    logits = SplitLogits(audited, splits, batch_size)
    names = ("forget", "test", "test_remaining", "test_forgotten")[:4 if splits.classwise else 2]
    return {f"{prefix}_{n}_acc": logits_accuracy(logits(n), getattr(splits, n)[1]) for n in names}


def run_audits(model: nn.Module, splits: Splits, spec: RecoverySpec,
              batch_size: int) -> tuple[dict[str, float], dict[str, Any]]:
    """The recovery audits of one model: accuracies after each, and notes (n/a, stops, time)."""

    c = spec.cfg
    n_bn = len(batchnorm_layers(model))
    notes: list[str] = []
    t0 = time.perf_counter()
    bn_model = reestimate_batchnorm(model, spec.bn_images, batch_size=c.bn_batch_size)
    if bn_model is None:
        names = ("forget", "test", "test_remaining", "test_forgotten")[:4 if splits.classwise else 2]
        values = {f"bn_reestimated_{n}_acc": math.nan for n in names}
        notes.append("no BatchNorm layer with running statistics: bn_reestimated_* are n/a")
    else:
        values = audited_accuracies(bn_model, splits, "bn_reestimated", batch_size)
        del bn_model
    t1 = time.perf_counter()
    x, y = spec.relearn_data
    out = relearn(model, x, y, steps=c.relearn_steps, lr=c.relearn_lr,
                  momentum=c.relearn_momentum, batch_size=c.relearn_batch_size, seed=spec.seed)
    if out.note:
        notes.append(f"relearning attack: {out.note}")
    values.update(audited_accuracies(out.model, splits, "relearn", batch_size))
    t2 = time.perf_counter()
    values.update(_probe(model, splits, spec, notes))
    return values, {"batchnorm_layers": n_bn, "relearn_steps": out.steps, "notes": notes,
                    "bn_time_s": t1 - t0, "relearn_time_s": t2 - t1, "probe_time_s": time.perf_counter() - t2}


def _probe(model: nn.Module, splits: Splits, spec: RecoverySpec, notes: list[str]) -> dict[str, float]:
    """The feature probe's keys on the relearning attack's retain slice; n/a (noted) where it cannot run."""
    x, y = spec.relearn_data
    try:
        return feature_probe(model, splits.forget, (x, y), retain_samples=len(y), seed=spec.seed).keys()
    except (DataError, ModelError) as e:  # a tiny forget set, or no classifier layer to read
        notes.append(f"feature probe: n/a ({e})")
        return {"probe_forget_acc": math.nan, "probe_retain_acc": math.nan}


"""The metric values of one model: each split's logits once, then accuracies and attacks from them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..data.splits import Pair, Splits
from ..exceptions import ConfigError
from ..metrics.accuracy import compute_logits, logits_accuracy, per_class_accuracy
from ..metrics.mia import (
    AttackResult,
    entropy_attack,
    loss_attack_accuracy,
    loss_attack_auc,
    mia_efficacy,
    per_sample_loss,
    prediction_entropy,
    scrub_loss_attack,
    true_label_confidence,
)
from ..registry import did_you_mean
from ..utils import hash_arrays
from .keys import METRIC_GROUPS
from .rank import rank_metrics


def metric_groups(metrics: str | Sequence[str]) -> set[str]:
    """The groups asked for, with "all" and "mia" expanded; ConfigError on an unknown name."""
    names = [metrics] if isinstance(metrics, str) else list(metrics)
    if "all" in names:
        names = list(METRIC_GROUPS)
    for m in names:
        if m not in METRIC_GROUPS:
            raise ConfigError(
                f"unknown metric group {m!r}.{did_you_mean(m, list(METRIC_GROUPS))} "
                f"Choose from: {', '.join(METRIC_GROUPS)} (or 'all')"
            )
    groups = set(names)
    if "mia" in groups:
        groups |= {"mia_efficacy", "mia_entropy", "mia_loss"}
    return groups


def splits_fingerprint(splits: Splits) -> str:
    """Identity of a split (kind, sizes, forget samples) to check a reused reference report."""
    return hash_arrays(splits.kind, len(splits.forget[1]), len(splits.retain[1]),
                       len(splits.test[1]), splits.forget[0], splits.forget[1])


class SplitLogits:
    """Logits of one model per split, computed on first use and then kept."""

    def __init__(self, model: nn.Module, splits: Splits, batch_size: int) -> None:
        self.model, self.splits, self.batch_size = model, splits, batch_size
        self._cache: dict[str, torch.Tensor] = {}

    def __call__(self, name: str) -> torch.Tensor:
        if name not in self._cache:
            if name in ("test_remaining", "test_forgotten"):
                self._classwise_from_test()
            if name not in self._cache:
                pair: Pair | None = getattr(self.splits, name)
                if pair is None:
                    raise ConfigError(
                        f"split {name!r} is not available for {self.splits.kind} forgetting")
                self._cache[name] = compute_logits(self.model, pair[0], batch_size=self.batch_size)
        return self._cache[name]

    def _classwise_from_test(self) -> None:
        # For class forgetting test_remaining / test_forgotten are the test images whose label is
        # (not) forgotten; slice the test logits instead of running the model again, after
        # checking the tensors really are those subsets (Splits built by hand may differ).
        s = self.splits
        if s.kind != "class" or s.test_remaining is None or s.test_forgotten is None:
            return
        x, y = s.test
        mask = torch.isin(y, torch.as_tensor(s.forgotten_classes, dtype=y.dtype))
        for name, m in (("test_remaining", ~mask), ("test_forgotten", mask)):
            px, py = getattr(s, name)
            if len(py) != int(m.sum()) or not (torch.equal(py, y[m]) and torch.equal(px, x[m])):
                return
        test = self("test")
        self._cache["test_remaining"], self._cache["test_forgotten"] = test[~mask], test[mask]


def compute_model_metrics(
    model: nn.Module, splits: Splits, groups: set[str], *, seed: int, batch_size: int
) -> tuple[dict[str, float], list[float | None], dict[str, Any], SplitLogits]:
    """The metric values of one model for `groups` (no divergences: they need the reference).

    Returns:
        (key -> value, per-class test accuracy, attack details per key, the kept logits).
    """
    logits = SplitLogits(model, splits, batch_size)
    values: dict[str, float] = {}
    per_class: list[float | None] = []
    details: dict[str, Any] = {}
    fy, ry, ty = splits.forget[1], splits.retain[1], splits.test[1]
    if "accuracy" in groups:
        values["forget_acc"] = logits_accuracy(logits("forget"), fy)
        values["unlearn_acc"] = 100.0 - values["forget_acc"]
        values["retain_acc"] = logits_accuracy(logits("retain"), ry)
        values["test_acc"] = logits_accuracy(logits("test"), ty)
        if splits.classwise:
            rem_y, fgt_y = splits.test_remaining[1], splits.test_forgotten[1]  # type: ignore[index]
            values["test_remaining_acc"] = logits_accuracy(logits("test_remaining"), rem_y)
            values["test_forgotten_acc"] = logits_accuracy(logits("test_forgotten"), fgt_y)
        per_class = per_class_accuracy(logits("test"), ty, splits.num_classes)

    def record(key: str, res: AttackResult) -> None:
        values[key] = res.value
        details[key] = res.details

    if "mia_efficacy" in groups:
        # SalUn: non-members = the test set; class-wise, the test set without forgotten classes.
        non = "test_remaining" if splits.classwise else "test"
        non_y = splits.test_remaining[1] if splits.classwise else ty  # type: ignore[index]
        record("mia_efficacy", mia_efficacy(
            true_label_confidence(logits("retain"), ry),
            true_label_confidence(logits(non), non_y),
            true_label_confidence(logits("forget"), fy)))
    if "mia_entropy" in groups:
        record("mia_entropy", entropy_attack(
            prediction_entropy(logits("retain")), prediction_entropy(logits("test")),
            prediction_entropy(logits("forget"))))
    if "mia_loss" in groups:
        fl, tl = per_sample_loss(logits("forget"), fy), per_sample_loss(logits("test"), ty)
        record("mia_loss_acc", loss_attack_accuracy(fl, tl, seed=seed))
        # SCRUB: non-members = test samples of the forget set's classes (class-wise: the forgotten one)
        same = torch.isin(ty, torch.unique(fy)).numpy()
        record("mia_loss_acc_scrub", scrub_loss_attack(fl, tl[same], seed=seed))
        record("mia_loss_auc", loss_attack_auc(fl, tl))
    if "loss_rank" in groups:
        rank, details["rank_auc"] = rank_metrics(splits, logits)
        values.update(rank)
    return values, per_class, details, logits


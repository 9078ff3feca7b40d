"""`EvaluationReport`: the metrics of one model and of its reference, with their provenance."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..metrics.mia import ORIENTATION
from ..utils import to_jsonable
from .gaps import (
    gap_paper,
    gap_paper_keys,
    gap_recovery,
    gap_recovery_keys,
    gap_salun,
    gap_salun_keys,
)
from .keys import NOT_DISTANCES, RANK_ORIENTATION, RECOVERY_ORIENTATION


@dataclass
class EvaluationReport:
    """The metrics of one model (and of the reference), with their provenance.

    Attributes:
        model_metrics: metric key (docs/evaluation.md) -> value for the evaluated model.
        reference_metrics: the same for the reference (retrained) model, or None.
        kind: the forgetting scenario ('class', 'subclass', 'random', 'indices').
        classwise: True when test_remaining / test_forgotten exist.
        num_classes: classes of the label space.
        sizes: samples per split.
        per_class_acc: {"model": [...], "reference": [...]}: test accuracy per class (%).
        mia_details: {"model": {key: details}, ...}: attack-set sizes, folds, notes.
        sensitivity: {"model": summary, "reference": summary} or None.
        seed: seed of every subsample.
        recovery: the recovery audits' settings, data and per-model notes (None when the
            'recovery' group was not computed).
        floor: the retraining floor (None with fewer than two references).
    """

    model_metrics: dict[str, float]
    reference_metrics: dict[str, float] | None
    kind: str
    classwise: bool
    num_classes: int
    sizes: dict[str, int]
    per_class_acc: dict[str, list[float | None]]
    mia_details: dict[str, dict[str, Any]]
    sensitivity: dict[str, Any] | None
    seed: int
    fingerprint: str = ""
    recovery: dict[str, Any] | None = None
    #: with retrained references 2.. (`mumis.evaluation.floor.floor_block`): each one's metrics
    #: and, per distance key, the model's distance to the first beside theirs
    floor: dict[str, Any] | None = None
    # Kept for reuse as a reference and for plots; never serialised.
    forget_logits: torch.Tensor | None = field(default=None, repr=False)
    sensitivity_values: dict[str, Any] = field(default_factory=dict, repr=False)
    # The model's per-sample cross-entropy on the same seeded subsample per split as the
    # sensitivity diagnostics (the loss attack's feature: members have small losses).
    loss_values: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    # Read-only aliases of the names before the rename (the report is public API: mumis.EvaluationReport).
    @property
    def model(self) -> dict[str, float]:
        """Alias of `model_metrics` (the metric dict, not a model)."""
        return self.model_metrics

    @property
    def reference(self) -> dict[str, float] | None:
        """Alias of `reference_metrics` (the metric dict, not a model)."""
        return self.reference_metrics

    def samples(self, digits: int = 5) -> dict[str, dict[str, list[float]]]:
        """JSON-ready per-sample values of the model for plots (rounded to `digits` significant
        digits): `loss` and, when measured, `sensitivity_target` / `sensitivity_irrelevant`,
        each split -> list, on a seeded subsample of each split (`sensitivity_samples`)."""
        def rounded(a: np.ndarray) -> list[float]:
            return [float(f"{float(v):.{digits}g}") for v in a]

        out: dict[str, dict[str, list[float]]] = {
            "loss": {k: rounded(v) for k, v in self.loss_values.items()}}
        diag = self.sensitivity_values.get("model")
        if diag is not None:
            for q in ("target", "irrelevant"):
                out[f"sensitivity_{q}"] = {k: rounded(v[q]) for k, v in diag.values.items()}
        return out

    @property
    def diff(self) -> dict[str, float] | None:
        """|model - reference| for every key both have (NaN where either is NaN), except the
        rank test's p-value and power statement (`NOT_DISTANCES`)."""
        ref = self.reference_metrics
        if ref is None:
            return None
        return {k: abs(v - ref[k]) for k, v in self.model_metrics.items() if k in ref and k not in NOT_DISTANCES}

    @property
    def gap_paper(self) -> float | None:
        ref = self.reference_metrics
        return None if ref is None else gap_paper(self.model_metrics, ref, classwise=self.classwise)

    @property
    def gap_salun(self) -> float | None:
        ref = self.reference_metrics
        return None if ref is None else gap_salun(self.model_metrics, ref, classwise=self.classwise)

    @property
    def gap_recovery(self) -> float | None:
        """Recovery audits' gap to retrain (`gap_recovery`); None without a reference or audits."""
        ref = self.reference_metrics
        return None if ref is None else gap_recovery(self.model_metrics, ref, classwise=self.classwise)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: `model` (+ `reference`, `diff`, `gap_paper`, `gap_salun` with a
        reference), then per-class accuracy, MIA details and orientation, sensitivity summary."""
        m = self.model_metrics
        out: dict[str, Any] = {"model": dict(m)}
        if self.reference_metrics is not None:
            out["reference"] = dict(self.reference_metrics)
            out["diff"] = self.diff
            out["gap_paper"] = self.gap_paper
            out["gap_salun"] = self.gap_salun
            out["gap_paper_keys"] = list(gap_paper_keys(self.classwise))
            out["gap_salun_keys"] = list(gap_salun_keys(self.classwise))
            if self.recovery is not None:
                out["gap_recovery"] = self.gap_recovery
                out["gap_recovery_keys"] = list(gap_recovery_keys(self.classwise))
        out["kind"] = self.kind
        out["sizes"] = dict(self.sizes)
        out["seed"] = self.seed
        out["per_class_acc"] = self.per_class_acc
        out["orientation"] = {k: v for k, v in {**ORIENTATION, **RANK_ORIENTATION}.items() if k in m}
        if self.recovery is not None:
            out["orientation"].update({k: RECOVERY_ORIENTATION for k in m
                                       if k.startswith(("bn_reestimated_", "relearn_"))})
        out["mia_details"] = self.mia_details
        if self.sensitivity is not None:
            out["sensitivity"] = self.sensitivity
        if self.recovery is not None:
            out["recovery"] = self.recovery
        if self.floor is not None:
            out["floor"] = self.floor
        return to_jsonable(out)

    def to_markdown(self, *, model_name: str = "model", reference_name: str = "retrain") -> str:
        """A Markdown table: metric, model value, reference value, |diff|, meaning."""
        from .format import report_markdown

        return report_markdown(self, model_name=model_name, reference_name=reference_name)

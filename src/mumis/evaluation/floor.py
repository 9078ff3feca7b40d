"""The retraining floor: how far retrained models with other seeds are from the first one.

Every distance mumis reports (|difference| of an accuracy or attack score, KL / JS on the forget
set, the gaps) is measured to one retrained model. Two retrained models already differ; the
floor is that retrain-vs-retrain distance, key by key, so a model's distance can be read beside
it. A distance is "within the floor" when it is no larger than the largest retrain-vs-retrain
distance of that key (docs/evaluation.md, "The retraining floor").
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..metrics.divergence import js_to_retrain, kl_to_retrain
from .gaps import gap_paper, gap_recovery, gap_salun
from .keys import METRIC_KEYS, NOT_DISTANCES

if TYPE_CHECKING:
    from .report import EvaluationReport

#: The distances that are not a |difference| of one metric key.
GAP_KEYS = ("gap_paper", "gap_salun", "gap_recovery")
#: The keys whose |difference| is a distance: not the rank test's p-value and power statement.
DISTANCE_KEYS = tuple(k for k in METRIC_KEYS if k not in NOT_DISTANCES)
_DIVERGENCES = ("kl_to_retrain", "js_to_retrain")
#: Slack of the "within" comparison, for floating-point ties (e.g. both 0 %).
_TOL = 1e-9
RULE = "within = the model's distance <= the largest retrain-vs-retrain distance of that key"


def _num(v: Any) -> float | None:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    return float(v) if ok else None


def _gaps(model: Mapping[str, Any], ref: Mapping[str, Any], classwise: bool) -> dict[str, float | None]:
    return {"gap_paper": gap_paper(model, ref, classwise=classwise),
            "gap_salun": gap_salun(model, ref, classwise=classwise),
            "gap_recovery": gap_recovery(model, ref, classwise=classwise)}


def model_distances(report: EvaluationReport) -> dict[str, float | None]:
    """The model's distance to its (first) reference, per key: |diff|, the divergences, the gaps."""
    ref = report.reference_metrics or {}
    out: dict[str, float | None] = {}
    for k in DISTANCE_KEYS:
        if k in report.model_metrics and k in ref:
            v = report.model_metrics[k]
            out[k] = _num(v) if k in _DIVERGENCES else _num(abs(v - ref[k]))
    out.update(_gaps(report.model_metrics, ref, report.classwise))
    return out


def retrain_distances(first: EvaluationReport, other: EvaluationReport) -> dict[str, float | None]:
    """Retrain `other`'s distance to retrain `first` (both their own reports, same splits), for
    every distance a model's report would have: |diff| of each metric (not `NOT_DISTANCES`),
    KL / JS of the forget-set outputs (KL(P_first || P_other), as `kl_to_retrain`), the gaps."""
    a, b = first.model_metrics, other.model_metrics
    out: dict[str, float | None] = {k: _num(abs(b[k] - a[k])) for k in DISTANCE_KEYS if k in a and k in b}
    if first.forget_logits is not None and other.forget_logits is not None:
        out["kl_to_retrain"] = _num(kl_to_retrain(other.forget_logits, first.forget_logits))
        out["js_to_retrain"] = _num(js_to_retrain(other.forget_logits, first.forget_logits))
    out.update(_gaps(b, a, first.classwise))
    return out


def floor_block(report: EvaluationReport, first: EvaluationReport,
                others: Sequence[tuple[str, EvaluationReport]]) -> dict[str, Any]:
    """The `floor` block of a report with references 2.. (`others`: (name, own report)).

    Returns:
        {"rule", "references": [{"name", "metrics"}], "metrics": {key: {"model", "floor": [per
        reference 2..], "mean", "sd" (more than one), "max", "within"}}}; "within" is None where
        the model's distance or a floor value is not a number.
    """
    dists = [retrain_distances(first, rep) for _, rep in others]
    metrics: dict[str, Any] = {}
    for k, d in model_distances(report).items():
        fl = [x.get(k) for x in dists]
        nums = [v for v in fl if v is not None]
        entry: dict[str, Any] = {"model": d, "floor": fl}
        if len(nums) == len(fl) and nums:
            entry["mean"] = statistics.fmean(nums)
            if len(nums) > 1:
                entry["sd"] = statistics.stdev(nums)
            entry["max"] = max(nums)
            entry["within"] = None if d is None else d <= entry["max"] + _TOL
        else:
            entry["within"] = None
        metrics[k] = entry
    refs = [{"name": n, "metrics": dict(rep.model_metrics)} for n, rep in others]
    return {"rule": RULE, "references": refs, "metrics": metrics}


def floor_text(entry: Mapping[str, Any], fmt: Any) -> str:
    """One floor cell: the value (two references) or mean ± sd (more), via `fmt(value)`."""
    fl = entry.get("floor") or []
    if "mean" not in entry:
        return "n/a"
    if len(fl) == 1:
        return str(fmt(entry["mean"]))
    return f"{fmt(entry['mean'])} ± {fmt(entry.get('sd', 0.0))}"


def within_text(entry: Mapping[str, Any]) -> str:
    w = entry.get("within")
    return "n/a" if w is None else ("yes" if w else "no")

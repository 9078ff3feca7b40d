"""The retraining floor (`mumis.evaluation.floor`) on hand-made reports: distances, mean / sd /
max over several further references, the within flags and the table."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from mumis.evaluation import EvaluationReport
from mumis.evaluation.floor import floor_block, retrain_distances


def _report(metrics: dict[str, float], logits: list[list[float]] | None = None,
            reference: dict[str, float] | None = None) -> EvaluationReport:
    return EvaluationReport(
        model_metrics=dict(metrics), reference_metrics=reference, kind="class", classwise=True,
        num_classes=2, sizes={}, per_class_acc={}, mia_details={}, sensitivity=None, seed=0,
        forget_logits=None if logits is None else torch.tensor(logits, dtype=torch.float64))


ACC = ("test_remaining_acc", "test_forgotten_acc", "test_acc")
R1 = {"test_remaining_acc": 90.0, "test_forgotten_acc": 0.0, "test_acc": 81.0, "mia_efficacy": 100.0}
R2 = {"test_remaining_acc": 88.0, "test_forgotten_acc": 0.0, "test_acc": 79.0, "mia_efficacy": 98.0}
R3 = {"test_remaining_acc": 91.0, "test_forgotten_acc": 3.0, "test_acc": 82.0, "mia_efficacy": 100.0}
L1 = [[2.0, 0.0], [0.0, 1.0]]
L2 = [[1.0, 0.0], [0.0, 1.0]]
L3 = [[2.0, 0.0], [0.0, 3.0]]


def _kl(p_logits: list[list[float]], q_logits: list[list[float]]) -> float:
    """Mean KL(P || Q) over rows, by hand."""
    out = 0.0
    for a, b in zip(p_logits, q_logits, strict=True):
        p = [math.exp(x) / sum(math.exp(y) for y in a) for x in a]
        q = [math.exp(x) / sum(math.exp(y) for y in b) for x in b]
        out += sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True))
    return out / len(p_logits)


def _model_report() -> EvaluationReport:
    m = {"test_remaining_acc": 89.0, "test_forgotten_acc": 10.0, "test_acc": 81.0, "mia_efficacy": 99.0,
         "kl_to_retrain": 0.05}
    return _report(m, reference={**R1, "kl_to_retrain": 0.0})


def test_retrain_distances_by_hand() -> None:
    d = retrain_distances(_report(R1, L1), _report(R2, L2))
    assert d["test_remaining_acc"] == 2.0 and d["mia_efficacy"] == 2.0 and d["test_forgotten_acc"] == 0.0
    assert d["gap_paper"] == pytest.approx((2 + 0 + 2) / 3)
    assert d["kl_to_retrain"] == pytest.approx(_kl(L1, L2))  # KL(P_first || P_other)
    assert d["gap_recovery"] is None  # no audits measured


def test_floor_of_three_references() -> None:
    first, others = _report(R1, L1), [("retrain (seed 1)", _report(R2, L2)), ("retrain (seed 2)", _report(R3, L3))]
    block = floor_block(_model_report(), first, others)
    assert [r["name"] for r in block["references"]] == ["retrain (seed 1)", "retrain (seed 2)"]
    assert block["references"][1]["metrics"] == R3
    m: dict[str, Any] = block["metrics"]
    # test_acc: the model is 0 away; the floor 2 and 1
    e = m["test_acc"]
    assert e["model"] == 0.0 and e["floor"] == [2.0, 1.0] and e["mean"] == 1.5 and e["max"] == 2.0
    assert e["sd"] == pytest.approx(math.sqrt(0.5)) and e["within"] is True
    # test_forgotten_acc: 10 points, further than either retrain (0 and 3)
    assert m["test_forgotten_acc"]["within"] is False and m["test_forgotten_acc"]["max"] == 3.0
    # gap_paper: the model's (1 + 10 + 0) / 3 against the retrains' gaps (4/3 and 5/3)
    g = m["gap_paper"]
    assert g["model"] == pytest.approx(11 / 3) and g["floor"] == [pytest.approx(4 / 3), pytest.approx(5 / 3)]
    assert g["within"] is False
    # KL: the model's value against each retrain's KL to the first
    k = m["kl_to_retrain"]
    assert k["model"] == 0.05 and k["floor"] == [pytest.approx(_kl(L1, L2)), pytest.approx(_kl(L1, L3))]
    assert k["within"] is True
    # within the largest floor value even when above another; a missing value is n/a
    assert m["mia_efficacy"]["within"] is True  # 1 <= max(2, 0)
    assert m["gap_recovery"] == {"model": None, "floor": [None, None], "within": None}


def test_the_table_shows_each_reference_and_the_floor() -> None:
    rep = _model_report()
    first, others = _report(R1, L1), [("retrain (seed 1)", _report(R2, L2)), ("retrain (seed 2)", _report(R3, L3))]
    rep.floor = floor_block(rep, first, others)
    md = rep.to_markdown(model_name="mumis")
    assert ("| metric | mumis | retrain | retrain (seed 1) | retrain (seed 2) | abs diff | "
            "floor (mean ± sd of 2 vs retrain) | within floor | meaning |") in md
    assert "| test_acc | 81.00 | 81.00 | 79.00 | 82.00 | 0.00 | 1.50 ± 0.71 | yes |" in md
    assert "| test_forgotten_acc | 10.00 | 0.00 | 0.00 | 3.00 | 10.00 | 1.50 ± 2.12 | no |" in md
    assert rep.to_dict()["floor"]["metrics"]["test_acc"]["within"] is True
    # without a floor, the table is as it was
    assert "| metric | mumis | retrain | abs diff | meaning |" in _model_report().to_markdown(model_name="mumis")

"""The `loss_rank` evaluation group: hand-computed rank tests through `evaluate`, which unseen
samples it takes, its keys kept out of diff / floor / gaps, its printing, and the bench tables."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import nn

from mumis.data.splits import Splits, splits_from_tensors
from mumis.evaluation import EvaluationReport, evaluate
from mumis.evaluation.floor import floor_block, model_distances, retrain_distances
from mumis.evaluation.format import fmt_value
from mumis.evaluation.keys import UNSEEN_HOLDOUT, UNSEEN_TEST
from mumis.exceptions import ConfigError
from mumis.reporting import build_tables, to_csv, to_markdown
from mumis.reporting.tables import RANK_NOTES

RANK = ["accuracy", "loss_rank"]


class Margin(nn.Module):
    """Two classes; logits (scale * x, 0): a sample of label 0 has loss log(1 + exp(-scale * x)),
    smaller for larger x, so the inputs fix the order of the losses."""

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(scale), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.scale * x[:, :1]
        return torch.cat([s, torch.zeros_like(s)], dim=1)


def _col(values: list[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32).unsqueeze(1)


def _splits(forget_x: list[float], test_x: list[float], *, test_y: list[int] | None = None,
            holdout: tuple[list[float], list[int]] | None = None) -> Splits:
    """Label 0 everywhere unless given; retain holds label 0 and 1 (random forgetting)."""
    ty = torch.tensor(test_y if test_y is not None else [0] * len(test_x))
    held = None if holdout is None else (_col(holdout[0]), torch.tensor(holdout[1]))
    return splits_from_tensors(forget=(_col(forget_x), torch.zeros(len(forget_x), dtype=torch.long)),
                               retain=(_col([0.5, 1.5]), torch.tensor([0, 1])),
                               test=(_col(test_x), ty), num_classes=2, holdout=held)


def test_identical_loss_distributions_give_auc_50_and_p_1() -> None:
    xs = [float(v) for v in range(12)]
    rep = evaluate(Margin(), _splits(xs, xs[::-1]), metrics=RANK)
    m = rep.model_metrics
    assert m["rank_auc"] == pytest.approx(50.0) and m["rank_p"] == pytest.approx(1.0)
    # (1.96 + 0.8416) * sqrt(25 / (12 * 12 * 12)) = 0.3370 -> 33.70 points
    assert m["rank_detectable"] == pytest.approx(33.70, abs=0.01)
    d = rep.mia_details["model"]["rank_auc"]
    assert d == {**d, "unseen": UNSEEN_TEST, "n_forget": 12, "n_unseen": 12} and "note" not in d


def test_fully_separated_losses_give_auc_100_or_0_and_a_tiny_p() -> None:
    fx, tx = [10.0 + i for i in range(20)], [float(-i) for i in range(30)]
    # every forget loss smaller: U = 0, z = -(20 * 30 / 2) / sqrt(20 * 30 * 51 / 12)
    z = 300.0 / math.sqrt(600 * 51 / 12)
    rep = evaluate(Margin(), _splits(fx, tx), metrics=RANK)
    assert rep.model_metrics["rank_auc"] == 100.0
    assert rep.model_metrics["rank_p"] == pytest.approx(math.erfc(z / math.sqrt(2)), rel=1e-9)
    assert 0 < rep.model_metrics["rank_p"] < 1e-8
    flipped = evaluate(Margin(-1.0), _splits(fx, tx), metrics=RANK)  # every forget loss larger
    assert flipped.model_metrics["rank_auc"] == 0.0
    assert flipped.model_metrics["rank_p"] == rep.model_metrics["rank_p"]


def test_unseen_is_the_holdout_of_the_forget_classes_else_the_test_split_of_them() -> None:
    fx = [float(i) for i in range(10)]
    # test: 6 samples of class 0, 4 of class 1 (left out: the forget set has class 0 only)
    plain = _splits(fx, [float(i) for i in range(10)], test_y=[0] * 6 + [1] * 4)
    d = evaluate(Margin(), plain, metrics=RANK).mia_details["model"]["rank_auc"]
    assert (d["unseen"], d["n_unseen"]) == (UNSEEN_TEST, 6)
    held = _splits(fx, [float(i) for i in range(10)], holdout=([-1.0, -2.0, 3.0, 4.0, 5.0], [0, 0, 0, 1, 1]))
    rep = evaluate(Margin(), held, metrics=RANK)
    d = rep.mia_details["model"]["rank_auc"]
    assert (d["unseen"], d["n_unseen"]) == (UNSEEN_HOLDOUT, 3)
    # 10 forget x 3 holdout pairs: forget x 0..9 against -1, -2, 3 -> losses smaller in 20 + 6 + 0.5
    assert rep.model_metrics["rank_auc"] == pytest.approx(100 * (10 + 10 + 6 + 0.5) / 30)
    assert "fewer than 10 samples on a side" in d["note"]
    md = rep.to_markdown()
    assert "- rank_*: 10 forget samples against 3 unseen ones (holdout split" in md
    # a holdout without the forget set's classes: the test split
    other = _splits(fx, [float(i) for i in range(10)], holdout=([1.0, 2.0], [1, 1]))
    assert evaluate(Margin(), other, metrics=RANK).mia_details["model"]["rank_auc"]["unseen"] == UNSEEN_TEST


def test_class_forgetting_compares_with_the_forgotten_class_test_samples() -> None:
    x = _col([float(i) for i in range(20)])
    y = torch.tensor([0] * 10 + [1] * 10)
    s = splits_from_tensors(forget=(x[:10], y[:10]), retain=(x[10:], y[10:]), test=(x, y), num_classes=2)
    assert s.kind == "class"
    d = evaluate(Margin(), s, metrics=RANK).mia_details["model"]["rank_auc"]
    assert (d["unseen"], d["n_unseen"]) == (UNSEEN_TEST, 10)


def _three(splits: Splits) -> tuple[EvaluationReport, EvaluationReport, EvaluationReport]:
    ref1, ref2 = evaluate(Margin(0.5), splits, metrics=RANK), evaluate(Margin(0.8), splits, metrics=RANK)
    return evaluate(Margin(2.0), splits, reference=ref1, metrics=RANK), ref1, ref2


def test_p_value_and_power_are_no_distance_rank_auc_is() -> None:
    s = _splits([float(i) for i in range(15)], [float(i) - 3.0 for i in range(40)])
    rep, ref1, ref2 = _three(s)
    for d in (model_distances(rep), retrain_distances(ref1, ref2), rep.diff or {}):
        assert "rank_auc" in d and not {"rank_p", "rank_detectable"} & set(d)
    fl = floor_block(rep, ref1, [("retrain (seed 1)", ref2)])["metrics"]
    assert not {"rank_p", "rank_detectable"} & set(fl)
    # the scale does not change the order of the losses: every AUC is the same, distance 0
    assert fl["rank_auc"]["model"] == 0.0 and fl["rank_auc"]["within"] is True
    without = evaluate(Margin(2.0), s, reference=evaluate(Margin(0.5), s, metrics="accuracy"), metrics="accuracy")
    assert rep.gap_paper == without.gap_paper  # in no gap
    out = rep.to_dict()
    assert {"rank_p", "rank_detectable"} <= set(out["model"]) and "not a distance" in out["orientation"]["rank_p"]


def test_printing_p_values() -> None:
    assert fmt_value(0.031234, "rank_p") == "0.0312"
    assert fmt_value(1.0, "rank_p") == "1.00"
    assert fmt_value(4.5678e-12, "rank_p") == "4.57e-12"
    assert fmt_value(float("nan"), "rank_p") == "n/a"
    rep, _, _ = _three(_splits([float(i) for i in range(15)], [float(i) - 3.0 for i in range(40)]))
    row = next(line for line in rep.to_markdown().splitlines() if line.startswith("| rank_p |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == fmt_value(rep.model_metrics["rank_p"], "rank_p") and cells[3] == ""  # no abs diff


def test_a_reference_report_with_other_unseen_samples_is_refused() -> None:
    fx, tx = [float(i) for i in range(12)], [float(i) for i in range(12)]
    held = _splits(fx, tx, holdout=([1.0, 2.0, 3.0], [0, 0, 0]))
    ref = evaluate(Margin(), _splits(fx, tx), metrics=RANK)  # same forget set, no holdout
    with pytest.raises(ConfigError, match="rank test used other unseen samples.*same holdout"):
        evaluate(Margin(2.0), held, reference=ref, metrics=RANK)


def _record(scenario: str, method: str, seed: int, p: float) -> dict[str, Any]:
    model = {"forget_acc": 90.0, "retain_acc": 99.0, "test_acc": 95.0, "mia_efficacy": 10.0,
             "rank_auc": 50.0 + seed, "rank_p": p, "rank_detectable": 12.0}
    if scenario.startswith(("class", "subclass")):
        model.update({"test_forgotten_acc": 0.0, "test_remaining_acc": 97.0})
    cid = f"digits__mlp__{scenario.replace(':', '-')}__{method}__s{seed}"
    return {"format": "mumis-bench-record/1", "cell": cid, "dataset": "digits", "model": "mlp",
            "scenario": scenario, "seed": seed, "role": "reference" if method == "retrain" else "method",
            "method": method, "method_name": None if method == "retrain" else method,
            "evaluation": {"model": model}, "gap_paper": 1.0, "gap_salun": 2.0, "time_s": 1.0}


def test_bench_tables_show_the_rank_columns_for_scenarios_that_are_not_whole_classes() -> None:
    scenarios = ("class:3", "subclass:4", "random:0.01", "indices:few.txt")
    recs = [_record(s, m, seed, p) for s in scenarios for m in ("retrain", "mumis")
            for seed, p in ((0, 0.5), (1, 0.00012345))]
    tables = {t.scenario: t for t in build_tables(recs)}
    rank = ["rank_auc", "rank_p", "rank_detectable"]
    for s, t in tables.items():
        keys = [k for k, _ in t.columns]
        if s == "class:3":
            assert not set(rank) & set(keys)
        else:
            i = keys.index("mia_efficacy")
            assert keys[i + 1:i + 4] == rank and keys[i + 4] == "gap_paper"
    md = to_markdown(list(tables.values()))
    assert "loss rank AUC (rank_auc)" in md and RANK_NOTES in md
    # p: 3 significant digits (mean 0.25006, std 0.3535), not 2 decimals
    assert "| 50.50 ± 0.71 | 0.250 ± 0.353 | 12.00 ± 0.00 |" in md
    assert "rank_p_mean" in to_csv(list(tables.values())).splitlines()[0]
    # records without the group (older benches, metrics without it): the tables as before
    for r in recs:
        for k in rank:
            del r["evaluation"]["model"][k]
    tables2 = build_tables(recs)
    assert all(not {"rank_auc"} & {k for k, _ in t.columns} for t in tables2)
    assert RANK_NOTES not in to_markdown(tables2)


def test_no_unseen_sample_of_the_forget_classes_gives_n_a_with_the_reason() -> None:
    x = _col([float(i) for i in range(12)])
    y = torch.tensor([1] * 4 + [0] * 8)
    s = splits_from_tensors(forget=(x[:4], y[:4]), retain=(x[4:], y[4:]), test=(x[4:], y[4:]), num_classes=2)
    rep = evaluate(Margin(), s, metrics=RANK)
    assert math.isnan(rep.model_metrics["rank_auc"]) and math.isnan(rep.model_metrics["rank_p"])
    assert rep.mia_details["model"]["rank_auc"]["skipped"] == "rank test not computed: an empty side"
    assert "| rank_auc | n/a |" in rep.to_markdown() and rep.to_dict()["model"]["rank_p"] is None

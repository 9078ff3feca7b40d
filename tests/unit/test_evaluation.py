"""`mumis.evaluate`: orientation of every metric on models with known behaviour, reference
handling, gaps, report formats."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import mumis.evaluation.compute as ev_compute
from mumis.data.splits import Splits
from mumis.evaluation import (
    EvaluationReport,
    comparison_table,
    evaluate,
    gap,
    gap_paper,
    gap_salun,
)
from mumis.exceptions import ConfigError
from mumis.metrics import scrub_loss_attack

K = 5


class LookupModel(nn.Module):
    """Memorises `known` samples: very confident and correct on them, uncertain elsewhere
    (small logits from a fixed random projection), like an extreme over-fitted network."""

    def __init__(self, x_known: torch.Tensor, y_known: torch.Tensor, conf: float = 12.0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(99)
        self.register_buffer("keys", x_known.flatten(1).clone())
        self.register_buffer("labels", y_known.clone())
        self.register_buffer("proj", 0.3 * torch.randn(x_known[0].numel(), K, generator=g))
        self.conf = conf

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(1)  # (B, D)
        dist, j = torch.cdist(flat, self.keys, compute_mode="donot_use_mm_for_euclid_dist").min(1)  # (B,)
        hit = (dist < 1e-5).unsqueeze(1)
        memorised = self.conf * F.one_hot(self.labels[j], K).float()  # (B, K)
        return torch.where(hit, memorised, flat @ self.proj)


def _data(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(360, 1, 4, 4, generator=g)
    y = torch.randint(0, K, (360,), generator=g)
    return x, y


def random_splits(n_forget: int = 60, n_retain: int = 200) -> Splits:
    x, y = _data()
    f, r = slice(0, n_forget), slice(n_forget, n_forget + n_retain)
    t = slice(n_forget + n_retain, 360)
    return Splits(forget=(x[f], y[f]), retain=(x[r], y[r]), test=(x[t], y[t]), kind="random",
                  num_classes=K, forgotten_classes=[])


def class_splits(kind: str = "class") -> Splits:
    x, y = _data()
    tr, te = slice(0, 260), slice(260, 360)
    fm, tm = y[tr] == 0, y[te] == 0
    xt, yt = x[te], y[te]
    return Splits(forget=(x[tr][fm], y[tr][fm]), retain=(x[tr][~fm], y[tr][~fm]), test=(xt, yt),
                  kind=kind, num_classes=K, forgotten_classes=[0],
                  test_remaining=(xt[~tm], yt[~tm]), test_forgotten=(xt[tm], yt[tm]))


def memoriser(s: Splits) -> LookupModel:
    return LookupModel(torch.cat([s.forget[0], s.retain[0]]), torch.cat([s.forget[1], s.retain[1]]))


def forgetter(s: Splits) -> LookupModel:
    return LookupModel(s.retain[0], s.retain[1])  # treats the forget set like the test set


FAST = ("accuracy", "mia", "divergence")


def test_orientation_memoriser_vs_forgetter():
    s = random_splits()
    mem = evaluate(memoriser(s), s, metrics=FAST).model_metrics
    fgt = evaluate(forgetter(s), s, metrics=FAST).model_metrics
    assert mem["forget_acc"] == 100.0 and mem["retain_acc"] == 100.0 and mem["unlearn_acc"] == 0
    assert fgt["retain_acc"] == 100.0 and fgt["forget_acc"] < 50
    # SalUn MIA-Efficacy: higher = more forgotten
    assert mem["mia_efficacy"] < 5 and fgt["mia_efficacy"] > 95
    # SSD entropy attack: % forget called member, lower = more forgotten
    assert mem["mia_entropy"] > 95 and fgt["mia_entropy"] < 5
    # loss attack: memorised forget set is separable from test; forgotten one is not
    assert mem["mia_loss_auc"] > 95 and mem["mia_loss_acc"] > 90
    assert abs(fgt["mia_loss_auc"] - 50) < 15 and abs(fgt["mia_loss_acc"] - 50) < 15


def test_against_reference_and_self():
    s = random_splits()
    ref = forgetter(s)
    rep = evaluate(memoriser(s), s, reference=ref, metrics=FAST)
    assert rep.model_metrics["kl_to_retrain"] > 1.0 and 0 < rep.model_metrics["js_to_retrain"] <= math.log(2)
    assert rep.gap_paper == pytest.approx(
        np.mean([abs(rep.model_metrics[k] - rep.reference_metrics[k]) for k in ("retain_acc", "forget_acc",
                                                                 "test_acc")]))
    assert rep.gap_salun > 20
    self_rep = evaluate(ref, s, reference=ref, metrics=FAST)
    assert all(v == pytest.approx(0.0, abs=1e-9) for v in self_rep.diff.values())
    assert self_rep.gap_paper == 0.0 and self_rep.gap_salun == 0.0
    assert self_rep.model_metrics["kl_to_retrain"] == pytest.approx(0.0, abs=1e-9)
    # a reference given as its own report (evaluated once, reused) gives the same numbers
    ref_rep = evaluate(ref, s, metrics=FAST)
    again = evaluate(memoriser(s), s, reference=ref_rep, metrics=FAST)
    assert again.to_dict()["diff"] == rep.to_dict()["diff"]
    with pytest.raises(ConfigError, match="other splits"):
        evaluate(ref, random_splits(n_forget=50), reference=ref_rep, metrics=FAST)


def test_mia_numbers_match_independent_sklearn():
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.svm import SVC

    s = random_splits()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, K))
    rep = evaluate(model, s, metrics=("mia",))

    def out(pair):
        with torch.no_grad():
            z = model(pair[0]).double().numpy()
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        return p, pair[1].numpy()

    (pf, yf), (pr, yr), (pt, yt) = out(s.forget), out(s.retain), out(s.test)
    conf = [p[np.arange(len(y)), y] for p, y in ((pf, yf), (pr, yr), (pt, yt))]
    n = len(yt)
    svc = SVC(C=3, gamma="auto", kernel="rbf").fit(
        np.r_[conf[1][:n], conf[2]].reshape(-1, 1), np.r_[np.ones(n), np.zeros(n)])
    assert rep.model_metrics["mia_efficacy"] == pytest.approx(
        100 * (1 - svc.predict(conf[0].reshape(-1, 1)).mean()))
    ent = [-(p * np.log(p)).sum(1) for p in (pf, pr, pt)]
    lr = LogisticRegression(class_weight="balanced").fit(
        np.r_[ent[1], ent[2]].reshape(-1, 1), np.r_[np.ones(len(ent[1])), np.zeros(n)])
    assert rep.model_metrics["mia_entropy"] == pytest.approx(100 * lr.predict(ent[0].reshape(-1, 1)).mean())
    loss_f, loss_t = -np.log(conf[0]), -np.log(conf[2])
    auc = roc_auc_score(np.r_[np.ones(len(loss_f)), np.zeros(n)], -np.r_[loss_f, loss_t])
    assert rep.model_metrics["mia_loss_auc"] == pytest.approx(100 * auc)


def test_salun_members_are_first_n_retain(monkeypatch):
    s = random_splits()
    seen = {}
    real = ev_compute.mia_efficacy

    def spy(retain_conf, nonmember_conf, forget_conf):
        seen["retain"], seen["non"] = retain_conf, nonmember_conf
        return real(retain_conf, nonmember_conf, forget_conf)

    monkeypatch.setattr(ev_compute, "mia_efficacy", spy)
    n = len(s.test[1])
    # memorise only the first N retain samples (and the forget set): if the attack's members
    # are those, the memorised forget set looks like members (efficacy ~0)
    known_x = torch.cat([s.forget[0], s.retain[0][:n]])
    known_y = torch.cat([s.forget[1], s.retain[1][:n]])
    rep = evaluate(LookupModel(known_x, known_y), s, metrics=("mia_efficacy",))
    assert len(seen["retain"]) == len(s.retain[1]) and len(seen["non"]) == n
    assert (seen["retain"][:n] > 0.99).all() and (seen["retain"][n:] < 0.99).all()
    assert rep.model_metrics["mia_efficacy"] < 5
    assert rep.mia_details["model"]["mia_efficacy"]["n_members"] == n


def test_classwise_uses_remaining_test_and_paper_gap():
    s = class_splits()
    rep = evaluate(memoriser(s), s, reference=forgetter(s), metrics=FAST)
    m = rep.model_metrics
    assert {"test_remaining_acc", "test_forgotten_acc"} <= set(m)
    assert rep.mia_details["model"]["mia_efficacy"]["n_nonmembers"] == len(s.test_remaining[1])
    keys = ("test_remaining_acc", "test_forgotten_acc", "test_acc")
    assert rep.gap_paper == pytest.approx(np.mean([abs(m[k] - rep.reference_metrics[k]) for k in keys]))
    assert rep.to_dict()["gap_paper_keys"] == list(keys)
    # slicing the test logits (class forgetting) = running the model on each subset
    direct = evaluate(memoriser(s), class_splits(kind="subclass"), metrics=("accuracy", "mia"))
    assert direct.model_metrics == pytest.approx(
        evaluate(memoriser(s), s, metrics=("accuracy", "mia")).model_metrics)


def test_classwise_salun_gap_and_scrub_loss_attack():
    s = class_splits()
    rep = evaluate(memoriser(s), s, reference=forgetter(s), metrics=FAST)
    m, r = rep.model_metrics, rep.reference_metrics
    keys = ("unlearn_acc", "retain_acc", "test_remaining_acc", "mia_efficacy")
    assert rep.gap_salun == pytest.approx(np.mean([abs(m[k] - r[k]) for k in keys]))
    assert rep.to_dict()["gap_salun_keys"] == list(keys)
    # SCRUB's loss attack: non-members = the test samples of the forgotten class only
    logits_f, logits_t = memoriser(s)(s.forget[0]), memoriser(s)(s.test_forgotten[0])
    fl = F.cross_entropy(logits_f.double(), s.forget[1], reduction="none").detach().numpy()
    tl = F.cross_entropy(logits_t.double(), s.test_forgotten[1], reduction="none").detach().numpy()
    assert m["mia_loss_acc_scrub"] == pytest.approx(scrub_loss_attack(fl, tl, seed=0).value)
    assert rep.mia_details["model"]["mia_loss_acc_scrub"]["n_nonmembers"] == len(s.test_forgotten[1])
    # a model that never saw class 0 (the retrained model's situation): the kit's attack, forget vs
    # the whole test set, still separates the forgotten class from the others; SCRUB's does not
    assert r["mia_loss_acc"] > 75 and abs(r["mia_loss_acc_scrub"] - 50) < 20


def test_report_names_its_metric_dicts():
    s = random_splits()
    rep = evaluate(memoriser(s), s, reference=forgetter(s), metrics=("accuracy",))
    assert rep.model is rep.model_metrics and rep.reference is rep.reference_metrics  # old names: aliases
    with pytest.raises(AttributeError):
        rep.model = {}  # type: ignore[misc]  # read-only: the dicts are set under their new names


def test_gaps_hand_made():
    model = {"retain_acc": 90.0, "forget_acc": 80.0, "test_acc": 85.0, "unlearn_acc": 20.0,
             "mia_efficacy": 30.0, "test_remaining_acc": 86.0, "test_forgotten_acc": 10.0}
    ref = {"retain_acc": 92.0, "forget_acc": 70.0, "test_acc": 84.0, "unlearn_acc": 30.0,
           "mia_efficacy": 26.0, "test_remaining_acc": 88.0, "test_forgotten_acc": 0.0}
    assert gap_paper(model, ref, classwise=False) == pytest.approx((2 + 10 + 1) / 3)
    assert gap_paper(model, ref, classwise=True) == pytest.approx((2 + 10 + 1) / 3)
    assert gap_salun(model, ref) == pytest.approx((10 + 2 + 1 + 4) / 4)
    # class-wise, SalUn's TA is the accuracy on the test set without the forgotten class
    assert gap_salun(model, ref, classwise=True) == pytest.approx((10 + 2 + 2 + 4) / 4)
    assert gap(model, ref, ["retain_acc"]) == 2.0
    assert gap(model, {**ref, "mia_efficacy": math.nan}, ["mia_efficacy"]) is None
    assert gap_salun({"retain_acc": 1.0}, ref) is None


def test_to_dict_contract_json_and_markdown():
    s = random_splits()
    alone = evaluate(memoriser(s), s, metrics=FAST).to_dict()
    assert "model" in alone and not {"reference", "diff", "gap_paper", "gap_salun"} & set(alone)
    assert "kl_to_retrain" not in alone["model"]  # divergence needs a reference
    rep = evaluate(memoriser(s), s, reference=forgetter(s), metrics="all",
                   sensitivity_samples=20)
    d = rep.to_dict()
    json.dumps(d, allow_nan=False)
    # the rank test's p-value and power statement are no distances: no diff
    assert set(d["model"]) == set(d["reference"]) == set(d["diff"]) | {"rank_p", "rank_detectable"}
    assert set(d["model"]) == {"forget_acc", "unlearn_acc", "retain_acc", "test_acc",
                               "mia_efficacy", "mia_entropy", "mia_loss_acc", "mia_loss_acc_scrub", "mia_loss_auc",
                               "rank_auc", "rank_p", "rank_detectable",
                               "kl_to_retrain", "js_to_retrain", "bn_reestimated_forget_acc",
                               "bn_reestimated_test_acc", "relearn_forget_acc", "relearn_test_acc",
                               "probe_forget_acc", "probe_retain_acc"}
    assert d["reference"]["kl_to_retrain"] == 0.0
    assert len(d["per_class_acc"]["model"]) == K and "reference" in d["per_class_acc"]
    assert "lower = more forgotten" in d["orientation"]["mia_entropy"]
    assert d["sensitivity"]["model"]["forget"]["n"] == 20
    assert d["sensitivity"]["model"]["n_per_split"] == 20
    assert {"mean", "median", "q25", "q75"} == set(d["sensitivity"]["reference"]["test"]["target"])
    md = rep.to_markdown()
    assert "| mia_efficacy |" in md and "higher = more forgotten" in md and "gap_salun" in md
    assert "up to 20 samples per split" in md


def test_comparison_table():
    s = random_splits()
    ref = forgetter(s)
    rows = {"retrain": evaluate(ref, s, reference=ref, metrics=FAST).to_dict(),
            "original": evaluate(memoriser(s), s, reference=ref, metrics=FAST),
            "flat": {"forget_acc": 12.345}}
    md = comparison_table(rows, ["forget_acc", "mia_efficacy", "gap_salun"])
    lines = md.splitlines()
    assert lines[0] == "| method | forget_acc | mia_efficacy | gap_salun |"
    assert lines[2].startswith("| retrain |") and lines[2].endswith("| 0.00 |")
    assert lines[4] == "| flat | 12.35 | n/a | n/a |"
    plain = comparison_table(rows, ["forget_acc"], fmt="plain")
    assert plain.splitlines()[0].split() == ["method", "forget_acc"]


def test_modes_weights_and_rng_untouched_and_bad_metric():
    s = random_splits()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.Dropout(0.3), nn.Linear(8, K))
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.random.get_rng_state()
    evaluate(model, s, metrics="all", sensitivity_samples=10)
    assert all(m.training for m in model.modules())
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(rng, torch.random.get_rng_state())
    with pytest.raises(ConfigError, match="Did you mean 'accuracy'"):
        evaluate(model, s, metrics=("acuracy",))


def test_tiny_forget_set_does_not_crash():
    s = random_splits(n_forget=1)
    rep = evaluate(memoriser(s), s, reference=forgetter(s), metrics="all", sensitivity_samples=5)
    assert math.isnan(rep.model_metrics["mia_loss_acc"])
    assert "skipped" in rep.mia_details["model"]["mia_loss_acc"]
    assert "mia_loss_acc" in rep.to_markdown()
    assert isinstance(rep, EvaluationReport)

"""Closed-form tests of the metrics: accuracies, MIA features and attacks, divergences,
sensitivity diagnostics."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from mumis.exceptions import ConfigError, ModelError
from mumis.metrics import (
    balanced_loss_set,
    compute_logits,
    entropy_attack,
    eval_mode,
    fit_entropy_attack,
    js_per_sample,
    js_to_retrain,
    kl_per_sample,
    kl_to_retrain,
    logits_accuracy,
    loss_attack_accuracy,
    loss_attack_auc,
    mia_efficacy,
    per_class_accuracy,
    per_sample_loss,
    plot_sensitivity_histograms,
    prediction_entropy,
    salun_attack_set,
    scrub_loss_attack,
    sensitivity_diagnostics,
    subsample_indices,
    summarize,
    true_label_confidence,
)

RNG = np.random.default_rng(123)


# ----------------------------------------------------------------------------- accuracy
def test_accuracy_and_per_class_closed_form():
    logits = torch.tensor([[2.0, 0, 0], [0, 2.0, 0], [0, 0, 2.0], [2.0, 0, 0]])
    y = torch.tensor([0, 1, 0, 0])
    assert logits_accuracy(logits, y) == pytest.approx(75.0)
    assert per_class_accuracy(logits, y, 4) == [pytest.approx(200 / 3), 100.0, None, None]
    assert math.isnan(logits_accuracy(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long)))


def test_compute_logits_batches_restores_modes_and_checks_output():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Dropout(0.5), nn.Linear(8, 3))
    model.train()
    model[1].eval()  # a deliberately mixed state must survive
    modes = [m.training for m in model.modules()]
    x = torch.randn(37, 4)
    out = compute_logits(model, x, batch_size=5)
    with eval_mode(model), torch.no_grad():
        full = model(x)
    assert torch.allclose(out, full, atol=1e-6)  # eval mode: dropout off, running BN stats
    assert [m.training for m in model.modules()] == modes
    with pytest.raises(ModelError, match=r"\(N, K\)"):
        compute_logits(nn.Flatten(0), x)


# ----------------------------------------------------------------------------- features
def test_confidence_entropy_loss_closed_form():
    logits = torch.tensor([[0.0, math.log(3.0)], [0.0, 0.0]])
    y = torch.tensor([1, 0])
    np.testing.assert_allclose(true_label_confidence(logits, y), [0.75, 0.5])
    h = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    np.testing.assert_allclose(prediction_entropy(logits), [h, math.log(2)])
    np.testing.assert_allclose(per_sample_loss(logits, y), [-math.log(0.75), math.log(2)])
    # uniform over K classes: entropy log K; extreme logits: finite, ~0 entropy and loss
    assert prediction_entropy(torch.zeros(1, 10))[0] == pytest.approx(math.log(10))
    extreme = torch.tensor([[1000.0, -1000.0, 0.0]])
    assert prediction_entropy(extreme)[0] == pytest.approx(0.0, abs=1e-12)
    assert per_sample_loss(extreme, torch.tensor([0]))[0] == pytest.approx(0.0, abs=1e-12)
    assert np.isfinite(per_sample_loss(extreme, torch.tensor([1]))).all()


# -------------------------------------------------------------------------- SalUn MIA
def test_salun_attack_set_is_first_n_retain_in_order():
    retain = np.arange(100, 110, dtype=float)
    test = np.arange(4, dtype=float)
    x, labels = salun_attack_set(retain, test)
    np.testing.assert_array_equal(x[:, 0], [100, 101, 102, 103, 0, 1, 2, 3])
    np.testing.assert_array_equal(labels, [1, 1, 1, 1, 0, 0, 0, 0])
    x, labels = salun_attack_set(retain[:2], test)  # retain smaller than N: all of it
    np.testing.assert_array_equal(x[:, 0], [100, 101, 0, 1, 2, 3])
    assert labels.sum() == 2


def test_mia_efficacy_perfect_and_chance():
    members = 1.0 - RNG.uniform(0, 1e-3, 200)  # confident on members
    non = RNG.uniform(0.05, 0.4, 200)
    assert mia_efficacy(members, non, 1.0 - RNG.uniform(0, 1e-3, 50)).value == 0.0
    assert mia_efficacy(members, non, RNG.uniform(0.05, 0.4, 50)).value == 100.0
    # chance: members and non-members identically distributed -> a forget set drawn like the
    # members and one drawn like the non-members get about the same score
    same = RNG.uniform(0, 1, (4, 300))
    a = mia_efficacy(same[0], same[1], same[2]).value
    b = mia_efficacy(same[0], same[1], same[3]).value
    assert abs(a - b) < 15


def test_mia_efficacy_matches_sklearn():
    from sklearn.svm import SVC

    retain, test, forget = RNG.beta(5, 1, 300), RNG.beta(2, 2, 120), RNG.beta(3, 1, 80)
    clf = SVC(C=3, gamma="auto", kernel="rbf").fit(
        np.r_[retain[:120], test].reshape(-1, 1), np.r_[np.ones(120), np.zeros(120)])
    expected = 100 * (1 - clf.predict(forget.reshape(-1, 1)).mean())
    res = mia_efficacy(retain, test, forget)
    assert res.value == pytest.approx(expected)
    assert res.details["n_members"] == 120 and res.details["n_nonmembers"] == 120


# ----------------------------------------------------------------------- entropy attack
def test_entropy_attack_perfect_chance_and_sklearn():
    from sklearn.linear_model import LogisticRegression

    retain, test = RNG.uniform(0, 0.05, 300), RNG.uniform(1.0, 2.0, 100)  # members: low entropy
    assert entropy_attack(retain, test, RNG.uniform(0, 0.05, 40)).value == 100.0
    assert entropy_attack(retain, test, RNG.uniform(1.0, 2.0, 40)).value == 0.0
    same = RNG.uniform(0, 2, (4, 300))
    a = entropy_attack(same[0], same[1], same[2]).value
    b = entropy_attack(same[0], same[1], same[3]).value
    assert abs(a - b) < 15
    retain, test, forget = RNG.gamma(1, 0.3, 250), RNG.gamma(2, 0.5, 90), RNG.gamma(1.5, 0.4, 60)
    clf = LogisticRegression(C=2.0, class_weight="balanced").fit(
        np.r_[retain, test].reshape(-1, 1), np.r_[np.ones(250), np.zeros(90)])
    expected = 100 * clf.predict(forget.reshape(-1, 1)).mean()
    assert entropy_attack(retain, test, forget).value == pytest.approx(expected)


def _ssd_multinomial_fit(retain: np.ndarray, test: np.ndarray) -> tuple[float, float]:
    """SSD's attack model from its definition: softmax over two classes, weights (w0, w1) and
    intercepts (b0, b1), minimising sum_i s_i * cross-entropy + (w0^2 + w1^2) / 2 (C = 1, L2 on
    the weights only), s_i = n / (2 n_class) ("balanced"). Returns (w1 - w0, b1 - b0)."""
    x = torch.tensor(np.r_[retain, test], dtype=torch.float64)
    y = torch.cat([torch.ones(len(retain)), torch.zeros(len(test))]).long()
    s = torch.where(y == 1, len(y) / (2 * len(retain)), len(y) / (2 * len(test))).double()
    w = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=500, tolerance_grad=1e-12,
                            tolerance_change=1e-15, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        z = x[:, None] * w[None, :] + b[None, :]  # (N, 2) class scores
        loss = (s * torch.nn.functional.cross_entropy(z, y, reduction="none")).sum() + 0.5 * (w ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return float((w[1] - w[0]).detach()), float((b[1] - b[0]).detach())


def test_entropy_attack_is_ssds_multinomial_regression():
    """SSD fits LogisticRegression(class_weight="balanced", multi_class="multinomial"); for two
    classes that is a binary fit with C = 2 (the penalty of w0 = -w1 = w/2 is |w|^2 / 4)."""
    from sklearn.linear_model import LogisticRegression

    retain, test = RNG.gamma(1, 0.3, 250), RNG.gamma(2, 0.5, 90)
    w, b = _ssd_multinomial_fit(retain, test)
    clf, converged = fit_entropy_attack(retain, test)
    # to lbfgs's default tolerance (tol=1e-4), which SSD uses too
    assert converged and clf.coef_[0, 0] == pytest.approx(w, rel=2e-3)
    assert clf.intercept_[0] == pytest.approx(b, rel=2e-3)
    # the binary default (C = 1) is another model: the test would catch a return to it
    c1 = LogisticRegression(class_weight="balanced").fit(
        np.r_[retain, test].reshape(-1, 1), np.r_[np.ones(250), np.zeros(90)])
    assert abs(c1.coef_[0, 0] - w) > 0.02 * abs(w)
    # members are those on the member side of the multinomial boundary w * h + b > 0
    forget = np.linspace(0.0, 3.0, 61)
    by_hand = 100 * float(np.mean(w * forget + b > 0))
    assert entropy_attack(retain, test, forget).value == pytest.approx(by_hand)


# -------------------------------------------------------------------------- loss attack
def test_loss_attack_perfect_and_chance():
    forget, test = RNG.uniform(0, 0.01, 100), RNG.uniform(1, 3, 100)
    assert loss_attack_accuracy(forget, test).value == pytest.approx(100.0)
    assert loss_attack_auc(forget, test).value == pytest.approx(100.0)
    same = RNG.exponential(1.0, (2, 1000))
    assert abs(loss_attack_accuracy(same[0], same[1]).value - 50) < 6
    assert abs(loss_attack_auc(same[0], same[1]).value - 50) < 6
    # upside down (forget has *higher* loss than test): AUC well below 50
    assert loss_attack_auc(test, forget).value == pytest.approx(0.0)


def test_loss_attack_matches_sklearn_and_hand_auc():
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    forget, test = RNG.gamma(1, 0.5, 150), RNG.gamma(2, 0.6, 150)  # equal sizes: no subsample
    x = np.r_[forget, test].reshape(-1, 1)
    labels = np.r_[np.ones(150), np.zeros(150)]
    cv = StratifiedKFold(n_splits=10, shuffle=True, random_state=7)
    expected = 100 * cross_val_score(LogisticRegression(), x, labels, cv=cv).mean()
    res = loss_attack_accuracy(forget, test, seed=7)
    assert res.value == pytest.approx(expected) and res.details["folds"] == 10
    # AUC by counting pairs (Mann-Whitney): P(forget loss < test loss) + ties / 2
    diff = test[None, :] - forget[:, None]
    hand = 100 * ((diff > 0).mean() + 0.5 * (diff == 0).mean())
    assert loss_attack_auc(forget, test).value == pytest.approx(hand)


def test_scrub_loss_attack_hand_cases_and_recipe():
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedShuffleSplit, cross_val_score

    # forget losses equal to the non-members': no attack can do better than chance
    assert scrub_loss_attack(np.full(40, 0.1), np.full(40, 0.1)).value == pytest.approx(50.0)
    assert scrub_loss_attack(RNG.uniform(0, 0.01, 60), RNG.uniform(1, 3, 60)).value == pytest.approx(100.0)
    # SCRUB's recipe: clip to [-100, 100], LogisticRegression(), 5 stratified 90/10 shuffle splits
    forget, non = RNG.gamma(1, 0.5, 120), np.r_[RNG.gamma(2, 0.6, 119), np.inf]
    x = np.clip(np.r_[forget, non], -100, 100).reshape(-1, 1)
    labels = np.r_[np.ones(120), np.zeros(120)]
    cv = StratifiedShuffleSplit(n_splits=5, random_state=4)
    expected = 100 * cross_val_score(LogisticRegression(), x, labels, cv=cv, scoring="accuracy").mean()
    res = scrub_loss_attack(forget, non, seed=4)
    assert res.value == pytest.approx(expected) and res.details["splits"] == 5
    assert math.isnan(scrub_loss_attack(np.ones(4), np.ones(4)).value)  # a 10 % split of 8 is < 2


def test_loss_attack_balancing_is_seeded_and_tiny_data_never_crashes():
    forget, test = np.arange(5.0), np.arange(100.0, 140.0)
    x1, l1 = balanced_loss_set(forget, test, seed=3)
    x2, _ = balanced_loss_set(forget, test, seed=3)
    np.testing.assert_array_equal(x1, x2)
    assert len(x1) == 10 and l1.sum() == 5 and set(x1[:5, 0]) == set(forget)
    assert set(x1[5:, 0]) <= set(test)
    res = loss_attack_accuracy(np.arange(3.0), np.arange(10.0, 20.0))
    assert res.details["folds"] == 3 and "3-fold" in res.details["note"]
    assert not math.isnan(res.value)
    for f, t in [(np.array([0.1]), np.arange(5.0)), (np.zeros(0), np.arange(5.0))]:
        assert math.isnan(loss_attack_accuracy(f, t).value)
    assert math.isnan(loss_attack_auc(np.zeros(0), np.ones(3)).value)
    assert math.isnan(mia_efficacy(np.zeros(0), np.ones(3), np.ones(2)).value)
    assert math.isnan(entropy_attack(np.ones(3), np.ones(3), np.zeros(0)).value)
    nan_in = np.array([np.nan, 1.0, 2.0])
    assert "non-finite" in loss_attack_auc(nan_in, np.ones(3)).details["skipped"]


# --------------------------------------------------------------------------- divergence
def test_kl_js_closed_form_and_identity():
    ref = torch.log(torch.tensor([[0.5, 0.5]]))
    model = torch.log(torch.tensor([[0.25, 0.75]]))
    hand = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)  # KL(ref || model)
    assert kl_to_retrain(model, ref) == pytest.approx(hand)
    reverse = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)
    assert kl_per_sample(ref, model).item() == pytest.approx(reverse)  # argument order matters
    p, q = np.array([0.5, 0.5]), np.array([0.25, 0.75])
    m = (p + q) / 2
    js = 0.5 * (p * np.log(p / m)).sum() + 0.5 * (q * np.log(q / m)).sum()
    assert js_to_retrain(model, ref) == pytest.approx(js)
    x = torch.randn(20, 5)
    assert kl_to_retrain(x, x) == pytest.approx(0.0, abs=1e-12)
    assert js_to_retrain(x, x) == pytest.approx(0.0, abs=1e-12)
    # stable on extreme, disjoint outputs: finite KL, JS at its bound ln 2
    a, b = torch.tensor([[500.0, -500.0]]), torch.tensor([[-500.0, 500.0]])
    assert math.isfinite(kl_to_retrain(a, b))
    assert js_per_sample(a, b).item() == pytest.approx(math.log(2))


def test_js_is_not_ssds_jsdiv():
    """SSD's and Bad Teacher's `JSDiv(p, q)` is 0.5 F.kl_div(log p, m) + 0.5 F.kl_div(log q, m) with
    F.kl_div's default mean over all N x K entries: KL(m || p) and KL(m || q) (the reverse of
    Jensen-Shannon's KL(p || m), KL(q || m)), divided by N x K. Ours is the Jensen-Shannon
    divergence itself, averaged over samples: docs/evaluation.md keeps the two apart."""
    p = torch.tensor([[0.5, 0.5], [0.9, 0.1]], dtype=torch.float64)  # reference, (N=2, K=2)
    q = torch.tensor([[0.25, 0.75], [0.2, 0.8]], dtype=torch.float64)  # model
    m = (p + q) / 2
    js = (0.5 * (p * (p / m).log()).sum(1) + 0.5 * (q * (q / m).log()).sum(1)).mean().item()
    kl_div = torch.nn.functional.kl_div  # SSD calls it with the default reduction, "mean"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch's note that "mean" is not "batchmean"
        ssd = (0.5 * kl_div(p.log(), m) + 0.5 * kl_div(q.log(), m)).item()
    hand_ssd = ((m * (m / p).log()).sum() + (m * (m / q).log()).sum()).item() / (2 * 2 * 2)
    assert ssd == pytest.approx(hand_ssd)
    assert js_to_retrain(q.log(), p.log()) == pytest.approx(js)
    assert abs(js - ssd) > 0.3 * js  # another quantity, not a rounding difference


# -------------------------------------------------------------------------- sensitivity
def test_summarize_and_subsample():
    s = summarize(np.array([1.0, 2.0, 3.0, 4.0, 5.0]))
    assert s == {"mean": 3.0, "median": 3.0, "q25": 2.0, "q75": 4.0}
    assert summarize(np.zeros(0))["mean"] is None
    # a diverged model's overflowing gradients: statistics of the finite values, and the count
    assert summarize(np.array([1.0, np.inf, 3.0, np.nan])) == {
        "mean": 2.0, "median": 2.0, "q25": 1.5, "q75": 2.5, "nonfinite": 2}
    assert summarize(np.array([np.inf]))["median"] is None
    a, b = subsample_indices(1000, 10, seed=1), subsample_indices(1000, 10, seed=1)
    np.testing.assert_array_equal(a, b)
    assert len(set(a)) == 10 and (np.diff(a) > 0).all()
    np.testing.assert_array_equal(subsample_indices(4, 10, seed=1), np.arange(4))


def test_sensitivity_matches_functional_and_counts():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
    x, y = torch.randn(30, 6), torch.randint(0, 3, (30,))
    diag = sensitivity_diagnostics(model, {"a": (x, y), "b": (x[:4], y[:4])}, n_per_split=10)
    summ = diag.summary()
    assert summ["a"]["n"] == 10 and summ["b"]["n"] == 4 and summ["n_per_split"] == 10
    # the linear head: target sensitivity of sample i = || W2[y_i] diag(tanh') W1 ||
    idx = torch.as_tensor(subsample_indices(30, 10, 0))
    xi = x[idx].clone().requires_grad_(True)
    out = model(xi).gather(1, y[idx].view(-1, 1)).sum()
    (g,) = torch.autograd.grad(out, xi)
    np.testing.assert_allclose(diag.values["a"]["target"], g.norm(dim=1).numpy(), rtol=1e-5)
    with pytest.raises(ConfigError):
        sensitivity_diagnostics(model, {"a": (x, y)}, n_per_split=0)


def test_memorised_samples_are_more_sensitive_than_unseen():
    """A small MLP forced to memorise 20 digits (random labels, so only memorisation can fit
    them) is more sensitive, in the memorised class, at those digits than at unseen ones."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.data / 16.0, dtype=torch.float32)
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(x), generator=g)
    tr, te = perm[:20], perm[20:220]
    y_tr = torch.randint(0, 10, (20,), generator=g)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(),
                          nn.Linear(64, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(300):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x[tr]), y_tr).backward()
        opt.step()
    summ = sensitivity_diagnostics(
        model, {"trained": (x[tr], y_tr), "unseen": (x[te], torch.as_tensor(d.target)[te])}
    ).summary()
    assert summ["trained"]["target"]["median"] > 1.1 * summ["unseen"]["target"]["median"]
    assert summ["trained"]["target"]["mean"] > summ["unseen"]["target"]["mean"]


def test_plot_histograms(tmp_path, monkeypatch):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 3))
    diag = sensitivity_diagnostics(model, {"a": (torch.randn(8, 6), torch.randint(0, 3, (8,)))})
    pytest.importorskip("matplotlib")
    fig = plot_sensitivity_histograms(diag, tmp_path / "s.png", title="t")
    assert fig is not None and (tmp_path / "s.png").stat().st_size > 0
    import builtins

    real_import = builtins.__import__

    def no_mpl(name, *a, **k):
        if name.startswith("matplotlib"):
            raise ImportError("no matplotlib")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_mpl)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        assert plot_sensitivity_histograms(diag) is None
    assert any("matplotlib" in str(x.message) for x in w)

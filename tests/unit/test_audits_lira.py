"""The LiRA audit: Gaussian fits, scores and ROC numbers on cases with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mumis.audits import GaussianFit, fit_gaussians, lira_scores, roc_summary, tpr_at_fpr, ulira
from mumis.audits.lira import in_mask_per_example, in_mask_whole_set
from mumis.exceptions import ConfigError, DataError


def test_fit_gaussians_by_hand() -> None:
    # example 0: IN 1, 3 (mean 2, sd 1), OUT -1, -3 (mean -2, sd 1); example 1: IN 0, 4 (sd 2), OUT 0, 0 (sd 0)
    confs = np.array([[1.0, 0.0], [-1.0, 0.0], [3.0, 4.0], [-3.0, 0.0]])
    mask = np.array([[True, True], [False, False], [True, True], [False, False]])
    per = fit_gaussians(confs, mask, variance="per_example")
    assert per.mu_in.tolist() == [2.0, 2.0] and per.mu_out.tolist() == [-2.0, 0.0]
    assert per.sigma_in.tolist() == [1.0, 2.0]
    assert per.sigma_out[0] == 1.0 and per.sigma_out[1] == pytest.approx(1e-6)  # floored, not 0
    glob = fit_gaussians(confs, mask, variance="global")
    assert glob.sigma_in.tolist() == [1.5, 1.5]  # median of the per-example sds
    assert glob.sigma_out.tolist() == [0.5, 0.5]
    with pytest.raises(DataError, match="at least 2 IN and 2 OUT"):
        fit_gaussians(confs[:3], mask[:3])
    with pytest.raises(ConfigError, match="variance"):
        fit_gaussians(confs, mask, variance="median")  # type: ignore[arg-type]


def test_lira_scores_by_hand() -> None:
    fit = GaussianFit(mu_in=np.array([2.0, 0.0]), sigma_in=np.array([1.0, 1.0]),
                      mu_out=np.array([-2.0, 0.0]), sigma_out=np.array([1.0, 2.0]))
    s = lira_scores(np.array([[0.0, 0.0], [1.0, 0.0]]), fit)
    # log N(0; 2, 1) - log N(0; -2, 1) = 0; at 1: -0.5 + 4.5 = 4; example 1 at 0: log(2 / 1)
    assert s[:, 0].tolist() == pytest.approx([0.0, 4.0])
    assert s[:, 1].tolist() == pytest.approx([math.log(2.0)] * 2)


def test_tpr_at_fpr_and_auc_by_hand() -> None:
    pos, neg = np.array([3.0, 4.0, 5.0, 6.0]), np.array([0.0, 1.0, 2.0, 3.5])
    assert tpr_at_fpr(pos, neg, 0.0) == 0.75  # above 3.5: 4, 5, 6
    assert tpr_at_fpr(pos, neg, 0.25) == 1.0  # at 3: every positive, one negative
    r = roc_summary(pos, neg)
    assert r["auc"] == pytest.approx(100 * 15 / 16)  # only (3 vs 3.5) is ordered wrongly
    assert r["tpr_at_1pct_fpr"] == 75.0 and r["resolved_at_1pct_fpr"] is False  # 4 negatives < 100
    assert tpr_at_fpr(np.array([1.0, 1.0]), np.array([1.0, 1.0]), 0.5) == 0.0  # ties move together
    with pytest.raises(DataError, match="empty side"):
        roc_summary(pos, np.zeros(0))


def _shadows(rng: np.random.Generator, k: int, f: int, gap: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mu_out = rng.normal(0.0, 3.0, size=f)  # each example its own level
    mask = in_mask_per_example(k, f, rng)
    confs = mu_out + gap * mask + rng.normal(size=(k, f))
    return confs, mask, mu_out


def test_known_gaussians_give_the_known_roc() -> None:
    """IN ~ N(mu + 2, 1), OUT ~ N(mu, 1): LiRA's AUC for IN vs OUT targets is Phi(2 / sqrt 2) =
    92.1 %; targets that are all OUT (retrained vs retrained) give AUC ~50 and TPR ~ FPR."""
    rng = np.random.default_rng(0)
    k, f = 64, 400
    confs, mask, mu = _shadows(rng, k, f, gap=2.0)
    fit = fit_gaussians(confs, mask, variance="global")
    assert np.median(fit.sigma_in) == pytest.approx(1.0, abs=0.1)
    assert np.abs(fit.mu_in - fit.mu_out - 2.0).mean() < 0.3
    member = mu + 2.0 + rng.normal(size=(4, f))
    out_a = mu + rng.normal(size=(4, f))
    out_b = mu + rng.normal(size=(4, f))
    phi = 0.5 * (1 + math.erf((2 / math.sqrt(2)) / math.sqrt(2)))
    caught = ulira(member, out_a, fit)
    assert caught["auc"] == pytest.approx(100 * phi, abs=3.0)
    assert caught["tpr_at_1pct_fpr"] > 15.0
    floor = ulira(out_b, out_a, fit)
    assert floor["auc"] == pytest.approx(50.0, abs=4.0)
    assert floor["tpr_at_1pct_fpr"] < 4.0 and floor["resolved_at_1pct_fpr"]
    assert floor["n_pos"] == floor["n_neg"] == 4 * f
    assert floor["side"] == "above" and floor["tpr_at_1pct_fpr_best"] == floor["tpr_at_1pct_fpr"]
    # outputs pushed further from IN than a retrained model's: told apart on the other side
    over = ulira(mu - 3.0 + rng.normal(size=(4, f)), out_a, fit)
    assert over["auc"] < 10.0 and over["side"] == "below"
    assert over["tpr_at_1pct_fpr"] < 1.0 < 20.0 < over["tpr_at_1pct_fpr_best"] == over["tpr_at_1pct_fpr_below"]


def test_masks_are_balanced_on_every_prefix() -> None:
    m16 = in_mask_per_example(16, 50, np.random.default_rng(3))
    m8 = in_mask_per_example(8, 50, np.random.default_rng(3))
    assert (m16[:8] == m8).all()  # the first 8 of 16 shadows are the 8-shadow audit
    for k in (2, 4, 8, 16):
        assert (m16[:k].sum(0) == k // 2).all()
    assert m16.any(1).all() and (~m16).any(1).all()  # every shadow holds some, misses some
    s = in_mask_whole_set(6, 3)
    assert s[:, 0].tolist() == [True, False] * 3 and (s == s[:, :1]).all()
    for bad in (3, 2, 7):
        with pytest.raises(ConfigError, match="even number"):
            in_mask_per_example(bad, 5, np.random.default_rng(0))

"""The forget-vs-unseen loss rank test: U against a pairwise count, p against SciPy's Mann-Whitney
(normal approximation, tie correction, no continuity correction), the power statement by simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mumis.metrics import loss_attack_auc
from mumis.metrics.rank_test import detectable_auc_shift, loss_rank_test


def _pairwise_auc(f: np.ndarray, u: np.ndarray) -> float:
    less = (f[:, None] < u[None, :]).sum()
    ties = (f[:, None] == u[None, :]).sum()
    return 100.0 * (less + 0.5 * ties) / (len(f) * len(u))


def test_hand_computed_case() -> None:
    # forget losses 1, 2; unseen 3, 4, 5: every forget loss is lower -> AUC 100, U = 0
    r = loss_rank_test(np.array([1.0, 2.0]), np.array([3.0, 4.0, 5.0]))
    assert r["auc"] == 100.0
    # U = 0, mean 3, var = 2*3*6/12 = 3 -> z = -sqrt(3), p = 2 * Phi(-1.732) = 0.0833
    assert r["p_value"] == pytest.approx(2 * 0.5 * math.erfc(math.sqrt(3) / math.sqrt(2)), abs=1e-12)
    assert r["approximate"] is True and r["indistinguishable"] is True


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auc_and_p_match_pairwise_count_and_scipy(seed: int) -> None:
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(seed)
    f = np.round(rng.gamma(2.0, 0.5, size=40), 1)  # rounded: ties on purpose
    u = np.round(rng.gamma(2.0, 0.6, size=300), 1)
    r = loss_rank_test(f, u)
    assert r["auc"] == pytest.approx(_pairwise_auc(f, u), abs=1e-9)
    assert r["auc"] == pytest.approx(loss_attack_auc(f, u).value, abs=1e-9)
    ref = scipy_stats.mannwhitneyu(f, u, alternative="two-sided", method="asymptotic", use_continuity=False)
    assert r["p_value"] == pytest.approx(ref.pvalue, rel=1e-9)


def test_detectable_shift_formula_and_the_50_image_request() -> None:
    # (1.96 + 0.8416) * sqrt(651 / (12 * 50 * 600)) = 0.1191
    assert detectable_auc_shift(50, 600) == pytest.approx(11.91, abs=0.01)
    assert detectable_auc_shift(1200, 2000) < detectable_auc_shift(50, 600)
    assert math.isnan(detectable_auc_shift(0, 10))


def test_the_stated_power_holds_by_simulation() -> None:
    """A shift of the AUC by the detectable amount is found in about `power` of the draws, and the
    null is rejected in about `alpha` of them."""
    rng = np.random.default_rng(0)
    n1, n2 = 50, 600
    shift = detectable_auc_shift(n1, n2) / 100.0
    # normal losses with a mean shift d have AUC Phi(d / sqrt(2)); solve for d
    from statistics import NormalDist

    d = math.sqrt(2) * NormalDist().inv_cdf(0.5 + shift)
    hits = [loss_rank_test(rng.normal(0, 1, n1), rng.normal(d, 1, n2))["p_value"] < 0.05 for _ in range(400)]
    nulls = [loss_rank_test(rng.normal(0, 1, n1), rng.normal(0, 1, n2))["p_value"] < 0.05 for _ in range(400)]
    assert 0.72 <= np.mean(hits) <= 0.88
    assert np.mean(nulls) <= 0.09


def test_degenerate_inputs_give_nan_with_a_reason() -> None:
    r = loss_rank_test(np.array([]), np.array([1.0]))
    assert math.isnan(r["p_value"]) and r["reason"] == "an empty side" and r["indistinguishable"] is None
    r = loss_rank_test(np.array([np.inf]), np.array([1.0]))
    assert r["reason"] == "non-finite losses"
    same = loss_rank_test(np.ones(20), np.ones(30))
    assert same["auc"] == 50.0 and same["p_value"] == 1.0

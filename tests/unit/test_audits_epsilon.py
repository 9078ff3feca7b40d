"""The NeurIPS 2023 challenge's epsilon score: hand-computed rules, examples and aggregation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mumis.audits import (
    bin_points,
    challenge_score,
    example_epsilon,
    example_epsilons,
    forget_quality,
    logit_scaled_confidence,
    rule_epsilons,
)
from mumis.audits.epsilon import DELTA, EPSILON_CAP, double_threshold_rates, single_threshold_rates
from mumis.exceptions import ConfigError, DataError


def test_logit_scaled_confidence_hand_case_and_extremes() -> None:
    # p_0 = e^2 / (e^2 + 2): log(p / (1 - p)) = log(e^2 / 2) = 2 - log 2
    got = logit_scaled_confidence(torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]]), torch.tensor([0, 2]))
    assert got == pytest.approx([2.0 - math.log(2.0), -math.log(2.0)], abs=1e-12)
    # confident outputs stay finite and exact (the kit's 1e-45 floor would stop at ~103.6)
    big = logit_scaled_confidence(torch.tensor([[1000.0, 0.0], [1000.0, 0.0]]), torch.tensor([0, 1]))
    assert big == pytest.approx([1000.0, -1000.0])
    with pytest.raises(DataError, match="labels must lie"):
        logit_scaled_confidence(torch.zeros(2, 3), torch.tensor([0, 3]))


def test_rule_epsilons_by_hand() -> None:
    eps = rule_epsilons(np.array([0.25, 0.0, 0.0, 0.5, 1.0]), np.array([0.5, 0.0, 0.25, 0.5, 0.5]))
    # (0.25, 0.5): max(log(0.74999/0.5), log(0.49999/0.25)) = log(1.99996)
    assert eps[0] == pytest.approx(math.log((1 - DELTA - 0.5) / 0.25))
    assert eps[1] == math.inf  # perfect separation
    assert math.isnan(eps[2])  # one rate 0: dropped, too few models to estimate it
    assert eps[3] == 0.0  # FPR + FNR = 1: a coin, no bound
    assert eps[4] == 0.0  # FPR = 1: log of a negative on one side, the other side < 0 -> 0


def test_example_epsilon_hand_case() -> None:
    # u = 0,1,2,3 and r = 2.5,3.5,4.5,5.5 (spacing >= 0.5: the 0.01 grid resolves every decision).
    # Best rule with both rates > 0: FPR = FNR = 1/4 (threshold in (2.5, 3]; or the interval
    # [1, 3] around u), epsilon = log((1 - delta - 1/4) / (1/4)).
    u = np.array([0.0, 1.0, 2.0, 3.0])
    r = np.array([2.5, 3.5, 4.5, 5.5])
    want = math.log((1 - DELTA - 0.25) / 0.25)
    assert example_epsilon(u, r) == pytest.approx(want, rel=1e-9)
    assert example_epsilon(r, u) == pytest.approx(want, rel=1e-9)  # symmetric in the two sides
    # each family on its own finds the same best pair
    for fam in (single_threshold_rates, double_threshold_rates):
        f, n = fam(r, u)
        e = rule_epsilons(f, n)
        assert np.nanmax(e[np.isfinite(e)]) == pytest.approx(want, rel=1e-9)
    assert (np.asarray(double_threshold_rates(r, u)) >= 0).all()  # empty intervals count 0, never < 0


def test_example_epsilon_special_cases() -> None:
    assert example_epsilon(np.arange(4.0), np.arange(4.0) + 10) == EPSILON_CAP  # separated: inf -> cap
    assert example_epsilon(np.array([0, 0, 0, 0.001]), np.arange(4.0)) == EPSILON_CAP  # peaky side
    assert example_epsilon(np.full(4, 1.5), np.full(4, 1.5)) == 0.0  # identical point masses
    assert example_epsilon(np.full(4, 1.5), np.full(4, 2.5)) == EPSILON_CAP  # distinct point masses
    x = np.array([0.0, 0.7, 1.3, 2.9])
    assert example_epsilon(x, x.copy()) == 0.0  # the same outputs: no rule beats a coin


def test_bins_and_forget_quality_by_hand() -> None:
    # N = 8: ceil(log 7) = 2 -> bins [0, .5) 1, [.5, 1) 1/2, [1, 1.5) 1/4, [1.5, 2) 1/8, beyond 0
    eps = np.array([0.0, 0.49, 0.5, 1.2, 1.99, 2.0, 50.0])
    assert bin_points(eps, 8).tolist() == [1, 1, 0.5, 0.25, 0.125, 0, 0]
    assert forget_quality(eps, 8) == pytest.approx((1 + 1 + 0.5 + 0.25 + 0.125) / 7)
    # N = 16: ceil(log 15) = 3 -> six bins; N = 3: ceil(log 2) = 1 -> two
    assert bin_points(np.array([2.6, 3.0]), 16).tolist() == [1 / 32, 0]
    assert bin_points(np.array([0.69, 1.0]), 3).tolist() == [0.5, 0]
    with pytest.raises(ConfigError, match="at least 3"):
        bin_points(eps, 2)


def test_challenge_score_utility_terms() -> None:
    rng = np.random.default_rng(0)
    c = rng.normal(size=(4, 5))
    res = challenge_score(c, c.copy(), unlearned_retain_acc=[90, 90, 90, 90], retrained_retain_acc=[100] * 4,
                          unlearned_test_acc=[80] * 4, retrained_test_acc=[100] * 4)
    assert res.epsilons.tolist() == [0.0] * 5 and res.forget_quality == 1.0
    assert res.final_score == pytest.approx(0.9 * 0.8)
    s = res.summary()
    assert s["bin_counts"] == {"1": 5} and s["epsilon_capped_frac"] == 0.0
    with pytest.raises(DataError, match="one shape"):
        challenge_score(c, c[:, :3], unlearned_retain_acc=[1], retrained_retain_acc=[1],
                        unlearned_test_acc=[1], retrained_test_acc=[1])


def test_same_distribution_scores_at_the_floor_and_a_shift_below_it() -> None:
    """Two sets of models drawn alike (retrained vs retrained) never hit the cap and keep the
    highest F; shifting one set's outputs by 2 sd lowers F several-fold. With 16 models the
    maximum over thousands of rules finds epsilon ~1.6 even between equal distributions, so the
    floor is F ~0.17, not 1 (docs/membership-audits.md): the score must be read beside it."""
    rng = np.random.default_rng(1)
    n, f = 16, 100
    base = rng.normal(0, 3, size=(1, f))  # each example its own mean, shared by both sets
    a = base + rng.normal(size=(n, f))
    b = base + rng.normal(size=(n, f))
    same = example_epsilons(a, b)
    shifted = example_epsilons(a + 2.0, b)
    assert (same < EPSILON_CAP).all() and np.median(same) < np.median(shifted)
    assert forget_quality(same, n) > 0.12
    assert forget_quality(shifted, n) < 0.08
    assert forget_quality(same, n) > 2.5 * forget_quality(shifted, n)

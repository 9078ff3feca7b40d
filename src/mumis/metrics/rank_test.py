"""Can anyone tell the forget samples' losses from unseen samples' losses? A two-sample rank test
with its power stated.

The Mann-Whitney U statistic of the forget losses against the unseen (holdout or test) losses is
the loss-threshold attack's AUC times n_forget * n_unseen, so "the attack's AUC is 50 %" and "the
two loss distributions are the same" are one null hypothesis. The p-value uses the normal
approximation of U with the tie correction (exact enough from about 10 samples a side; the
result says when a side is smaller). A p-value above alpha alone says little when the forget set
is small, so the result also states the power: the smallest departure of the AUC from 50 % that
this test, with these sample sizes, detects with probability `power` at level `alpha`
(normal approximation, null variance). A 50-image request against 600 unseen images detects a
shift of about 12 AUC points, not less: "indistinguishable" means "not more than that apart".
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any

import numpy as np

#: Below this many samples on a side the normal approximation is rough; the result says so.
MIN_SAMPLES = 10


def detectable_auc_shift(n_forget: int, n_unseen: int, *, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest |AUC - 50| (percentage points) a two-sided level-`alpha` rank test with these
    sample sizes detects with probability `power` (normal approximation, null variance
    (n1 + n2 + 1) / (12 n1 n2) of the AUC)."""
    if n_forget < 1 or n_unseen < 1:
        return float("nan")
    z = NormalDist().inv_cdf(1 - alpha / 2) + NormalDist().inv_cdf(power)
    return 100.0 * z * math.sqrt((n_forget + n_unseen + 1) / (12.0 * n_forget * n_unseen))


def loss_rank_test(forget_loss: np.ndarray, unseen_loss: np.ndarray, *, alpha: float = 0.05,
                   power: float = 0.8) -> dict[str, Any]:
    """Mann-Whitney U test of forget vs unseen per-sample losses (two-sided), with its power.

    Returns:
        auc: P(a forget loss < an unseen loss) + half the ties, in percent (the loss attack's AUC;
            50 = the same distribution, above 50 = the forget samples still fit better);
        p_value: two-sided, normal approximation with tie correction (NaN for an empty side or
            non-finite losses, with `reason`);
        alpha, power, detectable_auc_shift: the test's level, the stated power and the smallest
            |auc - 50| it detects with that power at these sizes;
        indistinguishable: p_value >= alpha (a statement bounded by detectable_auc_shift);
        n_forget, n_unseen; approximate: True when a side has fewer than MIN_SAMPLES samples.
    """
    f = np.asarray(forget_loss, dtype=np.float64).ravel()
    u = np.asarray(unseen_loss, dtype=np.float64).ravel()
    n1, n2 = len(f), len(u)
    out: dict[str, Any] = {"test": "Mann-Whitney U, two-sided, normal approximation with tie correction",
                           "n_forget": n1, "n_unseen": n2, "alpha": alpha, "power": power,
                           "detectable_auc_shift": detectable_auc_shift(n1, n2, alpha=alpha, power=power),
                           "approximate": min(n1, n2) < MIN_SAMPLES}
    if n1 == 0 or n2 == 0 or not (np.isfinite(f).all() and np.isfinite(u).all()):
        return {**out, "auc": float("nan"), "p_value": float("nan"), "indistinguishable": None,
                "reason": "an empty side" if n1 == 0 or n2 == 0 else "non-finite losses"}
    both = np.concatenate([f, u])
    ranks = _average_ranks(both)
    # U counts the pairs where the forget loss is the LARGER one; the AUC of -loss counts the others
    u_stat = float(ranks[:n1].sum()) - n1 * (n1 + 1) / 2.0
    auc = 1.0 - u_stat / (n1 * n2)
    _, counts = np.unique(both, return_counts=True)
    n = n1 + n2
    ties = float((counts.astype(np.float64) ** 3 - counts).sum())
    var = n1 * n2 / 12.0 * ((n + 1) - ties / (n * (n - 1))) if n > 1 else 0.0
    if var <= 0:  # every loss equal: nothing separates the two sides
        p = 1.0
    else:
        z = (u_stat - n1 * n2 / 2.0) / math.sqrt(var)
        # erfc, not 1 - cdf: far in the tail (fully separated sides) 1 - cdf rounds to 0
        p = min(1.0, math.erfc(abs(z) / math.sqrt(2.0)))
    return {**out, "auc": 100.0 * auc, "p_value": p, "indistinguishable": bool(p >= alpha)}


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given their average rank."""
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.arange(1, len(x) + 1, dtype=np.float64)
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return sums[inverse] / counts[inverse]

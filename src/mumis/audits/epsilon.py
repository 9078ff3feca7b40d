"""The forgetting-quality score of the NeurIPS 2023 Machine Unlearning challenge, on small scales.

The challenge (Triantafillou et al., "Are we making progress in unlearning?", arXiv 2406.09073;
scorer: `metric.py` and `main.py` of google-deepmind/unlearning_evaluation) asks whether an
attacker who sees one model's output on one forget example can tell an unlearned model from a
retrained one. It reads, for every forget example, the logit-scaled confidence of its true class
(`common.logit_scaled_confidence`) under N unlearned and N retrained models, then:

1. *Per-example epsilon.* The side whose median is larger is "positive". Two families of decision
   rules give (FPR, FNR) pairs: one threshold ("positive when conf >= t", t on a grid of 100 per
   unit between the smallest and the largest of the 2N values) and two thresholds ("positive when
   l <= conf <= r" around the peakier of the two distributions: r on a grid over [min + width - 2,
   max + 2] of that distribution, width = its range, and l on 400 points within 2 of r - width).
   Each rule's epsilon is the (epsilon, delta)-indistinguishability bound
   max(log(1 - delta - FPR) - log FNR, log(1 - delta - FNR) - log FPR), floored at 0; a rule with
   FPR = FNR = 0 (perfect separation) gives infinity; a rule with exactly one of them 0 is dropped
   (too few models to estimate it). The example's epsilon is the largest over the rules, capped at
   50; when one side's range is below 1 % of the other's (one distribution nearly a point) it is
   the cap at once. delta = 1e-5.
2. *Forgetting quality F.* Epsilons are binned in steps of 0.5 from 0 up to ceil(log(N - 1)) (the
   largest finite epsilon N models can show is log(N - 1)); bin k is worth 2^-k points, anything
   beyond the last bin 0. F is the mean over forget examples: 1 = indistinguishable, 0 = every
   example told apart.
3. *Final score* = F x (mean retain accuracy of the unlearned models / that of the retrained ones)
   x (the same ratio for test accuracy).

Where this differs from the challenge's scorer:
- N: the challenge trained 512 retrained and 512 unlearned models; here N is a setting (3 or more;
  about 8-32 on a CPU). Few models limit the resolution: epsilons come in steps of log-ratios of
  multiples of 1/N, F has only 2 * ceil(log(N - 1)) bins, and two sets of N *retrained* models
  already score below 1 by chance (the audit reports that floor; read F beside it).
- delta is fixed at the kit's 1e-5; no delta is chosen for the number of forget examples or
  models as a DP analysis would.
- The confidence is computed without the kit's 1e-45 floor (equal below |conf| ~ 103).
- Both confidence ranges 0 (every model identical): the kit has no rule left and stops with an
  assertion; here epsilon is 0 when the two values agree and the cap when they differ. If every
  rule is dropped the epsilon is 0 (no rule can tell the sides apart with these models).
- The challenge unlearned one original N times (the method's randomness only); `mumis audit`
  unlearns N originals by default (training randomness too) and offers the challenge's protocol.
- The test-accuracy ratio uses the whole test set, as the kit (for class-wise forgetting it
  includes the forgotten class, on which both models should be near 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..exceptions import ConfigError, DataError

DELTA = 1e-5
EPSILON_CAP = 50.0
THRESHOLDS_PER_UNIT = 100
BUFFER = 2.0  # how far the two-threshold rule's thresholds range beyond the peaky distribution
BIN_WIDTH = 0.5
MIN_MODELS = 3  # with 2 models ceil(log(1)) = 0: no bin, F is always 0


def _count_ge(sorted_vals: np.ndarray, t: np.ndarray) -> np.ndarray:
    return len(sorted_vals) - np.searchsorted(sorted_vals, t, side="left")


def _count_between(sorted_vals: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """How many values lie in [lo, hi]; 0 for an empty interval (lo > hi: the grid has such pairs
    when the peaky side's range is below 2)."""
    inside = np.searchsorted(sorted_vals, hi, side="right") - np.searchsorted(sorted_vals, lo, side="left")
    return np.maximum(inside, 0)


def _grid(lo: float, hi: float) -> np.ndarray:
    return np.linspace(lo, hi, int(math.ceil((hi - lo) * THRESHOLDS_PER_UNIT)))


def _single_counts(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    both = np.concatenate([pos, neg])
    t = _grid(float(both.min()), float(both.max()))
    return _count_ge(np.sort(pos), t), _count_ge(np.sort(neg), t)


def _double_counts(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # positive = the peakier side (the rule predicts "inside the interval" for it)
    if np.ptp(pos) >= np.ptp(neg):
        pos, neg = neg, pos
    width = float(np.ptp(pos))
    right = _grid(float(pos.min()) + width - BUFFER, float(pos.max()) + BUFFER)
    offsets = np.linspace(-width - BUFFER, -width + BUFFER, int(math.ceil(2 * BUFFER * THRESHOLDS_PER_UNIT)))
    lo = (right[:, None] + offsets[None, :]).ravel()
    hi = np.repeat(right, len(offsets))
    return _count_between(np.sort(pos), lo, hi), _count_between(np.sort(neg), lo, hi)


def single_threshold_rates(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, FNR) of "positive when conf >= t" for t on the challenge's grid over all values."""
    tp, fp = _single_counts(pos, neg)
    return fp / len(neg), 1.0 - tp / len(pos)


def double_threshold_rates(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, FNR) of "positive when l <= conf <= r", positive = the peakier distribution.

    The grids are the challenge's: r from min + width - 2 to max + 2 of the peaky side (100 per
    unit), and for each r, 400 values of l from r - width - 2 to r - width + 2. (The roles of
    the two sides may swap; the epsilon bound is symmetric in FPR and FNR.)
    """
    tp, fp = _double_counts(pos, neg)
    if np.ptp(pos) >= np.ptp(neg):
        pos, neg = neg, pos
    return fp / len(neg), 1.0 - tp / len(pos)


def _distinct_rates(tp: np.ndarray, fp: np.ndarray, n_pos: int, n_neg: int) -> tuple[np.ndarray, np.ndarray]:
    """The distinct (FPR, FNR) pairs among the rules' counts (160,000 rules give a few dozen)."""
    seen = np.zeros((n_pos + 1) * (n_neg + 1), dtype=bool)
    seen[tp * (n_neg + 1) + fp] = True
    code = np.flatnonzero(seen)
    return (code % (n_neg + 1)) / n_neg, 1.0 - (code // (n_neg + 1)) / n_pos


def rule_epsilons(fpr: np.ndarray, fnr: np.ndarray, delta: float = DELTA) -> np.ndarray:
    """Epsilon of each decision rule from its (FPR, FNR): inf for a perfect separation, NaN for a
    rule with exactly one rate 0 (dropped), else the larger of the two one-sided bounds, >= 0."""
    fpr = np.asarray(fpr, dtype=np.float64)
    fnr = np.asarray(fnr, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.log(1.0 - delta - fpr) - np.log(fnr)
        b = np.log(1.0 - delta - fnr) - np.log(fpr)
    # log of a negative number (a rate of 1) is NaN: that side gives no bound
    bound = np.fmax(a, b)  # NaN only when both sides are NaN
    eps = np.clip(bound, 0.0, None)
    both_zero = (fpr == 0) & (fnr == 0)
    one_zero = (fpr * fnr == 0) & ~both_zero
    eps = np.where(both_zero, np.inf, eps)
    return np.where(one_zero, np.nan, eps)


def example_epsilon(unlearned: np.ndarray, retrained: np.ndarray, *, delta: float = DELTA,
                    cap: float = EPSILON_CAP) -> float:
    """The challenge's epsilon of one forget example from its confidences under each model set.

    Args:
        unlearned: (N,) confidences of the example under the unlearned models.
        retrained: (M,) the same under the retrained models.
    Returns:
        Epsilon in [0, cap]; 0 = no rule tells the two sets apart.
    """
    u = np.asarray(unlearned, dtype=np.float64).ravel()
    r = np.asarray(retrained, dtype=np.float64).ravel()
    pos, neg = (r, u) if np.median(r) > np.median(u) else (u, r)
    spans = sorted([float(np.ptp(pos)), float(np.ptp(neg))])
    if spans[1] == 0.0:  # both sets constant: equal or perfectly apart
        return 0.0 if pos[0] == neg[0] else cap
    if spans[0] / spans[1] < 0.01:  # one side nearly a point mass: the challenge gives the cap
        return cap
    # every rule's (FPR, FNR) as counts; the maximum only needs each distinct pair once
    tp1, fp1 = _single_counts(pos, neg)
    tp2, fp2 = _double_counts(pos, neg)
    flip = np.ptp(pos) >= np.ptp(neg)  # the two-threshold rule's positive is the peakier side
    n_p, n_n = (len(neg), len(pos)) if flip else (len(pos), len(neg))
    fpr1, fnr1 = _distinct_rates(tp1, fp1, len(pos), len(neg))
    fpr2, fnr2 = _distinct_rates(tp2, fp2, n_p, n_n)
    eps = rule_epsilons(np.concatenate([fpr1, fpr2]), np.concatenate([fnr1, fnr2]), delta)
    kept = eps[~np.isnan(eps)]
    if len(kept) == 0:
        return 0.0
    return float(min(kept.max(), cap))


def example_epsilons(unlearned: np.ndarray, retrained: np.ndarray, *, delta: float = DELTA) -> np.ndarray:
    """Per-example epsilons from (N, F) confidences of N unlearned and N retrained models."""
    u, r = _check_confs(unlearned, retrained)
    return np.array([example_epsilon(u[:, j], r[:, j], delta=delta) for j in range(u.shape[1])])


def bin_points(epsilons: np.ndarray, n_models: int) -> np.ndarray:
    """Each example's points: 2^-k for an epsilon in bin k = [k/2, (k+1)/2), for the bins that end
    at or below ceil(log(n_models - 1)); 0 beyond them."""
    if n_models < MIN_MODELS:
        raise ConfigError(f"the epsilon score needs at least {MIN_MODELS} models per side, got {n_models}")
    top = math.ceil(math.log(n_models - 1))
    n_bins = int(top / BIN_WIDTH)
    k = np.floor(np.asarray(epsilons, dtype=np.float64) / BIN_WIDTH)
    return np.where(k < n_bins, np.power(2.0, -np.minimum(k, n_bins)), 0.0)


def forget_quality(epsilons: np.ndarray, n_models: int) -> float:
    """F: the mean of `bin_points` over the forget examples (1 = indistinguishable from retraining)."""
    eps = np.asarray(epsilons, dtype=np.float64)
    if eps.size == 0:
        raise DataError("no forget examples to score")
    return float(bin_points(eps, n_models).mean())


@dataclass
class EpsilonResult:
    """The challenge's score of one set of unlearned models against the retrained ones."""

    forget_quality: float
    final_score: float
    retain_ratio: float
    test_ratio: float
    n_models: int
    epsilons: np.ndarray  # (F,)
    details: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        eps = self.epsilons
        finite = eps[eps < EPSILON_CAP]
        return {
            "forget_quality": self.forget_quality, "final_score": self.final_score,
            "retain_ratio": self.retain_ratio, "test_ratio": self.test_ratio, "n_models": self.n_models,
            "epsilon_mean": float(eps.mean()), "epsilon_median": float(np.median(eps)),
            "epsilon_capped_frac": float((eps >= EPSILON_CAP).mean()),
            "epsilon_mean_uncapped": float(finite.mean()) if len(finite) else math.nan,
            "bin_counts": _bin_counts(eps, self.n_models), **self.details,
        }


def _bin_counts(eps: np.ndarray, n_models: int) -> dict[str, int]:
    pts = bin_points(eps, n_models)
    return {f"{p:g}": int((pts == p).sum()) for p in sorted(set(pts.tolist()), reverse=True)}


def challenge_score(
    unlearned_confs: np.ndarray,
    retrained_confs: np.ndarray,
    *,
    unlearned_retain_acc: np.ndarray | list[float],
    retrained_retain_acc: np.ndarray | list[float],
    unlearned_test_acc: np.ndarray | list[float],
    retrained_test_acc: np.ndarray | list[float],
    delta: float = DELTA,
) -> EpsilonResult:
    """Forgetting quality and final score of N unlearned models against N retrained ones.

    Args:
        unlearned_confs, retrained_confs: (N, F) logit-scaled confidences of the F forget
            examples under each model (rows: models).
        *_acc: (N,) accuracies of each model (any unit; only ratios of means are used).
    Returns:
        EpsilonResult; `final_score` = F x retain ratio x test ratio, as the challenge.
    Raises:
        DataError: shapes that differ, fewer than 3 models, no example, non-finite values.
    """
    u, r = _check_confs(unlearned_confs, retrained_confs)
    eps = example_epsilons(u, r, delta=delta)
    fq = forget_quality(eps, u.shape[0])
    ra = _ratio(unlearned_retain_acc, retrained_retain_acc, "retain")
    ta = _ratio(unlearned_test_acc, retrained_test_acc, "test")
    return EpsilonResult(forget_quality=fq, final_score=fq * ra * ta, retain_ratio=ra, test_ratio=ta,
                         n_models=int(u.shape[0]), epsilons=eps, details={"delta": delta})


def _ratio(num: Any, den: Any, what: str) -> float:
    a, b = float(np.mean(num)), float(np.mean(den))
    if not (math.isfinite(a) and math.isfinite(b)) or b <= 0:
        raise DataError(f"{what} accuracies must be finite with a positive retrained mean; got {a} / {b}")
    return a / b


def _check_confs(u: Any, r: Any) -> tuple[np.ndarray, np.ndarray]:
    u = np.asarray(u, dtype=np.float64)
    r = np.asarray(r, dtype=np.float64)
    if u.ndim != 2 or u.shape != r.shape:
        raise DataError(f"confidences must be two (N models, F examples) arrays of one shape; got "
                        f"{u.shape} and {r.shape}")
    if u.shape[0] < MIN_MODELS or u.shape[1] == 0:
        raise DataError(f"the epsilon score needs at least {MIN_MODELS} models per side and one forget "
                        f"example; got {u.shape[0]} models and {u.shape[1]} examples")
    if not (np.isfinite(u).all() and np.isfinite(r).all()):
        raise DataError("confidences hold inf or NaN (a diverged model?); they must be finite")
    return u, r

"""A per-example likelihood-ratio membership audit (LiRA) of unlearned models, U-LiRA style.

LiRA (Carlini et al., "Membership Inference Attacks From First Principles", S&P 2022): K shadow
models are trained with and without each target example; for each example the logit-scaled
confidence of its true class (`common.logit_scaled_confidence`) is modelled as a Gaussian over the
shadows that trained on it (IN) and one over those that did not (OUT). A model's output c on the
example gets the score

    log N(c; mu_in, sigma_in^2) - log N(c; mu_out, sigma_out^2),

high = "this model trained on the example". With few shadows (K < 64) the LiRA paper uses one
variance for all examples; `variance="global"` takes the median over examples of the
per-example standard deviations of each side, `"per_example"` each example's own.

The unlearning question (U-LiRA, Hayes et al., "Inexact Unlearning Needs More Careful
Evaluations to Avoid a False Sense of Privacy", SaTML 2025) is not "member or not" but "unlearned
or retrained": the positives are the scores of the forget examples under the *unlearned* target
models, the negatives their scores under *retrained* target models. If unlearning worked, both
look OUT alike and the ROC is the diagonal (TPR = FPR); we report TPR at 1 % and 0.1 % FPR and the
AUC. Differences from Hayes et al.: their IN distribution comes from shadow models that were
*unlearned* with the method under test (so it costs K unlearning runs per method and asks "does
it look like this method's output"); ours comes from shadows *trained* with the example (shared
by every method, so one set of shadows audits them all, and it asks "does it still look
trained-on"). TPR at an FPR below 1 / (number of negatives) cannot be resolved: the result says
how many negatives there were.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..exceptions import ConfigError, DataError

Variance = Literal["global", "per_example"]
FPRS = (0.01, 0.001)
ROC_POINTS = 200  # ROC corners kept per row in audit.json: enough to draw, small and byte-stable
_MIN_STD = 1e-6  # a side whose confidences are all equal still needs a proper Gaussian


@dataclass
class GaussianFit:
    """Per-example IN and OUT Gaussians of the logit-scaled confidence, (F,) each."""

    mu_in: np.ndarray
    sigma_in: np.ndarray
    mu_out: np.ndarray
    sigma_out: np.ndarray


def fit_gaussians(shadow_confs: np.ndarray, in_mask: np.ndarray, *, variance: Variance = "global") -> GaussianFit:
    """Fit the IN and OUT Gaussians of every example from K shadow models.

    Args:
        shadow_confs: (K, F) confidences of the F examples under the K shadows.
        in_mask: (K, F) bool, True where shadow k trained on example j.
        variance: "global" (one standard deviation per side: the median over examples of the
            per-example ones) or "per_example".
    Raises:
        DataError: shapes that differ, an example without an IN or an OUT shadow (or with fewer
            than 2 of either), non-finite confidences. ConfigError: unknown `variance`.
    """
    c = np.asarray(shadow_confs, dtype=np.float64)
    m = np.asarray(in_mask, dtype=bool)
    if c.ndim != 2 or c.shape != m.shape:
        raise DataError(f"shadow confidences and IN mask must be (K, F) of one shape; got {c.shape} and {m.shape}")
    if variance not in ("global", "per_example"):
        raise ConfigError(f"variance must be 'global' or 'per_example', got {variance!r}")
    n_in, n_out = m.sum(0), (~m).sum(0)
    if c.shape[1] == 0 or n_in.min() < 2 or n_out.min() < 2:
        raise DataError("every example needs at least 2 IN and 2 OUT shadow models; train more shadows "
                        f"(got {c.shape[0]} shadows, fewest IN {int(n_in.min(initial=0))}, OUT {int(n_out.min(initial=0))})")
    if not np.isfinite(c).all():
        raise DataError("shadow confidences hold inf or NaN (a diverged shadow?); they must be finite")

    def side(mask: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mu = np.where(mask, c, 0.0).sum(0) / n
        var = np.where(mask, (c - mu) ** 2, 0.0).sum(0) / n  # population variance, as np.std
        sd = np.sqrt(var)
        if variance == "global":
            sd = np.full_like(sd, np.median(sd))
        return mu, np.maximum(sd, _MIN_STD)

    mu_in, sd_in = side(m, n_in)
    mu_out, sd_out = side(~m, n_out)
    return GaussianFit(mu_in=mu_in, sigma_in=sd_in, mu_out=mu_out, sigma_out=sd_out)


def _log_normal(x: np.ndarray, mu: np.ndarray, sd: np.ndarray) -> np.ndarray:
    return -0.5 * ((x - mu) / sd) ** 2 - np.log(sd) - 0.5 * math.log(2 * math.pi)


def lira_scores(confs: np.ndarray, fit: GaussianFit) -> np.ndarray:
    """Likelihood-ratio scores (log IN density - log OUT density) of (M, F) target confidences."""
    c = np.asarray(confs, dtype=np.float64)
    if c.ndim != 2 or c.shape[1] != len(fit.mu_in):
        raise DataError(f"target confidences must be (M, {len(fit.mu_in)}); got {c.shape}")
    return _log_normal(c, fit.mu_in, fit.sigma_in) - _log_normal(c, fit.mu_out, fit.sigma_out)


def tpr_at_fpr(pos: np.ndarray, neg: np.ndarray, fpr: float) -> float:
    """Largest TPR of a threshold on the score whose FPR is at most `fpr` (positives score higher).

    Ties are thresholded together (a threshold cannot split equal scores).
    """
    p = np.sort(np.asarray(pos, dtype=np.float64))
    n = np.sort(np.asarray(neg, dtype=np.float64))
    # candidate thresholds: every distinct score, plus one above all (TPR = FPR = 0)
    t = np.unique(np.concatenate([p, n, [np.inf]]))
    tprs = (len(p) - np.searchsorted(p, t, side="left")) / len(p)
    fprs = (len(n) - np.searchsorted(n, t, side="left")) / len(n)
    return float(tprs[fprs <= fpr].max())


def roc_points(pos: np.ndarray, neg: np.ndarray, max_points: int = ROC_POINTS) -> dict[str, list[float]]:
    """The ROC curve of positives vs negatives (positives score higher) as at most `max_points`
    (FPR, TPR) corners, both non-decreasing from (0, 0) to (1, 1), rounded to 6 digits.

    The corners kept are the last one at or below each FPR of a log grid (1e-4..1, so a log-scale
    axis still shows the low-FPR end) and of a linear grid: a subset of the exact step curve.
    """
    p = np.sort(np.asarray(pos, dtype=np.float64).ravel())
    n = np.sort(np.asarray(neg, dtype=np.float64).ravel())
    if len(p) == 0 or len(n) == 0:
        raise DataError("the audit needs positives and negatives; got an empty side")
    t = np.unique(np.concatenate([p, n, [np.inf]]))[::-1]  # thresholds, high to low: FPR rising
    tprs = (len(p) - np.searchsorted(p, t, side="left")) / len(p)
    fprs = (len(n) - np.searchsorted(n, t, side="left")) / len(n)
    if len(t) > max_points:
        half = max(max_points // 2 - 1, 1)
        grid = np.concatenate([np.logspace(-4, 0, half), np.linspace(0, 1, half)])
        keep = np.searchsorted(fprs, grid, side="right") - 1  # last corner with FPR <= the grid value
        idx = np.unique(np.concatenate([[0, len(t) - 1], keep[keep >= 0]]))
        tprs, fprs = tprs[idx], fprs[idx]
    return {"fpr": [round(float(v), 6) for v in fprs], "tpr": [round(float(v), 6) for v in tprs]}


def roc_summary(pos: np.ndarray, neg: np.ndarray, fprs: tuple[float, ...] = FPRS) -> dict[str, Any]:
    """AUC (percent) and TPR (percent) at each FPR of positives vs negatives, with their counts.

    Raises:
        DataError: an empty side or non-finite scores.
    """
    from sklearn.metrics import roc_auc_score

    p = np.asarray(pos, dtype=np.float64).ravel()
    n = np.asarray(neg, dtype=np.float64).ravel()
    if len(p) == 0 or len(n) == 0:
        raise DataError("the audit needs positives and negatives; got an empty side")
    if not (np.isfinite(p).all() and np.isfinite(n).all()):
        raise DataError("likelihood-ratio scores hold inf or NaN; the confidences must be finite")
    out: dict[str, Any] = {
        "auc": float(roc_auc_score(np.r_[np.ones(len(p)), np.zeros(len(n))], np.r_[p, n])) * 100.0,
        "n_pos": int(len(p)), "n_neg": int(len(n)),
    }
    for f in fprs:
        out[f"tpr_at_{_pct(f)}_fpr"] = tpr_at_fpr(p, n, f) * 100.0
        out[f"resolved_at_{_pct(f)}_fpr"] = bool(len(n) * f >= 1.0)
    return out


def _pct(f: float) -> str:
    return f"{f * 100:g}pct".replace(".", "_")  # 0.01 -> "1pct", 0.001 -> "0_1pct"


def ulira(target_confs: np.ndarray, reference_confs: np.ndarray, fit: GaussianFit, *,
          curve: bool = False) -> dict[str, Any]:
    """Tell the forget examples under `target_confs` (e.g. unlearned models) from the same examples
    under `reference_confs` (retrained models) by their LiRA scores: the ROC summary.

    LiRA's own direction (target scores higher = looks trained-on) gives `auc` and
    `tpr_at_*_fpr`. A method can also overshoot: its outputs sit further from the IN Gaussian than
    a retrained model's (AUC well below 50), which an attacker sees just as well by flipping the
    sign; `tpr_at_*_fpr_below` is that direction, `side` the one the AUC points to and
    `tpr_at_*_fpr_best` the TPR on that side (what the table shows).

    Args:
        target_confs: (N, F) confidences under the models audited (positives).
        reference_confs: (M, F) confidences under the retrained models (negatives).
        curve: also return `roc`, the curve in LiRA's own direction (`roc_points`).
    """
    pos, neg = lira_scores(target_confs, fit), lira_scores(reference_confs, fit)
    out = roc_summary(pos, neg)
    below = roc_summary(-pos, -neg)
    out["side"] = "above" if out["auc"] >= 50.0 else "below"
    for f in FPRS:
        key = f"tpr_at_{_pct(f)}_fpr"
        out[f"{key}_below"] = below[key]
        out[f"{key}_best"] = out[key] if out["side"] == "above" else below[key]
    if curve:
        out["roc"] = roc_points(pos, neg)
    return out


def in_mask_per_example(k: int, f: int, rng: np.random.Generator) -> np.ndarray:
    """(K, F) membership in pairs: each example is IN for exactly one shadow of every pair (2m,
    2m + 1), chosen at random, so it is IN for K/2 shadows and every even prefix of the shadows
    is balanced too (the first 8 of 32 shadows are an audit with K = 8, with the same masks)."""
    if k < 4 or k % 2:
        raise ConfigError(f"the LiRA audit needs an even number of shadow models, at least 4; got {k}")
    first = rng.random((k // 2, f)) < 0.5  # rows drawn in order: a prefix does not depend on k
    return np.stack([first, ~first], axis=1).reshape(k, f)


def in_mask_whole_set(k: int, f: int) -> np.ndarray:
    """(K, F) membership where shadow k holds the whole forget set when k is even, none of it when odd."""
    if k < 4 or k % 2:
        raise ConfigError(f"the LiRA audit needs an even number of shadow models, at least 4; got {k}")
    return np.repeat((np.arange(k) % 2 == 0)[:, None], f, axis=1)

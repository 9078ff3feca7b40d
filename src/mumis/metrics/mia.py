"""Membership-inference attacks used by the unlearning literature, each exactly as its toolkit.

Every attack reads one number per sample, derived from logits computed once per split
(`true_label_confidence`, `prediction_entropy`, `per_sample_loss`), so the model is never run
here. Every score is in percent; docs/evaluation.md defines each one exactly.

- `mia_efficacy`: SVC on the softmax confidence p_y(x); SalUn (Fan et al., ICLR 2024), the
  `evaluation/SVC_MIA.py` of the l1-sparse / SalUn code. Higher = more forgotten.
- `mia_entropy`: logistic regression on the softmax entropy, as SSD's code (Foster et al.,
  AAAI 2024). Lower = more forgotten. (Bad Teacher's code fits an RBF SVC on the entropy
  instead, which gives other numbers: not this key.)
- `mia_loss_acc`, `mia_loss_auc`: logistic regression / threshold on the per-sample loss, forget
  vs the whole test set, as the NeurIPS 2023 unlearning starting kit. Ideal = retrain's value
  (near 50 for random forgetting; high for class-wise forgetting, see the key's orientation).
- `mia_loss_acc_scrub`: SCRUB's code (Kurmanji et al., NeurIPS 2023): the same attack with the
  non-members restricted to test samples of the classes in the forget set.

Degenerate inputs (an empty side, non-finite outputs, too few samples for cross-validation)
give NaN with the reason in the result's `details`; they never raise.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

#: What each MIA score means; printed beside the numbers so nobody reads one upside down.
ORIENTATION: dict[str, str] = {
    "mia_efficacy": "SalUn MIA-Efficacy: % of forget samples an SVC on p_y(x) calls non-member; "
    "higher = more forgotten, target = retrain's value",
    "mia_entropy": "SSD entropy attack: % of forget samples a logistic regression on softmax "
    "entropy calls member; lower = more forgotten, target = retrain's value",
    "mia_loss_acc": "loss attack (NeurIPS 2023 kit): stratified-CV accuracy of a logistic "
    "regression telling forget from the whole test set by loss; ideal = retrain's value (near 50 "
    "for random forgetting; class-wise the retrained model scores high too: the forgotten class "
    "is unlike the rest of the test set)",
    "mia_loss_acc_scrub": "loss attack as SCRUB's code: forget vs the test samples of the forget "
    "set's classes (class-wise: the forgotten class only), 5 stratified shuffle splits; ideal = "
    "retrain's value, near 50",
    "mia_loss_auc": "loss-threshold AUC, forget (member) vs the whole test set, score = -loss; "
    "ideal = retrain's value (near 50 for random forgetting, high class-wise)",
}


@dataclass
class AttackResult:
    """One attack's score (percent, NaN when it could not be computed) and how it was made."""

    value: float
    details: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------------- features
def true_label_confidence(logits: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """Softmax probability of the true label, p_y(x), (N,) float64 (SalUn's feature).

    SalUn computes it in float32; float64 only keeps confident values apart (1 - 1e-9 vs 1),
    which an RBF kernel with gamma = 1 barely resolves (checked on a Fashion-MNIST CNN: 2 of
    6,000 forget predictions differ, MIA-Efficacy 21.87 vs 21.83).
    """
    if len(y) == 0:
        return np.zeros(0)
    p = torch.softmax(logits.double(), dim=1)  # (N, K)
    return p.gather(1, y.long().view(-1, 1)).squeeze(1).numpy()


def prediction_entropy(logits: torch.Tensor) -> np.ndarray:
    """Entropy of the softmax in nats, (N,) float64 (SSD's feature).

    Computed from `log_softmax` so confident outputs neither overflow nor give 0 * log 0 = NaN
    (terms with p = 0 count as 0, as in SSD's `entropy`).
    """
    if len(logits) == 0:
        return np.zeros(0)
    logp = torch.log_softmax(logits.double(), dim=1)  # (N, K)
    p = logp.exp()
    return -torch.where(p > 0, p * logp, torch.zeros_like(p)).sum(dim=1).numpy()


def per_sample_loss(logits: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """Cross-entropy of each sample, (N,) float64 (the loss attack's feature)."""
    if len(y) == 0:
        return np.zeros(0)
    return F.cross_entropy(logits.double(), y.long(), reduction="none").numpy()


@contextlib.contextmanager
def _one_blas_thread() -> Iterator[None]:
    """The attacks fit 1-feature models: BLAS threads only add overhead, and on a busy machine
    their spin-waiting made each logistic-regression fit ~10x slower. Limit them while fitting."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover  (a scikit-learn dependency; be lenient anyway)
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def _nan(reason: str, **details: Any) -> AttackResult:
    return AttackResult(math.nan, {"skipped": reason, **details})


def _finite(*arrays: np.ndarray) -> bool:
    return all(bool(np.isfinite(a).all()) for a in arrays)


# ----------------------------------------------------------------------- SalUn MIA-Efficacy
def salun_attack_set(
    retain_conf: np.ndarray, nonmember_conf: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The SalUn attack's training set: first N retain samples (members, 1) + N non-members (0).

    N = the number of non-members (the test set; class-wise: its remaining classes). SalUn takes
    `Subset(retain_dataset, range(len(test_dataset)))`, i.e. the first N retain samples *in
    dataset order*; when the retain set is smaller than N all of it is used.

    Args:
        retain_conf: (R,) features of the retain samples, in dataset order.
        nonmember_conf: (N,) features of the non-member (test) samples.
    Returns:
        X of shape (M + N, 1) and labels (M + N,) with M = min(R, N): 1 = member, 0 = not.
    """
    m = min(len(retain_conf), len(nonmember_conf))
    x = np.concatenate([retain_conf[:m], nonmember_conf]).reshape(-1, 1)
    labels = np.concatenate([np.ones(m), np.zeros(len(nonmember_conf))])
    return x, labels


def mia_efficacy(
    retain_conf: np.ndarray, nonmember_conf: np.ndarray, forget_conf: np.ndarray
) -> AttackResult:
    """SalUn MIA-Efficacy: % of forget samples that an RBF SVC calls non-member.

    From SalUn (Fan et al., ICLR 2024, arXiv:2310.12508) and the l1-sparse code it reuses
    (`evaluation/SVC_MIA.py`, `SVC_fit_predict` with `target_test = forget`): feature = softmax
    confidence on the true label; `SVC(C=3, gamma="auto", kernel="rbf")` trained on the first N
    retain samples (members) vs the N non-members. Higher = more forgotten.

    Args:
        retain_conf: (R,) p_y(x) of the retain samples in dataset order.
        nonmember_conf: (N,) p_y(x) of the test samples (class-wise: remaining classes only).
        forget_conf: (F,) p_y(x) of the forget samples.
    Returns:
        AttackResult with the percentage and the attack-set sizes.
    """
    from sklearn.svm import SVC

    x, labels = salun_attack_set(retain_conf, nonmember_conf)
    n_mem = int(labels.sum())
    details: dict[str, Any] = {"n_members": n_mem, "n_nonmembers": len(nonmember_conf),
                               "n_forget": len(forget_conf)}
    if n_mem < len(nonmember_conf):
        details["note"] = "retain set smaller than N: all retain samples used as members"
    if n_mem == 0 or len(nonmember_conf) == 0 or len(forget_conf) == 0:
        return _nan("an empty split (retain, test or forget)", **details)
    if not _finite(x, forget_conf):
        return _nan("non-finite model outputs", **details)
    clf = SVC(C=3, gamma="auto", kernel="rbf")
    with _one_blas_thread():
        clf.fit(x, labels)
        pred = clf.predict(forget_conf.reshape(-1, 1))  # 1 = member
    return AttackResult(float(1.0 - pred.mean()) * 100.0, details)


# --------------------------------------------------------------------- SSD entropy attack
#: SSD fits `LogisticRegression(multi_class="multinomial")`: two weight vectors w0, w1, each under
#: the L2 penalty, softmax over them. With two classes only w = w1 - w0 matters, and the penalty
#: ||w0||^2 + ||w1||^2 is smallest at w0 = -w1 = -w/2, i.e. ||w||^2 / 2: the same fit as a
#: binary logistic regression with C = 2 (current scikit-learn no longer has `multi_class` and
#: fits two classes as one binary problem, so the C is what reproduces SSD's fit).
SSD_BINARY_C = 2.0


def fit_entropy_attack(retain_ent: np.ndarray, test_ent: np.ndarray) -> tuple[Any, bool]:
    """SSD's attack model: retain entropies (member, 1) vs test entropies (0), balanced weights.

    Returns:
        (the fitted `LogisticRegression`, whether lbfgs converged).
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    x = np.concatenate([retain_ent, test_ent]).reshape(-1, 1)
    labels = np.concatenate([np.ones(len(retain_ent)), np.zeros(len(test_ent))])
    clf = LogisticRegression(C=SSD_BINARY_C, class_weight="balanced", solver="lbfgs")
    with warnings.catch_warnings(record=True) as caught, _one_blas_thread():
        warnings.simplefilter("always", ConvergenceWarning)
        clf.fit(x, labels)
    return clf, not any(issubclass(w.category, ConvergenceWarning) for w in caught)


def entropy_attack(
    retain_ent: np.ndarray, test_ent: np.ndarray, forget_ent: np.ndarray
) -> AttackResult:
    """SSD entropy attack: % of forget samples a logistic regression on entropy calls member.

    From SSD's code (Foster et al., AAAI 2024, `get_membership_attack_prob`): a logistic
    regression with balanced class weights on the softmax entropy of all retain samples
    (label 1) vs all test samples (label 0), multinomial (equal to binary with C = 2, see
    `SSD_BINARY_C`), then applied to the forget samples. Lower = more forgotten.

    Args:
        retain_ent, test_ent, forget_ent: (R,), (T,), (F,) entropies.
    Returns:
        AttackResult with the percentage (and whether the solver converged).
    """
    details: dict[str, Any] = {"n_members": len(retain_ent), "n_nonmembers": len(test_ent),
                               "n_forget": len(forget_ent)}
    if len(retain_ent) == 0 or len(test_ent) == 0 or len(forget_ent) == 0:
        return _nan("an empty split (retain, test or forget)", **details)
    if not _finite(retain_ent, test_ent, forget_ent):
        return _nan("non-finite model outputs", **details)
    clf, converged = fit_entropy_attack(retain_ent, test_ent)
    if not converged:
        details["converged"] = False
    pred = clf.predict(forget_ent.reshape(-1, 1))  # 1 = member
    return AttackResult(float(pred.mean()) * 100.0, details)


# ---------------------------------------------------------------------------- loss attack
def balanced_loss_set(
    forget_loss: np.ndarray, test_loss: np.ndarray, *, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Forget (member, 1) vs test (non-member, 0) losses, the larger side subsampled to the smaller.

    The subsample is drawn with `np.random.default_rng(seed)` without replacement and kept in
    the original order, so the set is the same on every run.

    Returns:
        X of shape (2m, 1) and labels (2m,), members first; m = min(F, T).
    """
    rng = np.random.default_rng(seed)
    m = min(len(forget_loss), len(test_loss))

    def take(a: np.ndarray) -> np.ndarray:
        return a if len(a) == m else a[np.sort(rng.choice(len(a), size=m, replace=False))]

    x = np.concatenate([take(forget_loss), take(test_loss)]).reshape(-1, 1)
    return x, np.concatenate([np.ones(m), np.zeros(m)])


def loss_attack_accuracy(
    forget_loss: np.ndarray, test_loss: np.ndarray, *, n_splits: int = 10, seed: int = 0
) -> AttackResult:
    """Loss attack: stratified k-fold CV accuracy of a logistic regression, forget vs test.

    As the NeurIPS 2023 machine-unlearning starting kit (`simple_mia`), with the whole test set
    as non-members (SCRUB's variant is `scrub_loss_attack`): feature = per-sample cross-entropy,
    `LogisticRegression()` with default
    settings, balanced classes, mean accuracy over the folds. (The kit draws 10 stratified
    shuffle-splits; we use `StratifiedKFold(10, shuffle=True, random_state=seed)`, which tests
    every sample exactly once.) With fewer than `n_splits` samples per side, the number of folds
    drops to that count (recorded in `details['folds']`); below 2 the score is NaN.

    Returns:
        AttackResult with the accuracy in percent; 50 = the attack cannot tell them apart.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    x, labels = balanced_loss_set(forget_loss, test_loss, seed=seed)
    m = len(labels) // 2
    folds = min(n_splits, m)
    details: dict[str, Any] = {"n_per_side": m, "folds": folds, "seed": seed}
    if folds < 2:
        return _nan("fewer than 2 samples on a side; cross-validation impossible", **details)
    if not _finite(x):
        return _nan("non-finite model outputs", **details)
    if folds < n_splits:
        details["note"] = f"only {m} samples per side: {folds}-fold instead of {n_splits}-fold CV"
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings(), _one_blas_thread():
        warnings.simplefilter("ignore")  # convergence chatter on separable folds
        scores = cross_val_score(LogisticRegression(), x, labels, cv=cv, scoring="accuracy")
    return AttackResult(float(np.mean(scores)) * 100.0, details)


def scrub_loss_attack(
    forget_loss: np.ndarray, nonmember_loss: np.ndarray, *, n_splits: int = 5, seed: int = 0
) -> AttackResult:
    """SCRUB's loss attack: mean accuracy over stratified shuffle splits, forget vs non-members.

    As `membership_inference_attack` in SCRUB's code (Kurmanji et al., NeurIPS 2023): the
    caller passes as non-members the test samples whose label is a class of the forget set (for
    class-wise forgetting, the forgotten class only); the larger side is subsampled to the
    smaller (`balanced_loss_set`, seeded), losses are clipped to [-100, 100], and
    `LogisticRegression()` is scored by accuracy on `StratifiedShuffleSplit(n_splits, test_size
    0.1, random_state=seed)`. 50 = the attack cannot tell them apart.

    Returns:
        AttackResult with the mean accuracy in percent; NaN when a split would hold fewer than
        one sample of each side.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedShuffleSplit, cross_val_score

    x, labels = balanced_loss_set(forget_loss, nonmember_loss, seed=seed)
    x = np.clip(x, -100.0, 100.0)  # as SCRUB: an infinite loss becomes 100
    m = len(labels) // 2
    n_test = math.ceil(0.1 * 2 * m)  # StratifiedShuffleSplit's default test_size
    details: dict[str, Any] = {"n_per_side": m, "n_nonmembers": len(nonmember_loss),
                               "splits": n_splits, "seed": seed}
    if n_test < 2 or 2 * m - n_test < 2:
        return _nan("too few samples per side for a stratified 90/10 split", **details)
    if np.isnan(x).any():
        return _nan("non-finite model outputs", **details)
    cv = StratifiedShuffleSplit(n_splits=n_splits, random_state=seed)
    with warnings.catch_warnings(), _one_blas_thread():
        warnings.simplefilter("ignore")  # convergence chatter on separable splits
        scores = cross_val_score(LogisticRegression(), x, labels, cv=cv, scoring="accuracy")
    return AttackResult(float(np.mean(scores)) * 100.0, details)


def loss_attack_auc(forget_loss: np.ndarray, test_loss: np.ndarray) -> AttackResult:
    """Loss-threshold attack AUC (percent), forget = member, test = non-member, score = -loss.

    Members of a model have lower loss, so a threshold on -loss is the attack; its ROC AUC uses
    every forget and test sample (AUC does not depend on the class balance, so nothing is
    subsampled). 50 = chance, 100 = perfect separation.
    """
    from sklearn.metrics import roc_auc_score

    details: dict[str, Any] = {"n_members": len(forget_loss), "n_nonmembers": len(test_loss)}
    if len(forget_loss) == 0 or len(test_loss) == 0:
        return _nan("an empty split (forget or test)", **details)
    if not _finite(forget_loss, test_loss):
        return _nan("non-finite model outputs", **details)
    scores = -np.concatenate([forget_loss, test_loss])
    labels = np.concatenate([np.ones(len(forget_loss)), np.zeros(len(test_loss))])
    return AttackResult(float(roc_auc_score(labels, scores)) * 100.0, details)

"""The evidence of a receipt, computed without a retrained model (which a real user does not have).

Everything compares the forget samples with *unseen* samples of the same classes (a holdout, or
the test split), before and after unlearning: a model that no longer knows the forget samples
should treat them like data it never trained on. Nothing here proves that; the verdict says so.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from ..exceptions import DataError
from ..functional import input_sensitivity
from ..metrics import (
    compute_logits,
    eval_mode,
    loss_attack_accuracy,
    loss_attack_auc,
    per_sample_loss,
    subsample_indices,
    true_label_confidence,
)
from ..metrics.rank_test import loss_rank_test
from ..utils import model_device
from .hashing import stable

Pair = tuple[torch.Tensor, torch.Tensor]

#: Points of accuracy (and of attack AUC around 50) within which forget and unseen samples
#: count as treated alike by the verdict: a heuristic, stated in the receipt.
ALIKE_POINTS = 10.0


def _split_stats(logits: torch.Tensor, y: torch.Tensor) -> tuple[dict[str, float], np.ndarray]:
    loss = per_sample_loss(logits, y)
    correct = int((logits.argmax(dim=1) == y).sum())
    stats = {"accuracy": 100.0 * correct / len(y),
             "confidence": float(true_label_confidence(logits, y).mean()),
             "loss": float(loss.mean())}
    return stats, loss


def model_evidence(model: nn.Module, forget: Pair, unseen: Pair, *, seed: int) -> dict[str, Any]:
    """Forget vs unseen for one model: accuracy, mean true-label confidence, mean loss, the loss
    attacks (threshold AUC and cross-validated logistic regression, forget = member) and the rank
    test of the two loss distributions with its power (`mumis.metrics.rank_test`)."""
    f_stats, f_loss = _split_stats(compute_logits(model, forget[0]), forget[1])
    u_stats, u_loss = _split_stats(compute_logits(model, unseen[0]), unseen[1])
    test = loss_rank_test(f_loss, u_loss)
    return {"forget": f_stats, "unseen": u_stats,
            "loss_attack_auc": loss_attack_auc(f_loss, u_loss).value,
            "loss_attack_acc": loss_attack_accuracy(f_loss, u_loss, seed=seed).value,
            "loss_test": {k: test[k] for k in ("p_value", "alpha", "power", "detectable_auc_shift",
                                               "indistinguishable")}}


def _median_target(model: nn.Module, forget: Pair, unseen: Pair, n: int, seed: int) -> dict[str, float]:
    """Median target-class sensitivity S_y(x) of a seeded subsample of each side (the subsample of
    `mumis.metrics.sensitivity_diagnostics`; only the target class, a K-th of its cost)."""
    out: dict[str, float] = {}
    dev = model_device(model)
    with eval_mode(model):
        for name, (x, y) in (("forget", forget), ("unseen", unseen)):
            idx = torch.as_tensor(subsample_indices(len(y), n, seed), dtype=torch.long)
            vals = [input_sensitivity(model, x[b].to(dev), y[b].to(dev)).detach().cpu()
                    for b in idx.split(128)]
            out[name] = float(np.median(torch.cat(vals).double().numpy()))
    return out


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else float("nan")


def compute_evidence(
    before: nn.Module, after: nn.Module, forget: Pair, unseen: Pair, *, unseen_source: str,
    seed: int = 0, sensitivity_samples: int = 200,
) -> dict[str, Any]:
    """The receipt's `evidence` section (floats rounded by `hashing.stable`).

    Args:
        before, after: the model before and after unlearning (evaluated in eval mode).
        forget: (x, y) of the forgotten samples.
        unseen: (x, y) of samples of the same classes no model trained on.
        unseen_source: where `unseen` came from, written into the receipt.
        seed: seed of the attack's folds and of the sensitivity subsample.
        sensitivity_samples: samples per side for the input-sensitivity medians.
    Raises:
        DataError: no unseen sample (the verdict would have nothing to compare with).
    """
    if len(unseen[1]) == 0:
        raise DataError(f"no unseen sample of the forgotten classes in the {unseen_source}; the receipt's "
                        "evidence compares the forget set with unseen samples of the same classes")
    sens_before = _median_target(before, forget, unseen, sensitivity_samples, seed)
    sens_after = _median_target(after, forget, unseen, sensitivity_samples, seed)
    return stable({
        "unseen": {"source": unseen_source, "n": len(unseen[1])},
        "n_forget": len(forget[1]),
        "seed": seed,
        "before": model_evidence(before, forget, unseen, seed=seed),
        "after": model_evidence(after, forget, unseen, seed=seed),
        "sensitivity": {
            "statistic": "median target-class input sensitivity ||d f_y(x) / dx||",
            "n_per_split": sensitivity_samples,
            "before": sens_before, "after": sens_after,
            "forget_to_unseen_before": _ratio(sens_before["forget"], sens_before["unseen"]),
            "forget_to_unseen_after": _ratio(sens_after["forget"], sens_after["unseen"]),
            "forget_shift": _ratio(sens_after["forget"], sens_before["forget"]),
        },
    })


def _reading(side: dict[str, Any], class_forgetting: bool) -> str:
    """What one model's evidence shows: gone / recognised (class forgetting), alike / member /
    over-forgotten (forget vs unseen samples)."""
    acc_f, acc_u = side["forget"]["accuracy"], side["unseen"]["accuracy"]
    auc = side["loss_attack_auc"]
    if class_forgetting:
        return "gone" if acc_f <= ALIKE_POINTS and acc_u <= ALIKE_POINTS else "recognised"
    d, off = acc_f - acc_u, 0.0 if auc is None else auc - 50.0
    if abs(d) <= ALIKE_POINTS and abs(off) <= ALIKE_POINTS:
        return "alike"
    return "member" if d > ALIKE_POINTS or off > ALIKE_POINTS else "over-forgotten"


_SHOWS = {
    "gone": "the model no longer recognises the forgotten class(es)",
    "recognised": "the model still recognises the forgotten class(es) (a model trained without them scores 0 %)",
    "alike": "the model treats the forget samples like unseen data on these tests",
    "member": "the model still treats the forget samples more like training data than unseen data",
    "over-forgotten": "the forget samples are forgotten more than unseen ones, which itself tells an attacker "
                      "they were removed",
}


def verdict(evidence: dict[str, Any], method: str, *, class_forgetting: bool = False) -> str:
    """One line: what the evidence shows about the forget set, and what it does not show.

    Random-subset forgetting should leave the forget samples looking like unseen samples of
    their classes; class forgetting should leave the model unable to recognise the class at all
    (a model trained without it scores 0 % on its forget and unseen samples alike). When the model
    before unlearning already looked that way, the line says the tests tell little.
    """
    after = evidence["after"]
    if after["forget"]["loss"] is None or after["unseen"]["loss"] is None:
        return (f"The model after {method} gives non-finite outputs (inf or NaN weights or logits), so this "
                "evidence shows nothing; the model is unusable rather than unlearned.")
    auc = after["loss_attack_auc"]
    facts = (f"after {method}, forget-set accuracy {after['forget']['accuracy']:.1f} % vs "
             f"{after['unseen']['accuracy']:.1f} % on unseen samples of the same classes "
             f"({evidence['unseen']['source']}), loss-attack AUC {'n/a' if auc is None else f'{auc:.1f}'} "
             "(50 = cannot tell forget from unseen)")
    test = after.get("loss_test")  # receipts written before the rank test have none
    if test and not class_forgetting and test["p_value"] is not None:
        facts += (f", rank test of the losses p = {test['p_value']:.2f} (it detects an AUC "
                  f"{test['detectable_auc_shift']:.0f} points from 50 with {100 * test['power']:.0f} % power)")
    reading = _reading(after, class_forgetting)
    if "before" in evidence and reading in ("alike", "gone") and _reading(evidence["before"], class_forgetting) == reading:
        facts += "; the model before unlearning passed these tests too, so here they tell little"
    shows = _SHOWS[reading]
    not_shown = ("Approximate unlearning: evidence, not a proof; it does not show the model equals one "
                 "retrained without these samples")
    if method == "retrain":
        not_shown = ("The method retrains from scratch on the retain set: exact by construction, if the "
                     "recorded data is what it was given")
    return f"{shows[0].upper()}{shows[1:]}: {facts}. {not_shown}."

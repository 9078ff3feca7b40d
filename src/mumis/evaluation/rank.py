"""The loss rank test inside an evaluation (group `loss_rank`): the model's per-sample
cross-entropy on the forget set against unseen samples of the forget set's classes
(`mumis.metrics.rank_test`). The retrained model treats the forgotten samples like any other
unseen sample of their class; this asks whether the evaluated model does.

Unseen samples: the run's holdout (`mumis train --holdout`, `Splits.holdout`) where it holds
samples of the forget set's classes, else the test split restricted to those classes, the rule
of the deletion receipts. Class-wise forgetting always takes the test split: the holdout handed
on leaves the forgotten classes out. Which one was used is in the key's details (`unseen`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..data.splits import Splits
from ..metrics.mia import per_sample_loss
from ..metrics.rank_test import MIN_SAMPLES, loss_rank_test
from .keys import UNSEEN_HOLDOUT, UNSEEN_TEST


def unseen_side(splits: Splits) -> tuple[str, torch.Tensor, str]:
    """(split name, mask of its samples whose label is one of the forget set's, source text)."""
    classes = torch.unique(splits.forget[1])
    if splits.holdout is not None:
        keep = torch.isin(splits.holdout[1], classes)
        if bool(keep.any()):
            return "holdout", keep, UNSEEN_HOLDOUT
    return "test", torch.isin(splits.test[1], classes), UNSEEN_TEST


def rank_metrics(splits: Splits, logits: Callable[[str], torch.Tensor]) -> tuple[dict[str, float], dict[str, Any]]:
    """`rank_auc`, `rank_p`, `rank_detectable` of one model (`logits(split)` gives its logits),
    and the details recorded under `rank_auc`: where the unseen samples came from, both sizes."""
    name, keep, source = unseen_side(splits)
    y_unseen = getattr(splits, name)[1][keep]
    res = loss_rank_test(per_sample_loss(logits("forget"), splits.forget[1]),
                         per_sample_loss(logits(name)[keep], y_unseen))
    values = {"rank_auc": res["auc"], "rank_p": res["p_value"], "rank_detectable": res["detectable_auc_shift"]}
    details: dict[str, Any] = {"unseen": source, "n_forget": res["n_forget"], "n_unseen": res["n_unseen"],
                               "test": res["test"], "alpha": res["alpha"], "power": res["power"]}
    if "reason" in res:
        details["skipped"] = f"rank test not computed: {res['reason']}"
    elif res["approximate"]:
        details["note"] = (f"fewer than {MIN_SAMPLES} samples on a side: the rank test's normal "
                           "approximation is rough")
    return values, details

"""The metric keys of an evaluation, their groups, the keys each gap averages, and what each means.

The protocol behind every key is in docs/evaluation.md.
"""

from __future__ import annotations

METRIC_GROUPS = ("accuracy", "mia", "mia_efficacy", "mia_entropy", "mia_loss", "loss_rank",
                 "divergence", "sensitivity", "recovery")
#: What `evaluate` computes by default ("divergence" only when a reference is given).
DEFAULT_METRICS: tuple[str, ...] = ("accuracy", "mia", "divergence", "sensitivity")
#: Scalar metric keys in display order.
METRIC_KEYS = ("forget_acc", "unlearn_acc", "retain_acc", "test_acc", "test_remaining_acc",
               "test_forgotten_acc", "mia_efficacy", "mia_entropy", "mia_loss_acc",
               "mia_loss_acc_scrub", "mia_loss_auc", "rank_auc", "rank_p", "rank_detectable",
               "kl_to_retrain", "js_to_retrain",
               *(f"{a}_{k}" for a in ("bn_reestimated", "relearn")
                 for k in ("forget_acc", "test_acc", "test_remaining_acc", "test_forgotten_acc")),
               "probe_forget_acc", "probe_retain_acc")
#: Keys whose difference to the reference is no distance (a p-value; a power statement that
#: depends only on the sample sizes): no `diff`, no floor, part of no gap.
NOT_DISTANCES = ("rank_p", "rank_detectable")
#: Where the loss rank test's unseen samples come from (`mia_details[...]["rank_auc"]["unseen"]`).
UNSEEN_HOLDOUT = "holdout split, samples of the forget set's classes"
UNSEEN_TEST = "test split, samples of the forget set's classes"
RANK_ORIENTATION = {
    "rank_auc": "Mann-Whitney U of forget vs unseen losses as an AUC (%): 50 = the same distribution, "
                "above 50 = the forget samples still fit better; ideal = retrain's value",
    "rank_p": "two-sided p-value of the rank test; not a distance (no gap, no floor)",
    "rank_detectable": "smallest |rank_auc - 50| the test detects with 80 % power at alpha 0.05 at "
                       "these sample sizes: a p-value above 0.05 bounds the shift by this, no more",
}
#: The accuracies each recovery audit measures (prefixed with `bn_reestimated_` / `relearn_`);
#: test_remaining / test_forgotten only for class-wise and sub-class forgetting.
RECOVERY_ACCURACIES = ("forget_acc", "test_acc", "test_remaining_acc", "test_forgotten_acc")
#: gap_recovery: mean abs difference to retrain over these (where both models have them; the
#: BatchNorm keys are n/a on a model without BatchNorm), class-wise / sub-class and random.
GAP_RECOVERY_CLASSWISE = ("bn_reestimated_test_forgotten_acc", "relearn_test_forgotten_acc")
GAP_RECOVERY_RANDOM = ("bn_reestimated_forget_acc", "relearn_forget_acc")
RECOVERY_ORIENTATION = ("ideal = the retrained model's value under the same audit; a value above "
                        "it means forgotten knowledge came back")
#: MU-Mis paper's Avg. Gap, class-wise / sub-class forgetting.
GAP_PAPER_CLASSWISE = ("test_remaining_acc", "test_forgotten_acc", "test_acc")
#: MU-Mis paper's Avg. Gap, random / index forgetting.
GAP_PAPER_RANDOM = ("retain_acc", "forget_acc", "test_acc")
#: SalUn's Avg. Gap (UA, RA, TA, MIA-Efficacy), random / index forgetting.
GAP_SALUN = ("unlearn_acc", "retain_acc", "test_acc", "mia_efficacy")
#: The same for class-wise / sub-class forgetting: SalUn's code drops the forgotten class from
#: its test set there, so TA is the accuracy on the test samples of the classes kept.
GAP_SALUN_CLASSWISE = ("unlearn_acc", "retain_acc", "test_remaining_acc", "mia_efficacy")

MEANING: dict[str, str] = {
    "forget_acc": "accuracy on the forget samples (%)",
    "unlearn_acc": "100 - forget_acc (SalUn's UA)",
    "retain_acc": "accuracy on the retain samples (%)",
    "test_acc": "accuracy on the whole test set (%)",
    "test_remaining_acc": "test accuracy on the classes kept (%)",
    "test_forgotten_acc": "test accuracy on the forgotten class(es) (%)",
    "mia_efficacy": "% forget called non-member by SalUn's SVC; higher = more forgotten",
    "mia_entropy": "% forget called member by SSD's entropy LR; lower = more forgotten",
    "mia_loss_acc": "CV accuracy of loss LR, forget vs whole test (NeurIPS 2023 kit); ideal = retrain's",
    "mia_loss_acc_scrub": "SCRUB's loss LR: forget vs test of the forget set's classes; ideal = retrain's, ~50",
    "mia_loss_auc": "AUC of -loss, forget vs whole test; ideal = retrain's",
    "rank_auc": "loss rank test, forget vs unseen of its classes (holdout if the run has one, else "
                "test): U as AUC %, 50 = alike; ideal = retrain's",
    "rank_p": "two-sided p-value of that rank test (normal approx., ties corrected); not a distance",
    "rank_detectable": "smallest |rank_auc - 50| it detects, 80 % power, alpha 0.05 (sizes only)",
    "kl_to_retrain": "mean KL(P_retrain || P_model) on forget, nats; 0 = identical (not SSD's JSDiv)",
    "js_to_retrain": "mean Jensen-Shannon to retrain on forget, nats, <= ln 2 (not SSD's JSDiv)",
    "gap_paper": "MU-Mis Avg. Gap: mean abs diff over {keys}",
    "gap_salun": "SalUn Avg. Gap: mean abs diff over {keys}",
    "gap_recovery": "mean abs diff to retrain over {keys} (where both are measured)",
    **{f"bn_reestimated_{k}": f"{k} after re-estimating BatchNorm statistics on unlabelled images; "
       "ideal = retrain's" for k in ("forget_acc", "test_acc", "test_remaining_acc",
                                     "test_forgotten_acc")},
    **{f"relearn_{k}": f"{k} after a short fine-tuning attack on a retain slice; ideal = retrain's"
       for k in ("forget_acc", "test_acc", "test_remaining_acc", "test_forgotten_acc")},
    "probe_forget_acc": "linear probe on penultimate features, held-out forget samples given their "
                        "label (%): does the class live on in the features? ideal = retrain's",
    "probe_retain_acc": "the same probe on held-out retain samples (%): the probe works at all",
}


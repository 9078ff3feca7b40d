"""Metrics of an unlearned model: accuracies, membership inference, divergences, sensitivities.

Each is a function of per-split logits (computed once by `compute_logits`) or, for the
sensitivity diagnostics, of input gradients from `mumis.functional`. `mumis.evaluate` combines
them into a report with the keys of docs/evaluation.md.
"""

from .accuracy import compute_logits, eval_mode, logits_accuracy, per_class_accuracy
from .divergence import js_per_sample, js_to_retrain, kl_per_sample, kl_to_retrain
from .mia import (
    ORIENTATION,
    AttackResult,
    balanced_loss_set,
    entropy_attack,
    fit_entropy_attack,
    loss_attack_accuracy,
    loss_attack_auc,
    mia_efficacy,
    per_sample_loss,
    prediction_entropy,
    salun_attack_set,
    scrub_loss_attack,
    true_label_confidence,
)
from .recovery import (
    RecoveryConfig,
    RelearnOutcome,
    audit_slices,
    batchnorm_layers,
    reestimate_batchnorm,
    relearn,
)
from .sensitivity_stats import (
    SensitivityDiagnostics,
    plot_sensitivity_histograms,
    sensitivity_diagnostics,
    subsample_indices,
    summarize,
)

__all__ = [
    "ORIENTATION", "AttackResult", "SensitivityDiagnostics", "balanced_loss_set",
    "compute_logits", "entropy_attack", "eval_mode", "fit_entropy_attack", "js_per_sample", "js_to_retrain",
    "kl_per_sample", "kl_to_retrain", "logits_accuracy", "loss_attack_accuracy", "loss_attack_auc", "mia_efficacy",
    "per_class_accuracy", "per_sample_loss", "plot_sensitivity_histograms",
    "prediction_entropy", "RecoveryConfig", "RelearnOutcome", "audit_slices", "batchnorm_layers",
    "reestimate_batchnorm", "relearn", "salun_attack_set", "scrub_loss_attack", "sensitivity_diagnostics", "subsample_indices",
    "summarize", "true_label_confidence",
]

"""`evaluate(model, splits, reference=...)`: every metric of docs/evaluation.md, against the retrain."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..config import check_seed
from ..data.splits import Splits, check_splits
from ..exceptions import ConfigError
from ..metrics.divergence import js_to_retrain, kl_to_retrain
from ..metrics.mia import per_sample_loss
from ..metrics.recovery import RecoveryConfig
from ..metrics.sensitivity_stats import sensitivity_diagnostics, subsample_indices
from ..models.adapters import OutputKey, check_output_key
from ..models.checks import logits_model
from .audits import RecoverySpec, run_audits
from .compute import SplitLogits, compute_model_metrics, metric_groups, splits_fingerprint
from .keys import DEFAULT_METRICS
from .report import EvaluationReport


@dataclass
class _Ctx:
    """What every part of one `evaluate` call shares."""

    splits: Splits
    groups: set[str]
    seed: int
    batch_size: int
    n_sens: int
    spec: RecoverySpec | None

    @property
    def sens_splits(self) -> dict[str, Any]:
        s = self.splits
        return {"forget": s.forget, "retain": s.retain, "test": s.test}


@dataclass
class _RefPart:
    """The reference's side of a report, from its model or from its earlier report."""

    values: dict[str, float]
    forget_logits: torch.Tensor | None
    per_class: list[float | None] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    sens: dict[str, Any] | None = None


def _sizes(splits: Splits) -> dict[str, int]:
    out = {"forget": len(splits.forget[1]), "retain": len(splits.retain[1]), "test": len(splits.test[1])}
    if splits.classwise:
        out["test_remaining"] = len(splits.test_remaining[1])  # type: ignore[index]
        out["test_forgotten"] = len(splits.test_forgotten[1])  # type: ignore[index]
    return out


def _own_report(model: nn.Module, c: _Ctx) -> tuple[EvaluationReport, SplitLogits]:
    """The report of the model alone: its metrics, audits, per-sample losses and sensitivities."""
    splits = c.splits
    values, per_class, details, logits = compute_model_metrics(model, splits, c.groups, seed=c.seed,
                                                               batch_size=c.batch_size)
    recovery = None
    if c.spec is not None:
        audit_values, audit_notes = run_audits(model, splits, c.spec, c.batch_size)
        values.update(audit_values)
        recovery = {**c.spec.describe(), "model": audit_notes}
    report = EvaluationReport(
        model_metrics=values, reference_metrics=None, kind=splits.kind, classwise=splits.classwise,
        num_classes=splits.num_classes, sizes=_sizes(splits),
        per_class_acc={"model": per_class} if per_class else {},
        mia_details={"model": details} if details else {}, sensitivity=None, seed=c.seed,
        fingerprint=splits_fingerprint(splits),
        forget_logits=logits("forget"),  # kept: this report may serve as a reference later
        recovery=recovery,
    )
    if "accuracy" in c.groups:
        for name, (_, y) in c.sens_splits.items():
            idx = torch.as_tensor(subsample_indices(len(y), c.n_sens, c.seed), dtype=torch.long)
            report.loss_values[name] = per_sample_loss(logits(name)[idx], y[idx])
    if "sensitivity" in c.groups:
        diag = sensitivity_diagnostics(model, c.sens_splits, n_per_split=c.n_sens, seed=c.seed)
        report.sensitivity = {"model": diag.summary()}
        report.sensitivity_values["model"] = diag
    return report, logits


def _from_report(report: EvaluationReport, ref: EvaluationReport, c: _Ctx) -> _RefPart:
    """The reference's side taken from its own earlier report (checked to match)."""
    if ref.fingerprint != report.fingerprint:
        raise ConfigError("the reference report was computed on other splits; evaluate the "
                          "reference on the same splits (same forget spec and seed)")
    missing = [k for k in report.model_metrics if k not in ref.model_metrics]
    if missing:
        raise ConfigError(f"the reference report lacks {', '.join(missing)}; evaluate the "
                          "reference with the same metrics")
    mine, theirs = (r.mia_details.get("model", {}).get("rank_auc") for r in (report, ref))
    if mine is not None and theirs is not None and (
            (mine["unseen"], mine["n_unseen"]) != (theirs.get("unseen"), theirs.get("n_unseen"))):
        raise ConfigError(f"the reference report's rank test used other unseen samples ({theirs.get('unseen')}, "
                          f"{theirs.get('n_unseen')}) than this one ({mine['unseen']}, {mine['n_unseen']}); "
                          "evaluate the reference on the same splits, with the same holdout")
    if c.spec is not None and (ref.recovery or {}).get("key") != c.spec.key:
        raise ConfigError("the reference report's recovery audits used other settings or "
                          "data; evaluate the reference with the same recovery settings")
    if c.spec is not None and report.recovery is not None:
        report.recovery["reference"] = (ref.recovery or {}).get("model")
    if "model" in ref.sensitivity_values:
        report.sensitivity_values["reference"] = ref.sensitivity_values["model"]
    return _RefPart(values={k: ref.model_metrics[k] for k in report.model_metrics},
                    forget_logits=ref.forget_logits, per_class=ref.per_class_acc.get("model", []),
                    details=ref.mia_details.get("model", {}),
                    sens=(ref.sensitivity or {}).get("model"))


def _from_model(report: EvaluationReport, reference: nn.Module, c: _Ctx) -> _RefPart:
    """The reference's side computed from the reference model, as for the model."""
    values, per_class, details, logits = compute_model_metrics(
        reference, c.splits, c.groups, seed=c.seed, batch_size=c.batch_size)
    part = _RefPart(values, logits("forget"), per_class, details)
    if c.spec is not None and report.recovery is not None:
        audit, report.recovery["reference"] = run_audits(reference, c.splits, c.spec, c.batch_size)
        values.update(audit)
    if "sensitivity" in c.groups:
        rdiag = sensitivity_diagnostics(reference, c.sens_splits, n_per_split=c.n_sens, seed=c.seed)
        part.sens = rdiag.summary()
        report.sensitivity_values["reference"] = rdiag
    return part


def _attach(report: EvaluationReport, part: _RefPart, logits: SplitLogits, c: _Ctx) -> None:
    """Put the reference's side into the report, with the divergences between the two."""
    if "divergence" in c.groups:
        if part.forget_logits is None:
            raise ConfigError("the reference report kept no forget-set logits; pass the "
                              "reference model instead")
        mine = logits("forget")
        report.model_metrics["kl_to_retrain"] = kl_to_retrain(mine, part.forget_logits)
        report.model_metrics["js_to_retrain"] = js_to_retrain(mine, part.forget_logits)
        # The reference's divergence to itself is 0 by definition (keeps the table complete).
        part.values["kl_to_retrain"] = part.values["js_to_retrain"] = 0.0
    report.reference_metrics = part.values
    if part.per_class:
        report.per_class_acc["reference"] = part.per_class
    if part.details:
        report.mia_details["reference"] = part.details
    if part.sens is not None and report.sensitivity is not None:
        report.sensitivity["reference"] = part.sens


def evaluate(
    model: nn.Module,
    splits: Splits,
    *,
    reference: nn.Module | EvaluationReport | None = None,
    metrics: str | Sequence[str] = DEFAULT_METRICS,
    seed: int = 0,
    batch_size: int = 256,
    sensitivity_samples: int = 500,
    recovery: RecoveryConfig | dict[str, Any] | None = None,
    recovery_images: torch.Tensor | None = None,
    output_key: OutputKey | None = None,
) -> EvaluationReport:
    """Evaluate an (unlearned) model on a scenario's splits, against the retrained reference.

    Every key and attack is defined in docs/evaluation.md.

    Args:
        model: classifier returning logits (N, K); evaluated on its own device in eval mode
            (every submodule's mode is restored afterwards; weights are never changed).
        splits: forget / retain / test (and test_remaining / test_forgotten) of the scenario.
        reference: the model retrained without the forget set; or the `EvaluationReport` of an
            earlier `evaluate(reference, splits, metrics=...)` on the same splits (a benchmark
            evaluates the reference once; its kept forget-set logits give the divergences).
        metrics: groups from `METRIC_GROUPS` ('mia' = 'mia_efficacy' + 'mia_entropy' +
            'mia_loss') or 'all'. 'loss_rank' is the rank test of the forget set's losses
            against unseen samples of its classes (`splits.holdout` when it has some, else the
            test split; `mumis.evaluation.rank`). 'divergence' needs a reference. 'recovery' runs the BatchNorm
            re-estimation and relearning audits (`mumis.metrics.recovery`) on copies of both
            models: `bn_reestimated_*` / `relearn_*` accuracies and `gap_recovery`.
        seed: seed of the attacks' subsampling and folds and of the sensitivity subsample.
        batch_size: samples per forward pass.
        sensitivity_samples: samples per split (forget, retain, test) for the sensitivity
            diagnostics.
        recovery: settings of the recovery audits (`RecoveryConfig` or a dict of its fields).
        recovery_images: unlabelled held-out images for the BatchNorm re-estimation instead
            of the seeded retain slice.
        output_key: where the logits are when forward() returns more than a tensor (for the
            model and a reference model), as in `mumis.unlearn`.
    Returns:
        EvaluationReport; `to_dict()` gives the metric keys, `to_markdown()` a table.
    Raises:
        ConfigError: unknown metric group, a bad recovery setting, or a reference report made
            on other splits, without the metrics asked for, with other recovery settings or
            other unseen samples for the loss rank test.
        DataError: recovery_images not shaped like the data.
        ModelError: a model does not take the split's inputs or return (N, K) logits with
            one column per class (one line naming the shapes, before any work).
    """
    check_splits(splits)  # a Splits that forgets something (a tuple gets a clear error)
    check_seed(seed)
    if reference is not None and not isinstance(reference, nn.Module | EvaluationReport):
        raise ConfigError(f"reference must be the retrained nn.Module or its EvaluationReport, got "
                          f"{type(reference).__name__}; for a run directory pass "
                          "mumis.checkpoint.load_checkpoint(DIR)[0]")
    groups = metric_groups(metrics)
    check_output_key(output_key)
    probe_x, k = splits.forget[0], splits.num_classes  # forget is non-empty: check_splits
    model = logits_model(model, probe_x, output_key=output_key, num_classes=k)
    if isinstance(reference, nn.Module):
        reference = logits_model(reference, probe_x, output_key=output_key, num_classes=k, name="reference")
    spec = (RecoverySpec.make(splits, RecoveryConfig.of(recovery), seed, recovery_images)
            if "recovery" in groups else None)
    c = _Ctx(splits, groups, seed, batch_size, sensitivity_samples, spec)
    report, logits = _own_report(model, c)
    if reference is not None:
        part = (_from_report(report, reference, c) if isinstance(reference, EvaluationReport)
                else _from_model(report, reference, c))
        _attach(report, part, logits, c)
    return report

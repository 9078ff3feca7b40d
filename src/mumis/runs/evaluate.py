"""`evaluate_run`: a run directory's model evaluated on a forget scenario, against the reference;
`evaluate_record`: a record with the evaluation of the model it describes."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .record import RunRecord
from .scenario import Scenario

if TYPE_CHECKING:
    from torch import nn

    from ..checkpoint import TrustModelCode
    from ..evaluation import EvaluationReport


def evaluate_run(
    *,
    checkpoint: str | Path,
    forget: str,
    reference: str | Path | Sequence[str | Path] | None = None,
    metrics: list[str] | None = None,
    seed: int = 0,
    split_seed: int | None = None,
    data_dir: str | Path | None = None,
    batch_size: int = 256,
    sensitivity_samples: int = 500,
    device: str = "auto",
    trust_model_code: TrustModelCode = False,
    recovery: dict[str, Any] | None = None,
) -> tuple[EvaluationReport, tuple[str, str]]:
    """Load a run's model (and the reference), rebuild the split and evaluate.

    Args:
        checkpoint: run directory of the model to evaluate.
        forget: forget spec, resolved on the checkpoint's dataset.
        reference: run directory of the retrained model; its manifest must equal this split's.
            A list of several (retrained models with other seeds): the first is the reference,
            the others give the retraining floor (`EvaluationReport.floor`); each must use
            the same split.
        metrics: metric groups (see `mumis.evaluation.METRIC_GROUPS`); default: all.
        seed: seed of the attacks and of the sensitivity subsample.
        split_seed: seed of `random:` specs (default: the checkpoint's).
        data_dir: data folder (default: the checkpoint's).
        batch_size: samples per forward pass.
        sensitivity_samples: samples per split for the sensitivity diagnostics.
        device: "auto", "cpu" or "cuda[:N]".
        trust_model_code: may the runs' user model factories be imported (see
            `checkpoint.load_checkpoint`); default: refused.
        recovery: recovery audit settings (`mumis.metrics.recovery.RecoveryConfig` fields).
    Returns:
        (EvaluationReport, (model name, reference name)) with names for the table header.
    Raises:
        CheckpointError, DataError, ConfigError, ModelError: bad input (exit code 2).
    """
    from ..evaluation import DEFAULT_METRICS

    scenario = Scenario.load(checkpoint, forget, reference=reference, split_seed=split_seed,
                             data_dir=data_dir, device=device, trust_model_code=trust_model_code)
    report = scenario.evaluate(scenario.model, metrics=metrics if metrics else DEFAULT_METRICS, seed=seed,
                               batch_size=batch_size, sensitivity_samples=sensitivity_samples,
                               recovery=recovery)
    meta = scenario.meta
    name = str(meta.get("method") or ("original" if not meta.get("forget_spec") else "model"))
    return report, (name, "retrain" if scenario.reference is None else scenario.reference.name)


def evaluate_record(scenario: Scenario, model: nn.Module, record: RunRecord, **settings: Any) -> RunRecord:
    """`record` with the evaluation of `model` (the model it describes) on the scenario, timed.

    `settings` are `mumis.evaluate`'s (metrics, seed, ...); the reference is evaluated once per
    set of settings (`Scenario.evaluate`).
    """
    for ref in ([scenario.reference] if scenario.reference else []) + scenario.floor_references:
        ref.report(scenario.splits, **settings)  # not part of this model's time
    t = time.perf_counter()
    report = scenario.evaluate(model, **settings)
    return record.evaluated(report, time.perf_counter() - t)

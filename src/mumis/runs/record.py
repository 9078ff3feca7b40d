"""`RunRecord`: one run's outcome and, once evaluated, its evaluation.

The one record behind the three files that describe an unlearning result: an unlearning run's
`result.json`, a bench cell's `records/<cell>.json` (also the rows of the retrained and original
models) and a tuning point's row in `tuning.json`. Each file keeps its keys; they are views of
the same fields.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..evaluation import EvaluationReport


@dataclass
class RunRecord:
    """What a run did (method, settings, time, steps, stop reason, ...) and how it evaluated.

    For a trained model's row (the retrained oracle, the original) `method` is its label,
    `config` the training recipe and the unlearning fields are None.
    """

    method: str
    config: dict[str, Any] | None
    time_s: float | None
    steps: int | None = None
    stop_reason: str | None = None
    peak_mem_mb: float | None = None
    status: str | None = None  # "ok" | "diverged" (unlearning runs)
    weights_changed: bool | None = None
    uses_retain: bool | None = None
    data_used: list[str] | None = None  # what the method read: forget, retain, holdout
    batchnorm_mode: str | None = None
    device: str | None = None
    #: the rest of result.json, in its order: seed, split_seed, forget_spec, manifest_hash,
    #: num_forget, world_size, checkpoint, reference, extra
    run: dict[str, Any] = field(default_factory=dict)
    evaluation: dict[str, Any] | None = None  # `EvaluationReport.to_dict()`
    samples: dict[str, Any] | None = None  # per-sample values for the report's histograms
    eval_time_s: float | None = None

    def evaluated(self, report: EvaluationReport, seconds: float) -> RunRecord:
        """This record with `report` (and the seconds it took) as its evaluation."""
        return dataclasses.replace(self, evaluation=report.to_dict(), samples=report.samples(),
                                   eval_time_s=seconds)

    def gap(self, name: str, default: float | None = None) -> float | None:
        """A gap of the evaluation (`gap_paper`, `gap_salun`, `gap_recovery`)."""
        return (self.evaluation or {}).get(name, default)

    def result_json(self) -> dict[str, Any]:
        """The contents of an unlearning run's result.json."""
        r = self.run
        return {
            "method": self.method, "time_s": self.time_s, "steps": self.steps,
            "stop_reason": self.stop_reason, "peak_mem_mb": self.peak_mem_mb,
            **{k: r.get(k) for k in ("seed", "split_seed", "forget_spec", "manifest_hash", "num_forget")},
            "uses_retain": self.uses_retain, "data_used": self.data_used, "device": self.device,
            "world_size": r.get("world_size"),
            "checkpoint": r.get("checkpoint"), "reference": r.get("reference"), "extra": r.get("extra", {}),
            "status": self.status, "weights_changed": self.weights_changed,
            "batchnorm_mode": self.batchnorm_mode,
        }

    def bench_record(self, head: dict[str, Any], *, label: str, role: str, run_dir: str,
                     created: str) -> dict[str, Any]:
        """A bench record: `head` (format, scenario, cell, key, ...), then this run under `label`.

        `role` is "method" for an unlearning cell, "reference" or "original" for a trained model.
        """
        method_cell = role == "method"
        # A trained model's gaps are 0 for the oracle itself (None: no recovery audits ran).
        zero = None if method_cell else 0.0
        audited = "recovery" in (self.evaluation or {})
        rec = {
            **head, "role": role, "method": label, "method_name": self.method if method_cell else None,
            "settings": self.config, "evaluation": self.evaluation,
            "gap_paper": self.gap("gap_paper", zero), "gap_salun": self.gap("gap_salun", zero),
            "gap_recovery": self.gap("gap_recovery", zero if audited else None),
        }
        if method_cell:
            rec["batchnorm_mode"] = self.batchnorm_mode
        rec.update(time_s=self.time_s, peak_mem_mb=self.peak_mem_mb, steps=self.steps,
                   stop_reason=self.stop_reason, eval_time_s=self.eval_time_s)
        if method_cell:
            rec.update(device=self.device, uses_retain=self.uses_retain, data_used=self.data_used)
        rec.update(run_dir=run_dir, samples=self.samples, created=created)
        return rec

    def tuning_row(self, *, index: int, settings: dict[str, Any], run_dir: str) -> dict[str, Any]:
        """A grid point's row in tuning.json (`settings`: the point's grid values)."""
        return {
            "index": index, "settings": settings, "config": {"method": self.method, **(self.config or {})},
            "gap_paper": self.gap("gap_paper"), "gap_salun": self.gap("gap_salun"),
            "metrics": (self.evaluation or {}).get("model"), "time_s": self.time_s, "steps": self.steps,
            "stop_reason": self.stop_reason, "status": self.status,
            "weights_changed": self.weights_changed, "run_dir": run_dir,
        }

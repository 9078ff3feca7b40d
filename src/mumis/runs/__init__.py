"""Runs: the library layer behind `mumis train`, `unlearn`, `evaluate`, `tune`, `bench` and `demo`.

- `Scenario` (`scenario`): a checkpoint, its dataset, a resolved forget set, the splits and the
  reference, loaded once; `Reference`: the retrained model and its evaluation, on first use.
- `unlearn_run` / `unlearn_scenario` (`unlearn`): a method applied to a scenario, written as a
  run directory, the model kept in memory; `UnlearnRun`.
- `evaluate_run`, `evaluate_record` (`evaluate`).
- `RunRecord` (`record`): one record behind result.json, bench records and tuning rows.
- `resolve_method_settings`, `load_method_file` (`settings`); `check_out` and the output-path
  checks (`outputs`); `caching` (`cache`): datasets and checkpoints read once per process.
- `train_run` (`train`): a trained model's run directory.

The command line (the `cli` package) only parses arguments, composes these and prints.
"""

from __future__ import annotations

from typing import Any

from .cache import caching
from .evaluate import evaluate_record, evaluate_run
from .outputs import check_out, check_output_dir, check_output_file
from .record import RunRecord
from .scenario import Reference, Scenario
from .settings import load_method_file, resolve_method_settings
from .unlearn import UnlearnRun, unlearn_run, unlearn_scenario


def __getattr__(name: str) -> Any:
    # Imported on first use: `.train` imports mumis.training, whose package imports this one
    # lazily in turn; either import order works this way.
    if name in ("train_run", "TrainResult"):
        from . import train

        return getattr(train, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Reference", "RunRecord", "Scenario", "TrainResult", "UnlearnRun", "caching", "check_out",
    "check_output_dir", "check_output_file", "evaluate_record", "evaluate_run", "load_method_file",
    "resolve_method_settings", "train_run", "unlearn_run", "unlearn_scenario",
]

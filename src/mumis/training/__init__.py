"""Train original and retrained (oracle) models: SGD with momentum, weight decay and a schedule.

- `recipes`: `TrainConfig` and the named recipes (`quick`, `memorise`) per dataset and model.
- `schedule`: the learning-rate schedule; `augment`: random crops and flips as tensor ops.
- `threads`: one CPU thread for small workloads (`choose_threads`, `torch_threads`).
- `loop`: `train_model`, the seeded, deterministic loop (also under torchrun).

`train_run` (what `mumis train` does: data + forget spec -> run directory) belongs to the runs
layer, `mumis.runs`; the name still resolves here for callers written before it moved.
"""

from __future__ import annotations

from typing import Any

from .augment import augment_batch
from .loop import check_distributed_training, model_accuracy, train_model
from .recipes import (
    RECIPES,
    Schedule,
    TrainConfig,
    dataset_family,
    make_train_config,
    recipe_model_options,
    recipe_settings,
    split_overrides,
)
from .schedule import lr_at
from .threads import SMALL_STEP_MACS, choose_threads, forward_macs, torch_threads


def __getattr__(name: str) -> Any:
    # Kept for earlier callers of mumis.training.train_run; new code imports mumis.runs. Resolved
    # on first use: mumis.runs.train imports this package, so an eager import would be circular.
    if name in ("train_run", "TrainResult"):
        from ..runs import train as _runs_train

        return getattr(_runs_train, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "RECIPES", "SMALL_STEP_MACS", "Schedule", "TrainConfig", "TrainResult", "augment_batch",
    "check_distributed_training", "choose_threads", "dataset_family", "forward_macs", "lr_at",
    "make_train_config", "model_accuracy", "recipe_model_options", "recipe_settings",
    "split_overrides", "torch_threads", "train_model", "train_run",
]

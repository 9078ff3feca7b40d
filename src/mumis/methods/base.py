"""The contract every unlearning method follows, and the loop machinery they share.

A method is a class with a `Config` dataclass (strict, typed, defaulted settings, each declared
with `mumis.config.setting`: help text and allowed range), declared data needs
(`requires_retain`, `needs_holdout`) and capabilities (`needs_double_backward`, `supports_distributed`,
`fast_settings`), and a `run()` that changes the model it is handed (a copy of the caller's,
made by `mumis.unlearn`). Loss-based methods derive from `LossMethod` (`_loop.py`), which owns
the loop; the declarations choose which conformance checks run, as scikit-learn's estimator
tags choose its common checks.

It also declares `batchnorm_mode`, what it does with BatchNorm layers (one of `BATCHNORM_MODES`;
results on BatchNorm models depend on it), with a one-line `batchnorm_note` saying why; the
conformance suite checks the declaration on a BatchNorm model (running statistics change iff
the mode is not "eval").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from ..config import build_config, config_to_dict
from ..exceptions import DataError
from ..registry import Registry

Pair = tuple[torch.Tensor, torch.Tensor]  # (x, y)
HoldoutUse = Literal["no", "optional", "required"]

#: The values of `UnlearningMethod.batchnorm_mode` and what each means while the method runs.
#: `mumis.unlearn` hands the model over in eval mode, so a method that never calls
#: `model.train()` runs in "eval" (the default).
BATCHNORM_MODES: dict[str, str] = {
    "train": "train mode: BatchNorm normalises with batch statistics and updates its running "
             "statistics on the data the method trains on",
    "eval": "eval mode: BatchNorm uses its running statistics and never changes them",
    "recalibrate": "forward passes in eval mode; the method re-estimates the running statistics "
                   "itself, on data it may use",
}


@dataclass
class RunOutput:
    """What a method's `run()` returns (the front door adds model, timing and config)."""

    steps: int
    stop_reason: str
    history: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunContext:
    """Everything a method may use besides its config. `retain` is None for forget-only methods;
    `holdout` (unseen samples of the training distribution) is None unless the method declares
    `needs_holdout` and the caller gave one."""

    forget: Pair
    retain: Pair | None
    num_classes: int
    generator: torch.Generator  # seeded; the only source of randomness a method may use
    device: torch.device
    progress: bool = False
    log: Callable[[dict[str, Any]], None] | None = None
    holdout: Pair | None = None

    def record(self, history: list[dict[str, Any]], row: dict[str, Any]) -> None:
        """Append a row to the run's history and pass it to the caller's `log`, if any."""
        history.append(row)
        if self.log is not None:
            self.log(row)


class UnlearningMethod:
    """Base class. Subclasses set the class attributes and implement `run`."""

    name: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    Config: ClassVar[type]
    requires_retain: ClassVar[bool] = False  # needs remaining data
    #: a held-out validation split (samples no model trained on): "no" (never handed one),
    #: "optional" (used when given) or "required"
    needs_holdout: ClassVar[HoldoutUse] = "no"
    needs_double_backward: ClassVar[bool] = False  # differentiates input gradients
    supports_distributed: ClassVar[bool] = False  # runs under torchrun (every LossMethod does)
    batchnorm_mode: ClassVar[str] = "eval"  # a key of BATCHNORM_MODES
    batchnorm_note: ClassVar[str] = ""  # why / where, in one line ("" = the mode's meaning)

    def __init__(self, **config: Any) -> None:
        self.config: Any = build_config(self.Config, config, what=f"method {self.name!r}")

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return config_to_dict(cls.Config())

    @classmethod
    def fast_settings(cls) -> dict[str, Any]:
        """Settings the conformance suite adds for a run of a few steps on its tiny case."""
        return {}

    @classmethod
    def setting_docs(cls) -> dict[str, str]:
        """Per-setting help, from `field(metadata={"help": ...})`."""
        return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(cls.Config)}

    @classmethod
    def batchnorm_text(cls) -> str:
        """`mode: note` for display (the mode's meaning when the class gives no note)."""
        return f"{cls.batchnorm_mode}: {cls.batchnorm_note or BATCHNORM_MODES.get(cls.batchnorm_mode, '?')}"

    @classmethod
    def data_needs(cls) -> str:
        base = "forget + retain" if cls.requires_retain else "forget only"
        return base + {"no": "", "optional": " (+ holdout if given)", "required": " + holdout"}[cls.needs_holdout]

    @classmethod
    def data_used(cls, *, retain: bool, holdout: bool) -> list[str]:
        """The data a run of this method reads: forget, then retain / holdout when handed them."""
        return ["forget"] + (["retain"] if retain else []) + (["holdout"] if holdout else [])

    def run(self, model: nn.Module, ctx: RunContext) -> RunOutput:
        raise NotImplementedError


METHODS: Registry[type[UnlearningMethod]] = Registry("method")


def register_method(cls: type[UnlearningMethod]) -> type[UnlearningMethod]:
    """Class decorator: add a method to the registry under its `name`."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    return METHODS.register(cls.name, cls)


def check_labels(y: torch.Tensor, num_classes: int, what: str) -> None:
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise DataError(
            f"{what} labels must be in 0..{num_classes - 1} (the model has {num_classes} outputs); "
            f"got values from {int(y.min())} to {int(y.max())}"
        )


def batches(n: int, batch_size: int, generator: torch.Generator) -> torch.Tensor:
    """A seeded permutation of range(n) cut into batches (batch_size <= 0 means one full batch)."""
    perm = torch.randperm(n, generator=generator)
    size = n if batch_size <= 0 else batch_size
    return perm.split(size)  # type: ignore[return-value]

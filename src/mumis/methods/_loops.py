"""Tiny shared pieces of the fine-tuning baselines (finetune, grad_ascent, neggrad_plus,
random_label, l1_sparse): a help-text field, an SGD optimiser, train mode for the run, and an
epoch loop over seeded batches. Other methods may import them; keep this file small.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import field
from typing import Any

import torch
from torch import nn

from .. import distributed
from .base import RunContext, batches


def h(text: str, **kw: Any) -> Any:
    """A dataclass field with a help string (shown by `mumis methods NAME`)."""
    return field(metadata={"help": text}, **kw)


def sgd(model: nn.Module, lr: float, momentum: float = 0.0, weight_decay: float = 0.0) -> torch.optim.SGD:
    """SGD on the trainable parameters (the SalUn code's optimiser for every baseline)."""
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)


@contextlib.contextmanager
def train_mode(model: nn.Module) -> Iterator[None]:
    """Train mode inside the block (the baselines' code fine-tunes in train mode); eval after."""
    model.train()
    try:
        yield
    finally:
        model.eval()


def nonfinite_stop(value: float, step: int, epoch: int) -> str | None:
    """The stop reason when a batch loss is inf or NaN (None when it is finite): the caller
    returns before taking that step, so the weights stay those of the last finite step."""
    if math.isfinite(value):
        return None
    return f"non-finite loss at step {step + 1} (epoch {epoch}); stopped before it"


def epoch_loop(
    ctx: RunContext,
    opt: torch.optim.Optimizer,
    n: int,
    *,
    epochs: int,
    batch_size: int,
    loss_fn: Callable[[torch.Tensor, int], torch.Tensor],
) -> tuple[int, str, list[dict[str, Any]]]:
    """Minimise `loss_fn(idx, epoch)` over `epochs` passes of seeded batches of range(n).

    `idx` is a batch of indices (on ctx.device) into the data the caller chose; `epoch` is
    0-based (for schedules such as l1_sparse's decaying penalty). A non-finite loss stops the
    run before that step is taken (the weights stay those of the last finite step).

    Under torchrun (`mumis.distributed`) every rank draws the same global batch, calls
    `loss_fn` on its contiguous part, weights it by the part's share, and the gradients and the
    loss are all-reduced: the same steps as one process, to float tolerance (`loss_fn` must be a
    mean over the batch plus terms that do not depend on it). A rank whose part is empty calls
    `loss_fn` on one sample with weight 0, so random draws inside `loss_fn` stay in step.

    Returns:
        (steps, stop_reason, history): history has the start row and one row per epoch with
        the mean batch loss.
    """
    history: list[dict[str, Any]] = [{"step": 0}]
    step = 0
    dist_on = distributed.is_distributed()
    params = [p for group in opt.param_groups for p in group["params"]]
    for epoch in range(epochs):
        total, count = 0.0, 0
        for idx in batches(n, batch_size, ctx.generator):
            if dist_on:
                lo, hi = distributed.shard_bounds(len(idx))
                part, share = (idx[lo:hi], (hi - lo) / len(idx)) if hi > lo else (idx[:1], 0.0)
                loss = loss_fn(part.to(ctx.device), epoch) * share
                value = float(distributed.all_reduce_sum(loss.detach().reshape(1)))
            else:
                loss = loss_fn(idx.to(ctx.device), epoch)
                value = float(loss.detach())
            stop = nonfinite_stop(value, step, epoch + 1)
            if stop is not None:
                return step, stop, history
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if dist_on:
                distributed.all_reduce_grads(params)
            opt.step()
            step += 1
            total, count = total + value, count + 1
        row = {"step": step, "epoch": epoch + 1, "loss": total / max(count, 1)}
        ctx.record(history, row)
    return step, f"epochs ({epochs}) done", history


def check_ranges(method: str, checks: list[tuple[bool, str]]) -> None:
    """Raise ConfigError for the first failed (ok, message) pair (for Config.validate)."""
    from ..exceptions import ConfigError

    for ok, msg in checks:
        if not ok:
            raise ConfigError(f"{method}: {msg}")


def sgd_checks(cfg: Any) -> list[tuple[bool, str]]:
    """Range checks of the common settings epochs, batch_size, lr, momentum, weight_decay."""
    return [
        (cfg.epochs >= 1, "epochs must be >= 1"),
        (cfg.batch_size >= 0, "batch_size must be >= 0 (0 = full batch)"),
        (cfg.lr > 0 and math.isfinite(cfg.lr), "lr must be a positive number"),
        (0 <= cfg.momentum < 1, "momentum must be in [0, 1)"),
        (cfg.weight_decay >= 0, "weight_decay must be >= 0"),
    ]

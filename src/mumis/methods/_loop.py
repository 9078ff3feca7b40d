"""The loop every loss-based method runs: `LossMethod`.

A method is a loss over a batch of indices (`compute_loss`, as in open-unlearning) plus the data
it walks (`prepare`); the base runs the rest, the same way for every method:

- batching: each epoch, each pass (`passes`: one by default) draws a seeded permutation of its
  data's indices and cuts it into batches (`batch_size` <= 0: one full batch);
- the optimiser (`make_optimizer`: SGD with the config's lr / momentum / weight_decay) and the
  per-epoch schedule (`on_epoch_start`);
- the divergence guard: a non-finite batch loss stops the run before that step is taken
  (`on_nonfinite` says what is left; by default the weights of the last finite step);
- the budget (`budget`: epochs and/or max_steps) and a method's own stopping rule (`check_stop`);
- history rows (a start row, one per epoch from `epoch_row`), progress, and under torchrun the
  gradient reduction: every rank draws the same global batch, computes the loss of its
  contiguous part weighted by the part's share, and the loss and gradients are all-reduced, so
  N processes take the steps of one process (to float tolerance). A rank whose part is empty
  computes one sample with weight 0, so random draws inside `compute_loss` stay in step.
  `compute_loss` must therefore be a mean over the batch plus terms that do not depend on it,
  and draw any random numbers for the global batch (`Batch.full`) before taking its part.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn
from tqdm import tqdm

from .. import distributed
from .base import RunContext, RunOutput, UnlearningMethod, batches


@dataclass
class Batch:
    """One step's batch: indices into the data of the pass that drew it."""

    full: torch.Tensor  # (B,) the global batch, the same on every rank (on ctx.device)
    part: slice  # this rank's contiguous part of `full` (all of it in one process)
    epoch: int  # 0-based

    @property
    def idx(self) -> torch.Tensor:
        """This rank's indices: what the loss is computed on."""
        return self.full[self.part]


@dataclass
class Pass:
    """One walk over `n` items per epoch, minimising `loss`; `name` keys its stats."""

    n: int
    batch_size: int
    loss: Callable[[nn.Module, Batch, RunContext], torch.Tensor]
    name: str = "loss"


@dataclass
class PassStats:
    total: float = 0.0  # sum of the batch losses
    count: int = 0
    last: float = 0.0  # the last batch loss

    @property
    def mean(self) -> float:
        return self.total / max(self.count, 1)


@dataclass
class LoopState:
    """What the hooks see of a running loop."""

    ctx: RunContext
    history: list[dict[str, Any]]
    step: int = 0
    last_loss: float = 0.0  # the last batch loss (all-reduced under torchrun)
    bar: Any = None
    progress_keys: tuple[str, ...] = ()  # the row values the progress bar shows (() = every number)
    aborted: bool = False  # stopped by the divergence guard: no epoch row for the partial epoch
    stats: dict[str, PassStats] = field(default_factory=dict)

    def record(self, row: dict[str, Any]) -> None:
        """Add a history row (and show its numbers on the progress bar)."""
        self.ctx.record(self.history, row)
        if self.bar is not None:
            self.bar.set_postfix({k: f"{v:.4g}" for k, v in row.items() if isinstance(v, float)
                                  and k not in ("step", "epoch") and k in (self.progress_keys or row)})


def percent_correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Percent of (x, y) the model classifies right (no graph; for history rows)."""
    with torch.no_grad():
        return 100.0 * float((model(x).argmax(1) == y).float().mean())


def nonfinite_stop(step: int, epoch: int) -> str:
    """The stop reason for an inf / NaN batch loss at step `step + 1` (epoch 1-based)."""
    return f"non-finite loss at step {step + 1} (epoch {epoch}); stopped before it"


class LossMethod(UnlearningMethod):
    """Base of the loss-based methods: subclasses implement `compute_loss` (and `prepare`)."""

    supports_distributed: ClassVar[bool] = True
    #: The data the default pass walks ("forget" or "retain"); `prepare` may set another.
    walks: ClassVar[str] = "forget"
    #: History values shown on the progress bar (() = every number of the row).
    progress_keys: ClassVar[tuple[str, ...]] = ()

    # ------------------------------------------------------------------ hooks
    def prepare(self, model: nn.Module, ctx: RunContext) -> dict[str, Any]:
        """Set up the run (model still in the caller's eval mode); returns start-row extras.

        The default walks `ctx.forget` or `ctx.retain` (`walks`) as `self.x`, `self.y`."""
        data = ctx.retain if self.walks == "retain" else ctx.forget
        assert data is not None  # the front door enforces requires_retain
        self.x, self.y = data
        return {}

    def compute_loss(self, model: nn.Module, batch: Batch, ctx: RunContext) -> torch.Tensor:
        """The mean loss of `batch` (on `batch.idx`); minimised."""
        raise NotImplementedError

    def parameters_to_update(self, model: nn.Module, ctx: RunContext) -> list[nn.Parameter]:
        return [p for p in model.parameters() if p.requires_grad]

    def make_optimizer(self, params: list[nn.Parameter]) -> torch.optim.Optimizer:
        """SGD with the config's lr and, where it has them, momentum and weight_decay."""
        cfg = self.config
        return torch.optim.SGD(params, lr=cfg.lr, momentum=getattr(cfg, "momentum", 0.0),
                               weight_decay=getattr(cfg, "weight_decay", 0.0))

    def budget(self) -> tuple[int | None, int]:
        """(epochs or None for no limit, max_steps or 0 for no limit)."""
        return self.config.epochs, getattr(self.config, "max_steps", 0)

    def passes(self, epoch: int) -> list[Pass]:
        """The walks of one epoch (0-based); one over (self.x, self.y) by default."""
        return [Pass(len(self.x), self.config.batch_size, self.compute_loss)]

    def on_epoch_start(self, epoch: int, opt: torch.optim.Optimizer, ctx: RunContext) -> None:
        """Before the epoch's batches are drawn (schedules, fresh random labels)."""

    def adjust_grads(self, params: list[nn.Parameter]) -> None:
        """Change the (reduced) `.grad` fields before the optimiser step (masks, projections)."""

    def after_update(self) -> None:
        """After each optimiser step (e.g. put constrained weights back on their sphere)."""

    def check_stop(self, model: nn.Module, state: LoopState) -> str | None:
        """A method's own stopping rule, asked at step 0 and after every step; None = go on."""
        return None

    def on_nonfinite(self, model: nn.Module, state: LoopState, epoch: int) -> str:
        """Stop reason for a non-finite loss (the step was not taken)."""
        return nonfinite_stop(state.step, epoch + 1)

    def epoch_row(self, model: nn.Module, state: LoopState) -> dict[str, Any] | None:
        """History values after an epoch (None: no epoch rows); default the mean batch loss."""
        return {"loss": next(iter(state.stats.values()), PassStats()).mean}

    def result_extra(self, model: nn.Module, stop_reason: str) -> dict[str, Any]:
        return {}

    # ------------------------------------------------------------------ the loop
    def run(self, model: nn.Module, ctx: RunContext) -> RunOutput:
        distributed.broadcast_module(model)  # identical start even if the ranks loaded differently
        state = LoopState(ctx=ctx, history=[{"step": 0, **self.prepare(model, ctx)}],
                          progress_keys=self.progress_keys)
        params = self.parameters_to_update(model, ctx)
        opt = self.make_optimizer(params)
        reason = self.check_stop(model, state)
        if reason is None:
            show = ctx.progress and sys.stderr.isatty() and distributed.is_main()
            with self.loop_mode(model), tqdm(total=self.budget()[1] or None, desc=self.name,
                                             leave=False, disable=not show) as state.bar:
                reason = self._epochs(model, state, opt, params)
        return RunOutput(steps=state.step, stop_reason=reason, history=state.history,
                         extra=self.result_extra(model, reason))

    @contextlib.contextmanager
    def loop_mode(self, model: nn.Module) -> Iterator[None]:
        """Train mode for methods that declare batchnorm_mode "train"; eval mode after."""
        if self.batchnorm_mode != "train":
            yield
            return
        model.train()
        try:
            yield
        finally:
            model.eval()

    def _epochs(self, model: nn.Module, state: LoopState, opt: torch.optim.Optimizer,
                params: list[nn.Parameter]) -> str:
        epochs, max_steps = self.budget()
        for epoch in itertools.count() if epochs is None else range(epochs):
            self.on_epoch_start(epoch, opt, state.ctx)
            state.stats = {}
            stop: str | None = None
            for walk in self.passes(epoch):
                stop = self._walk(model, state, opt, params, walk, epoch, max_steps)
                if stop is not None:
                    break
            if state.aborted:
                return str(stop)
            row = self.epoch_row(model, state)
            if row is not None:
                state.record({"step": state.step, "epoch": epoch + 1, **row})
            if stop is not None:
                return stop
        return f"epochs ({epochs}) done"

    def _walk(self, model: nn.Module, state: LoopState, opt: torch.optim.Optimizer,
              params: list[nn.Parameter], walk: Pass, epoch: int, max_steps: int) -> str | None:
        """One pass's batches; returns a stop reason, or None when the pass is done."""
        stats = state.stats.setdefault(walk.name, PassStats())
        for full in batches(walk.n, walk.batch_size, state.ctx.generator):
            loss, value = self._batch_loss(model, state.ctx, walk, Batch(full.to(state.ctx.device), slice(None), epoch))
            state.last_loss = value
            if not math.isfinite(value):
                state.aborted = True
                return self.on_nonfinite(model, state, epoch)
            self._step(loss, opt, params)
            state.step += 1
            stats.total, stats.count, stats.last = stats.total + value, stats.count + 1, value
            state.bar.update(1)
            stop = self.check_stop(model, state)
            if stop is None and max_steps and state.step >= max_steps:
                stop = f"max_steps ({max_steps}) reached"
            if stop is not None:
                return stop
        return None

    @staticmethod
    def _batch_loss(model: nn.Module, ctx: RunContext, walk: Pass, batch: Batch) -> tuple[torch.Tensor, float]:
        """(the loss to differentiate, the batch loss's value); under torchrun the loss is this
        rank's share and the value the all-reduced global batch loss."""
        if not distributed.is_distributed():
            loss = walk.loss(model, batch, ctx)
            return loss, float(loss.detach())
        lo, hi = distributed.shard_bounds(len(batch.full))
        part, share = (slice(lo, hi), (hi - lo) / len(batch.full)) if hi > lo else (slice(0, 1), 0.0)
        local = walk.loss(model, Batch(batch.full, part, batch.epoch), ctx) * share
        return local, float(distributed.all_reduce_sum(local.detach().reshape(1)))

    def _step(self, loss: torch.Tensor, opt: torch.optim.Optimizer, params: list[nn.Parameter]) -> None:
        opt.zero_grad(set_to_none=True)
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        for p, g in zip(params, grads, strict=True):
            p.grad = g
        distributed.all_reduce_grads(params)  # a no-op in one process
        self.adjust_grads(params)
        opt.step()
        self.after_update()

"""MU-Mis's monitor and stopping logic, as the `check_stop` side of `MuMis` (methods/mumis.py):
the readings (full, light, or from the cached head), the divergence guard, the stopping rule with
its best-reading restore, and the holdout-guided stop. A mixin: `MuMis.prepare` sets the state
it reads (the attributes annotated below).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .. import distributed
from ._loop import LoopState
from ._mumis_monitor import (
    CachedHead,
    HoldoutGuide,
    Stopper,
    _light_monitor,
    _logits,
    _Monitor,
    _monitor,
    _monitor_sharded,
    diverged,
)


class MuMisStopping:
    """The monitor and the stop of a MU-Mis run (see `MuMis`)."""

    config: Any  # MuMisConfig
    params: list[nn.Parameter]
    x_mon: torch.Tensor
    y_mon: torch.Tensor
    y_read: torch.Tensor  # the labels of what the cached head's "forget" set is (y_mon, or the whole forget set)
    c_mon: torch.Tensor | None
    k: int
    m0: _Monitor
    stopper: Stopper
    guide: HoldoutGuide | None
    head: CachedHead | None
    good_state: list[torch.Tensor]
    good_step: int
    best_state: list[torch.Tensor]
    best_step: int
    pending: dict[str, Any] | None
    optimizer: torch.optim.Optimizer
    backtracks: int

    def _read(self, model: nn.Module, step: int | None = None) -> _Monitor:
        """The monitor reading; at `step`, a light one (forward passes) where the forget_acc rule
        allows (see `monitor_full_every`)."""
        cfg = self.config
        if step is not None and cfg.stop == "forget_acc" and step != cfg.max_steps and (
                step // cfg.monitor_every) % cfg.monitor_full_every:
            return self._light(model)
        read = _monitor_sharded if distributed.is_distributed() else _monitor
        m = read(model, self.x_mon, self.y_mon, self.c_mon, cfg.norm, self.k)
        if self.y_read is not self.y_mon:  # the sensitivities on the subsample, the accuracy on the whole set
            m.forget_acc = self._light(model).forget_acc
        return m

    def _save(self) -> list[torch.Tensor]:
        """A copy of the weights the run moves (nothing else changes during a run)."""
        return [p.detach().clone() for p in self.params]

    def _load(self, saved: list[torch.Tensor]) -> None:
        with torch.no_grad():
            for p, q in zip(self.params, saved, strict=True):
                p.copy_(q)

    def _light(self, model: nn.Module) -> _Monitor:
        """Forget accuracy and logits on the monitor subsample, from the cached head if any (on
        the whole forget set when the head holds it: a partial target)."""
        logits = self.head.logits("forget") if self.head is not None else _logits(model, self.x_mon)
        return _light_monitor(logits, self.y_read)

    def _reading(self, model: nn.Module, state: LoopState) -> _Monitor | None:
        """This step's reading: a history row every monitor_every steps and at max_steps (full
        or light, see `monitor_full_every`); in between, with a cached head, a light reading
        (recorded only if the run stops on it), so the forget_acc rule stops on the first step
        that reaches its target; otherwise None (no reading)."""
        cfg, step = self.config, state.step
        if step % cfg.monitor_every == 0 or step == cfg.max_steps:
            m = self._read(model, step)
        elif self.head is not None and cfg.stop == "forget_acc":
            m = self._light(model)
            self.pending = {"step": step, "batch_loss": state.last_loss, **m.row()}
            return m
        else:
            return None
        self.pending = None
        state.record({"step": step, "batch_loss": state.last_loss, **m.row()})
        return m

    def check_stop(self, model: nn.Module, state: LoopState) -> str | None:
        """The monitor (see `_reading`), the divergence guard (restores the weights of the last
        good reading), then the stopping rule."""
        step = state.step
        if step == 0:
            reason = self.stopper(self.m0, 0)
            if reason is None and self.guide is not None:
                return self.guide.settled(self.m0.forget_acc)
            return None if reason is None else f"{reason} before any update"
        if self.guide is not None:
            reason = self._guided_stop(model, state)
        elif (m := self._reading(model, state)) is None:
            return None
        else:
            reason = self._decide(m, state)
            if reason is not None and self.pending is not None:  # the history ends on the stopping step
                state.record(self.pending)
        if reason is not None and self.backtracks:
            reason += f"; {self.backtracks} backtracks (lr {self.optimizer.param_groups[0]['lr']:g})"
        return reason

    def _band(self) -> float:
        """How far below its target a reading may land: `overshoot`, and at least one monitor
        sample read (a reading cannot resolve less)."""
        return max(self.config.overshoot, 100.0 / len(self.y_read))

    def _backtrack(self, state: LoopState, overshot: bool) -> bool:
        """A step too large for the target (`overshot`: more than `overshoot` points below it; or,
        with a holdout, past the utility guard): undo the steps since the last good reading and
        halve the learning rate, at most `max_backtracks` times and never on the last step of the
        budget (then False: decide as usual)."""
        if not overshot or self.backtracks >= self.config.max_backtracks or state.step >= self.config.max_steps:
            return False
        self._load(self.good_state)
        self.backtracks += 1
        for group in self.optimizer.param_groups:
            group["lr"] *= 0.5
        state.record({"step": state.step, "backtrack_to": self.good_step, "lr": self.optimizer.param_groups[0]["lr"]})
        return True

    def _decide(self, m: _Monitor, state: LoopState) -> str | None:
        cfg, step = self.config, state.step
        if (why := diverged(m, self.m0, cfg.divergence_factor)) is not None:
            self._load(self.good_state)
            return f"diverged at step {step} ({why}); restored weights of step {self.good_step}"
        if cfg.stop == "forget_acc" and self._backtrack(state, m.forget_acc < self.stopper.target - self._band()):
            return None
        self.good_state, self.good_step = self._save(), step
        reason = self.stopper(m, step)
        if cfg.stop != "forget_acc":
            return reason
        if self.stopper.improved:  # the lowest forget accuracy so far: the state to return to
            self.best_state, self.best_step = self.good_state, step
        # The forget accuracy can rise again while the loss still falls (the irrelevant term
        # keeps pushing): a run that ends without reaching its target returns its best reading
        # (its lowest forget accuracy, the earliest of equals).
        if (reason is None and step != cfg.max_steps) or (reason is not None and "plateaued" not in reason):
            return reason
        if 0 < self.best_step != step:  # no reading below the start: nothing better to return to
            self._load(self.best_state)
            self.good_step = self.best_step
            reason = (reason or f"max_steps ({cfg.max_steps}) reached") + (
                f"; restored weights of step {self.best_step} (forget accuracy {self.stopper.best_acc:.1f}%)")
        return reason

    def _guided_stop(self, model: nn.Module, state: LoopState) -> str | None:
        """The holdout stop, after every step: forget and holdout accuracy (from the cached head
        or forward passes), a history row every monitor_every steps (its full readings feed the
        divergence guard); keep the best step, and on any stop (divergence included) return to it
        (the original weights when no step beat step 0)."""
        guide, step, cfg = self.guide, state.step, self.config
        assert guide is not None
        h = guide.read(model)
        last = step >= cfg.max_steps
        if step % cfg.monitor_every == 0 or last:
            m = self._read(model, step)
            state.record({"step": step, "batch_loss": state.last_loss, **m.row(), "holdout_acc": h.acc,
                          "holdout_loss": h.loss})
        else:
            m = self._light(model)
        why = diverged(m, self.m0, cfg.divergence_factor)
        if why is None and self._backtrack(state, guide.broken(h) or m.forget_acc < guide.target - self._band()):
            return None
        if why is not None:
            reason: str | None = f"diverged at step {step} ({why})"
        else:
            best, reason = guide(step, m.forget_acc, h, last=last)
            if best:
                self.best_state = self._save()
        if reason is None:
            self.good_state, self.good_step = self._save(), step
            return None
        self._load(self.best_state)
        self.good_step = guide.best_step
        return f"{reason}; {guide.kept()}"

    def on_nonfinite(self, model: nn.Module, state: LoopState, epoch: int) -> str:
        if self.guide is not None:
            self._load(self.best_state)
            return f"diverged at step {state.step + 1} (non-finite loss); {self.guide.kept()}"
        self._load(self.good_state)
        return f"diverged at step {state.step + 1} (non-finite loss); restored weights of step {self.good_step}"

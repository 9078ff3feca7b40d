"""MU-Mis's stopping statistics: the monitor reading on a fixed forget subsample (sharded under
torchrun), the stopping rules (`Stopper`) and the divergence test. Used by `methods/mumis.py`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from .. import distributed
from ..functional import norms, other_classes, selected_logit_gradients

StopRule = Literal["forget_acc", "published", "growth", "v1", "none"]


@dataclass
class _Monitor:
    """Stopping statistics on the fixed forget subsample (no graph kept). A light reading
    (`_light_monitor`, forward passes only) has no sensitivities: those fields are None."""

    s_target: float | None  # mean S_c
    s_irrelevant: float | None  # S': mean over samples (and irrelevant classes) of S_k
    s_irrelevant_sq: float | None  # mean of S_k^2, the published loss's irrelevant term
    loss: float | None  # objective with the mean over all irrelevant classes (v1 rule)
    forget_acc: float  # percent, on the subsample
    max_logit: float

    def row(self) -> dict[str, float]:
        """The reading as a history row's fields (a light reading's missing ones left out)."""
        return {k: v for k, v in vars(self).items() if v is not None}


def _light_monitor(logits: torch.Tensor, y: torch.Tensor) -> _Monitor:
    """Forget accuracy and max |logit| from the monitor subsample's logits: what the forget_acc
    rule and the logit guard need, from forward passes only (or none, with a `CachedHead`)."""
    return _Monitor(s_target=None, s_irrelevant=None, s_irrelevant_sq=None, loss=None,
                    forget_acc=100.0 * float((logits.argmax(1) == y).float().mean()),
                    max_logit=float(logits.abs().max()))


@torch.no_grad()
def _logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The model's logits on `x`, in chunks, no graph."""
    return torch.cat([model(x[i : i + 1024]) for i in range(0, len(x), 1024)])


class CachedHead:
    """Logits from the last layer's inputs, recorded once: while only the last layer moves
    (`update=last`), what feeds it does not change, so a reading of the forget or holdout
    accuracy costs one small matrix product instead of a forward pass through the network.

    `build` records the inputs with a forward hook and returns None (callers then run forward
    passes) unless the layer takes one tensor and its output is the model's logits (to float
    tolerance): a model that transforms them after its last layer is never read from the cache.
    """

    def __init__(self, layer: nn.Module, inputs: dict[str, torch.Tensor]) -> None:
        self.layer, self.inputs = layer, inputs

    @classmethod
    def build(cls, model: nn.Module, layer: nn.Module, sets: dict[str, torch.Tensor]) -> CachedHead | None:
        if layer is model:
            return None
        seen: list[tuple[Any, ...]] = []
        hook = layer.register_forward_hook(lambda _m, args, _out: seen.append(args))
        inputs, outputs = {}, {}
        try:
            for name, x in sets.items():
                seen.clear()
                outputs[name] = _logits(model, x)
                if not seen or any(len(a) != 1 or not isinstance(a[0], torch.Tensor) for a in seen):
                    return None
                inputs[name] = torch.cat([a[0].detach() for a in seen])
        finally:
            hook.remove()
        head = cls(layer, inputs)
        # to float tolerance: the layer on all inputs at once may round differently from chunks
        same = all(head.logits(name).shape == out.shape and torch.allclose(head.logits(name), out, rtol=1e-5,
                                                                           atol=1e-5)
                   for name, out in outputs.items())
        return head if same else None

    @torch.no_grad()
    def logits(self, name: str) -> torch.Tensor:
        return self.layer(self.inputs[name])


def _monitor(model: nn.Module, x: torch.Tensor, y: torch.Tensor, irrelevant: torch.Tensor | None,
             norm: str, k: int) -> _Monitor:
    """Read the stopping statistics on the monitor subsample.

    `irrelevant` is a fixed (M,) irrelevant class per monitor sample, drawn once, so S'(t) is a
    smooth curve at the cost of two gradient calls; None averages all K-1 other classes (K-1
    calls: less variance across samples, K/2 times the cost).
    """
    x = x.detach().requires_grad_(True)
    logits = model(x)  # (M, K)
    classes = [irrelevant] if irrelevant is not None else list(other_classes(y, k).T)
    sq_t = norms(selected_logit_gradients(logits, x, y, retain_graph=True), "squared")
    s_irr = torch.zeros_like(sq_t)
    sq_irr = torch.zeros_like(sq_t)
    for j, cls in enumerate(classes):
        sq = norms(selected_logit_gradients(logits, x, cls, retain_graph=j < len(classes) - 1), "squared")
        s_irr += sq.sqrt()
        sq_irr += sq
    s_irr, sq_irr = s_irr / len(classes), sq_irr / len(classes)
    per_sample = sq_t - sq_irr if norm == "squared" else sq_t.sqrt() - s_irr
    return _Monitor(
        s_target=float(sq_t.sqrt().mean()),
        s_irrelevant=float(s_irr.mean()),
        s_irrelevant_sq=float(sq_irr.mean()),
        loss=float(per_sample.mean()),
        forget_acc=100.0 * float((logits.argmax(1) == y).float().mean()),
        max_logit=float(logits.detach().abs().max()),
    )


def _monitor_sharded(model: nn.Module, x: torch.Tensor, y: torch.Tensor, irrelevant: torch.Tensor | None,
                     norm: str, k: int) -> _Monitor:
    """`_monitor` under torchrun: each rank reads its contiguous part of the monitor subsample and
    the sums (max for the logits) are all-reduced, so every rank gets the same statistics and the
    stopping rule and divergence guard decide the same on all ranks."""
    m = len(y)
    lo, hi = distributed.shard_bounds(m)
    sums = torch.zeros(5, dtype=torch.float64)  # S_c, S', S'^2, loss, correct
    top = torch.full((1,), -math.inf, dtype=torch.float64)
    if hi > lo:
        part = _monitor(model, x[lo:hi], y[lo:hi], None if irrelevant is None else irrelevant[lo:hi], norm, k)
        n = hi - lo
        sums = torch.tensor([part.s_target, part.s_irrelevant, part.s_irrelevant_sq, part.loss,
                             part.forget_acc / 100.0], dtype=torch.float64) * n
        top[0] = part.max_logit
    sums = distributed.all_reduce_sum(sums) / m
    top = distributed.all_reduce_max(top)
    return _Monitor(s_target=float(sums[0]), s_irrelevant=float(sums[1]), s_irrelevant_sq=float(sums[2]),
                    loss=float(sums[3]), forget_acc=100.0 * float(sums[4]), max_logit=float(top[0]))


class Stopper:
    """A stopping rule evaluated on successive monitor readings (the first one is step 0).

    Rules: `forget_acc` (forget accuracy <= target), `published` (S' turned upward after dipping
    below S'(0), and S'(t)/S'(0) > delta), `growth` (S'(t)/S'(0) > delta, no dip needed),
    `v1` (mean loss decrease since the start >= delta), `none` (only max_steps stops).
    `forget_acc` also stops when the forget accuracy has not reached a new low for `patience`
    steps (a few resistant samples must not keep the run going until max_steps).
    """

    def __init__(self, rule: StopRule, *, delta: float, target_forget_acc: float, start: _Monitor,
                 patience: int = 0) -> None:
        self.rule, self.delta, self.target, self.patience = rule, delta, target_forget_acc, patience
        self.start = start
        self.s_min = start.s_irrelevant
        self.dipped = False
        self.best_acc, self.best_step = start.forget_acc, 0
        self.improved = False  # the last reading set a new low of the forget accuracy

    def __call__(self, m: _Monitor, step: int) -> str | None:
        """Reason to stop after reading `m` at `step`, or None to go on."""
        ratio = None if m.s_irrelevant is None or self.start.s_irrelevant is None else (
            m.s_irrelevant / max(self.start.s_irrelevant, 1e-12))
        reason = None
        self.improved = m.forget_acc < self.best_acc
        if self.improved:
            self.best_acc, self.best_step = m.forget_acc, step
        if self.rule == "forget_acc" and m.forget_acc <= self.target:
            reason = f"forget accuracy {m.forget_acc:.1f}% <= target {self.target:g}%"
        elif self.rule == "forget_acc" and self.patience and step - self.best_step >= self.patience:
            reason = (f"forget accuracy plateaued at {self.best_acc:.1f}% (no new low in {self.patience} "
                      f"steps; target {self.target:g}%)")
        elif self.rule == "published" and ratio is not None and self.dipped and ratio > self.delta \
                and m.s_irrelevant is not None and self.s_min is not None and m.s_irrelevant > self.s_min:
            reason = f"S' turned up after its dip and S'(t)/S'(0) = {ratio:.3f} > delta {self.delta:g}"
        elif self.rule == "growth" and ratio is not None and ratio > self.delta:
            reason = f"S'(t)/S'(0) = {ratio:.3f} > delta {self.delta:g}"
        elif self.rule == "v1" and m.loss is not None and self.start.loss is not None \
                and self.start.loss - m.loss >= self.delta:
            reason = f"mean loss decrease {self.start.loss - m.loss:.4g} >= delta {self.delta:g}"
        if m.s_irrelevant is not None and self.s_min is not None and m.s_irrelevant < self.s_min:
            self.s_min, self.dipped = m.s_irrelevant, True
        return reason


def diverged(m: _Monitor, m0: _Monitor, factor: float) -> str | None:
    """Why reading `m` shows a diverging run (against the start reading `m0`), or None."""
    values = (m.s_target, m.s_irrelevant, m.loss, m.max_logit)
    if not all(math.isfinite(v) for v in values if v is not None):
        return "non-finite sensitivity or logits"
    if m.s_irrelevant is not None and m0.s_irrelevant is not None and m.s_irrelevant > factor * m0.s_irrelevant:
        return f"irrelevant sensitivity exploded ({m.s_irrelevant:.3g} > {factor:g} x start)"
    if m.max_logit > factor * max(m0.max_logit, 1.0):
        return f"logits exploded (max |logit| {m.max_logit:.3g} > {factor:g} x start)"
    return None


@dataclass
class _HoldoutReading:
    acc: float  # percent, on the whole holdout
    loss: float  # mean cross-entropy on the holdout
    flips: int = 0  # holdout samples whose correctness differs from the original model's


def _holdout_scores(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(correct, cross-entropy) per holdout sample."""
    return logits.argmax(1) == y, torch.nn.functional.cross_entropy(logits, y, reduction="none")


class HoldoutGuide:
    """MU-Mis's stop with a holdout: make the forget set look like unseen samples of its classes.

    The target is the forget accuracy a set of unseen samples with the forget set's class
    mix gets from the original model: per class, its holdout accuracy (0 for a class the holdout
    lacks: the retrained model never learnt a class that is wholly forgotten), weighted by the
    class's share. Each reading is scored by its distance to that target plus twice the drop of
    the holdout accuracy (retain and test accuracy fall with it); the run keeps the best-scored
    reading, step 0 included, so it is never scored worse than doing nothing. A reading is kept
    only if its gain over step 0 exceeds what the holdout cannot resolve: two standard errors of
    the (twice-weighted) paired change of the holdout accuracy, 4 x 100 sqrt(flips) / n points,
    `flips` being the holdout samples whose correctness changed (McNemar's standard error). A
    600-image holdout with 10 changed answers cannot rule out a 1-point drop of the test accuracy:
    a 1-point gain on the forget set is then not worth the step. The utility guard
    stops the run when the holdout accuracy falls below its start by more than its own noise
    (two binomial standard errors, at least one sample). It is read after every step (forward
    passes only), since a small forget set can cross its target within a few steps;
    `patience_steps` steps without a better score stop the run.

    The target is itself an estimate: each class's holdout accuracy is a binomial proportion.
    `tolerance` is two standard errors of the weighted target (0 when the holdout lacks every
    class of the forget set). A forget set whose accuracy is already within it of the target
    looks like unseen data as far as this holdout can tell, and `settled` keeps the original
    weights: any step would trade measurable utility for an unmeasurable gain (a sub-class whose
    unseen samples are recognised at 98-100 % is the case).
    """

    def __init__(self, model: nn.Module, holdout: tuple[torch.Tensor, torch.Tensor], y_forget: torch.Tensor,
                 forget_acc0: float, *, target: float | None, patience_steps: int) -> None:
        self.x, self.y = holdout
        self.head: CachedHead | None = None  # set by the run when only the last layer moves
        correct, loss = _holdout_scores(_logits(model, self.x), self.y)
        self.correct0 = correct
        self.start = _HoldoutReading(100.0 * float(correct.float().mean()), float(loss.mean()))
        classes, counts = torch.unique(y_forget, return_counts=True)
        per_class, variance = [], []  # accuracy per class (percent), and the variance of its estimate
        for c in classes.tolist():
            mine = self.y == c
            q = float(correct[mine].float().mean()) if bool(mine.any()) else 0.0
            per_class.append(100.0 * q)
            variance.append(q * (1.0 - q) / max(int(mine.sum()), 1))
        self.unseen = [c for c in classes.tolist() if bool((self.y == c).any())]  # classes it covers
        weights = counts.double() / counts.sum()
        self.target = float((weights * torch.tensor(per_class, dtype=torch.float64)).sum()) if target is None \
            else float(target)
        self.tolerance = 0.0 if target is not None else 200.0 * math.sqrt(
            float((weights**2 * torch.tensor(variance, dtype=torch.float64)).sum()))
        n = len(self.y)
        p = self.start.acc / 100.0
        self.noise = max(200.0 * math.sqrt(p * (1.0 - p) / n), 100.0 / n)
        self.patience_steps = patience_steps
        self.rescore(forget_acc0)
        self.best_step = self.lead_step = 0  # the best kept reading; the best reading at all (patience)

    def rescore(self, forget_acc0: float) -> None:
        """Score step 0 again from a better reading of the forget accuracy (the whole forget set)."""
        self.start_score = self.best_score = self.lead_score = self.score(forget_acc0, self.start.acc)

    def settled(self, forget_acc: float) -> str | None:
        """Why the forget set needs no step (already within the target's noise), or None."""
        if forget_acc <= self.target or abs(forget_acc - self.target) > self.tolerance:
            return None  # at or below the target: the ordinary stop says so
        return (f"forget accuracy {forget_acc:.1f}% is within the holdout target's noise ({self.target:.1f}% "
                f"+- {self.tolerance:.1f}) before any update: it already looks unseen; kept the original weights")

    def score(self, forget_acc: float, holdout_acc: float) -> float:
        return abs(forget_acc - self.target) + 2.0 * max(0.0, self.start.acc - holdout_acc)

    def read(self, model: nn.Module) -> _HoldoutReading:
        logits = self.head.logits("holdout") if self.head is not None else _logits(model, self.x)
        correct, loss = _holdout_scores(logits, self.y)
        return _HoldoutReading(100.0 * float(correct.float().mean()), float(loss.mean()),
                               int((correct != self.correct0).sum()))

    def margin(self, h: _HoldoutReading) -> float:
        """The gain (score points) a reading needs over step 0 to be kept (see the class)."""
        return 4.0 * 100.0 * math.sqrt(h.flips) / len(self.y)

    def broken(self, h: _HoldoutReading) -> bool:
        """The utility guard: the holdout accuracy fell below its start by more than its noise."""
        return h.acc < self.start.acc - self.noise

    def __call__(self, step: int, forget_acc: float, h: _HoldoutReading, last: bool) -> tuple[bool, str | None]:
        """(is this reading the best so far, reason to stop or None)."""
        if self.broken(h):  # a reading past the guard is never kept
            return False, (f"holdout accuracy fell to {h.acc:.1f}% (start {self.start.acc:.1f}%, noise "
                           f"{self.noise:.1f} points) at step {step}")
        score = self.score(forget_acc, h.acc)
        best = score < self.best_score and self.start_score - score > self.margin(h)
        if best:
            self.best_score, self.best_step = score, step
        if score < self.lead_score:
            self.lead_score, self.lead_step = score, step
        if forget_acc <= self.target:
            return best, f"forget accuracy {forget_acc:.1f}% <= holdout target {self.target:.1f}%"
        if self.patience_steps and step - self.lead_step >= self.patience_steps:
            return best, f"no step closer to the holdout in {self.patience_steps} steps"
        if last:
            return best, "max_steps reached"
        return best, None

    def kept(self) -> str:
        """What the run returns, for its stop reason."""
        if self.best_step == 0:
            return ("no step brought the forget set closer to the holdout by more than the holdout's own "
                    "noise without lowering its accuracy: kept the original weights")
        return f"kept step {self.best_step} (the reading closest to the holdout target {self.target:.1f}%)"

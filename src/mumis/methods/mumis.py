"""MU-Mis: machine unlearning by minimizing input sensitivity (remaining-data-free).

Paper: X. Cheng, Z. Huang, et al., "Remaining-data-free Machine Unlearning by Suppressing
Sample Contribution", ICLR 2026 (arXiv 2402.15109; first version "Machine Unlearning by
Suppressing Sample Contribution", 2024). https://arxiv.org/abs/2402.15109

Objective, per forget sample (x, c) and an irrelevant class c' != c:
    l(x) = w_c * S_c(x)^2 - w_c' * S_c'(x)^2,   S_k(x) = || d f_k(x) / d x ||
minimised by gradient descent on the weights with the forget data only, model in eval mode.
The loss is unbounded below, so the stopping rule is part of the method.

Three registered variants share this file:
- `mumis`: our defaults (docs/mumis-study.md): the published objective with each sample's
  irrelevant term capped at its own initial target term (1x), and a forget-set accuracy stop
  (with a plateau stop). Remaining-data-free.
- `mumis_published`: the published method as written (random c', SGD, S' growth stopping rule).
- `mumis_v1`: the 2024 first version (full batch, stop when the mean loss decrease reaches delta).
"""

from __future__ import annotations

import copy
import math
import sys
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn
from tqdm import tqdm

from .. import distributed
from ..exceptions import ConfigError
from ..functional import input_sensitivity, norms, other_classes, selected_logit_gradients
from ..functional.batchnorm import (
    FilterNorms,
    last_layer_parameters,
    layers_feeding_batchnorm,
    parameters_after_batchnorm,
)
from .base import RunContext, RunOutput, UnlearningMethod, batches, register_method

StopRule = Literal["forget_acc", "published", "growth", "v1", "none"]


def _h(text: str, **kw: Any) -> Any:
    """A dataclass field with a help string (shown by `mumis methods mumis`)."""
    return field(metadata={"help": text}, **kw)


@dataclass
class MuMisConfig:
    lr: float = _h("learning rate (in units of the normalised loss when normalise is on)", default=0.2)
    optimizer: Literal["sgd", "adam"] = _h("sgd (plain gradient descent) or adam", default="sgd")
    momentum: float = _h("SGD momentum (0 = plain gradient descent)", default=0.0)
    batch_size: int = _h("forget samples per step; 0 = the whole forget set (full batch)", default=128)
    max_steps: int = _h("step budget; the run always stops here", default=1000)
    norm: Literal["squared", "l2"] = _h("squared L2 (published) or plain L2 norm of input gradients", default="squared")
    target_weight: float = _h("weight of the target-class term S_c", default=1.0)
    irrelevant_weight: float = _h("weight of the irrelevant-class term S_c'", default=1.0)
    irrelevant: Literal["random", "all"] = _h(
        "random: one c' per sample per step (published); all: mean over the K-1 other classes", default="random")
    irrelevant_cap: float | None = _h(
        "cap each sample's irrelevant term at this multiple of a reference (cap_reference); "
        "None: unbounded, as published",
        default=1.0)
    cap_reference: Literal["mean", "target"] = _h(
        "what irrelevant_cap multiplies: 'mean' (the initial mean irrelevant term on the monitor subsample) or "
        "'target' (each sample's own initial target term: one extra input-gradient pass over the forget set)",
        default="target")
    switch: Literal["none", "misclassified"] = _h(
        "per-sample switch: 'misclassified' drops a sample's terms once the model no longer predicts its label",
        default="none")
    normalise: bool = _h(
        "divide the loss by the initial mean target term on the monitor subsample (makes lr transferable across "
        "models whose sensitivities differ by orders of magnitude)", default=True)
    stop: StopRule = _h(
        "forget_acc: forget accuracy <= target_forget_acc; published: S' turned up from a dip and "
        "S'(t)/S'(0) > delta; growth: S'(t)/S'(0) > delta; v1: mean loss decrease >= delta; none",
        default="forget_acc")
    delta: float = _h("threshold of the published / growth / v1 stopping rules", default=1.0)
    target_forget_acc: float | None = _h(
        "forget accuracy (percent) at which the forget_acc rule stops; None = 0 for a forget set of at most "
        "K/2 classes (full-class forgetting), required otherwise (random subsets: about the model's held-out "
        "accuracy)", default=None)
    plateau_patience: int = _h(
        "forget_acc rule: also stop when the forget accuracy has not reached a new low for this many monitor "
        "readings (0: never)", default=40)
    monitor_samples: int = _h("size of the fixed seeded forget subsample the stopping statistics use", default=256)
    monitor_irrelevant: Literal["fixed", "all"] = _h(
        "S' on the monitor subsample: 'fixed' (one seeded c' per sample, drawn once) or 'all' K-1 classes",
        default="fixed")
    monitor_every: int = _h("steps between two evaluations of the stopping statistics", default=5)
    divergence_factor: float = _h(
        "divergence guard: S' or max |logit| growing past this multiple of its start value", default=50.0)
    update: Literal["last", "after_batchnorm", "all"] = _h(
        "which weights move: last: only the last layer with weights (the classifier); after_batchnorm: the "
        "layers that run after the network's last BatchNorm (all if it has none); all: every weight, as "
        "published. A re-estimation of BatchNorm statistics cannot undo a change of the layers after the last "
        "BatchNorm", default="last")
    batchnorm_filters: Literal["fixed_norm", "free"] = _h(
        "fixed_norm: keep the norm of each output filter of a layer feeding a BatchNorm (a rescaled filter "
        "lowers sensitivities only against frozen running statistics, and re-estimating them undoes it); "
        "free: no constraint, as published", default="fixed_norm")

    def validate(self) -> None:
        checks = [
            (self.lr > 0, "lr must be > 0"),
            (self.max_steps >= 1, "max_steps must be >= 1"),
            (self.batch_size >= 0, "batch_size must be >= 0 (0 = full batch)"),
            (self.monitor_samples >= 1, "monitor_samples must be >= 1"),
            (self.monitor_every >= 1, "monitor_every must be >= 1"),
            (0 <= self.momentum < 1, "momentum must be in [0, 1)"),
            (self.irrelevant_cap is None or self.irrelevant_cap > 0, "irrelevant_cap must be > 0 or None"),
            (self.target_forget_acc is None or 0 <= self.target_forget_acc <= 100,
             "target_forget_acc is a percentage in [0, 100] (or None)"),
            (self.divergence_factor > 1, "divergence_factor must be > 1"),
            (self.plateau_patience >= 0, "plateau_patience must be >= 0"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ConfigError(f"mumis: {msg}")


@dataclass
class _Monitor:
    """Stopping statistics on the fixed forget subsample (no graph kept)."""

    s_target: float  # mean S_c
    s_irrelevant: float  # S': mean over samples (and irrelevant classes) of S_k
    s_irrelevant_sq: float  # mean of S_k^2, the published loss's irrelevant term
    loss: float  # objective with the mean over all irrelevant classes (v1 rule)
    forget_acc: float  # percent, on the subsample
    max_logit: float


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


def _take(cap: float | torch.Tensor | None, idx: torch.Tensor) -> float | torch.Tensor | None:
    """The batch's caps: per-sample caps are indexed, a scalar cap is shared."""
    return cap[idx] if isinstance(cap, torch.Tensor) else cap


class Stopper:
    """A stopping rule evaluated on successive monitor readings (the first one is step 0).

    Rules: `forget_acc` (forget accuracy <= target), `published` (S' turned upward after dipping
    below S'(0), and S'(t)/S'(0) > delta), `growth` (S'(t)/S'(0) > delta, no dip needed),
    `v1` (mean loss decrease since the start >= delta), `none` (only max_steps stops).
    `forget_acc` also stops when the forget accuracy has not reached a new low for `patience`
    readings (a few resistant samples must not keep the run going until max_steps).
    """

    def __init__(self, rule: StopRule, *, delta: float, target_forget_acc: float, start: _Monitor,
                 patience: int = 0) -> None:
        self.rule, self.delta, self.target, self.patience = rule, delta, target_forget_acc, patience
        self.start = start
        self.s_min = start.s_irrelevant
        self.dipped = False
        self.best_acc, self.since_best = start.forget_acc, 0

    def __call__(self, m: _Monitor) -> str | None:
        """Reason to stop after reading `m`, or None to go on."""
        ratio = m.s_irrelevant / max(self.start.s_irrelevant, 1e-12)
        reason = None
        if m.forget_acc < self.best_acc:
            self.best_acc, self.since_best = m.forget_acc, 0
        elif m is not self.start:
            self.since_best += 1
        if self.rule == "forget_acc" and m.forget_acc <= self.target:
            reason = f"forget accuracy {m.forget_acc:.1f}% <= target {self.target:g}%"
        elif self.rule == "forget_acc" and self.patience and self.since_best >= self.patience:
            reason = (f"forget accuracy plateaued at {self.best_acc:.1f}% (no new low in {self.patience} "
                      f"readings; target {self.target:g}%)")
        elif self.rule == "published" and self.dipped and m.s_irrelevant > self.s_min and ratio > self.delta:
            reason = f"S' turned up after its dip and S'(t)/S'(0) = {ratio:.3f} > delta {self.delta:g}"
        elif self.rule == "growth" and ratio > self.delta:
            reason = f"S'(t)/S'(0) = {ratio:.3f} > delta {self.delta:g}"
        elif self.rule == "v1" and self.start.loss - m.loss >= self.delta:
            reason = f"mean loss decrease {self.start.loss - m.loss:.4g} >= delta {self.delta:g}"
        if m.s_irrelevant < self.s_min:
            self.s_min, self.dipped = m.s_irrelevant, True
        return reason



class MuMis(UnlearningMethod):
    """MU-Mis with our defaults (see the module docstring and docs/mumis-study.md)."""

    @classmethod
    def fast_settings(cls) -> dict[str, Any]:
        """Conformance runs use a random 40-sample forget set: give the stopping target."""
        return {"target_forget_acc": 50.0}

    name = "mumis"
    paper = "Cheng et al., ICLR 2026, arXiv 2402.15109"
    summary = "minimise target-class input sensitivity, raise irrelevant-class sensitivity; forget data only"
    Config = MuMisConfig
    needs_double_backward = True
    supports_distributed = True  # runs under torchrun (see run() and mumis.distributed)
    batchnorm_mode = "eval"
    batchnorm_note = ("eval mode (per-sample input gradients need samples that do not interact); by default only "
                      "the classifier moves (update=last), so no BatchNorm re-estimation can undo the forgetting")

    def _loss(self, model: nn.Module, x: torch.Tensor, c: torch.Tensor, cap: float | torch.Tensor | None,
              k: int, generator: torch.Generator, shard: slice | None = None) -> torch.Tensor:
        """Mean loss of a batch; one forward shared by both terms.

        `shard` (torchrun): x and c are the global batch; the irrelevant classes are drawn for all
        of it (so every rank consumes the generator alike and matches one process), then only
        this rank's part is computed.
        """
        cfg = self.config
        shift = None
        if cfg.irrelevant == "random":
            # c' uniform over the K-1 other classes, per sample, afresh each step.
            shift = torch.randint(1, k, c.shape, generator=generator, device=generator.device)
        if shard is not None:
            x, c = x[shard], c[shard]
            cap = cap[shard] if isinstance(cap, torch.Tensor) else cap
            shift = None if shift is None else shift[shard]
        x = x.detach().requires_grad_(True)
        logits = model(x)  # (B, K)
        if shift is not None:
            irr = [(c + shift.to(c.device)) % k]
        else:
            irr = list(other_classes(c, k).T)
        # create_graph keeps the forward graph alive for the weight gradient (double backprop).
        s_t = norms(selected_logit_gradients(logits, x, c, create_graph=True), cfg.norm)
        s_i = torch.zeros_like(s_t)
        for cj in irr:
            g = selected_logit_gradients(logits, x, cj, create_graph=True)
            s = norms(g, cfg.norm)
            if cap is not None:  # bounded irrelevant term: no gradient once a sample reaches its cap
                s = s.clamp(max=cap)
            s_i = s_i + s
        s_i = s_i / len(irr)
        per_sample = cfg.target_weight * s_t - cfg.irrelevant_weight * s_i  # (B,)
        if cfg.switch == "misclassified":
            per_sample = per_sample * (logits.detach().argmax(1) == c).float()
        return per_sample.mean()

    def _reduced_grads(self, model: nn.Module, params: list[nn.Parameter], x: torch.Tensor, c: torch.Tensor,
                       cap: float | torch.Tensor | None, k: int, generator: torch.Generator,
                       scale: float) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
        """torchrun: (global batch loss, weight gradients) equal on every rank to one process's.

        Rank r computes the mean loss of its contiguous part of the global batch, weighted by
        its share of the batch; one all-reduce (sum) of the flattened gradients and the loss gives
        the gradient of the global batch mean, to float tolerance.
        """
        lo, hi = distributed.shard_bounds(len(c))
        grads: list[torch.Tensor | None]
        if hi > lo:
            local = self._loss(model, x, c, cap, k, generator, shard=slice(lo, hi)) * (scale * (hi - lo) / len(c))
            grads = list(torch.autograd.grad(local, params, allow_unused=True))
        else:  # fewer samples than ranks: nothing to compute, but draw c' like the others
            if self.config.irrelevant == "random":
                torch.randint(1, k, c.shape, generator=generator, device=generator.device)
            local = torch.zeros((), device=c.device)
            grads = [torch.zeros_like(p) for p in params]
        flat = torch.cat([(gp if gp is not None else torch.zeros_like(p)).detach().reshape(-1)
                          for p, gp in zip(params, grads, strict=True)] + [local.detach().reshape(1)])
        flat = distributed.all_reduce_sum(flat)  # (P + 1,)
        out: list[torch.Tensor | None] = []
        offset = 0
        for p, gp in zip(params, grads, strict=True):
            out.append(None if gp is None else flat[offset:offset + p.numel()].view_as(p))
            offset += p.numel()
        return flat[-1], out

    def _target(self, y: torch.Tensor, k: int) -> float:
        """The forget accuracy to stop at. Full-class forgetting: 0, what the retrained model has.

        On a forget set spanning many classes (a random subset) the retrained model keeps about
        its held-out accuracy on the forget samples, which only the user knows: a default of 0
        would unlearn far too much, so the target must then be given.
        """
        target = self.config.target_forget_acc
        if target is not None or self.config.stop != "forget_acc":
            return 0.0 if target is None else target
        n_classes = int(torch.unique(y).numel())
        if n_classes > k // 2:
            raise ConfigError(
                f"the forget set spans {n_classes} of {k} classes (a random subset?): MU-Mis's stopping "
                "target cannot be 0 % there; set target_forget_acc to the accuracy the retrained model "
                "would have on it, about your model's held-out accuracy (e.g. --set target_forget_acc=95)"
            )
        return 0.0

    def _diverged(self, m: _Monitor, m0: _Monitor) -> str | None:
        f = self.config.divergence_factor
        values = (m.s_target, m.s_irrelevant, m.loss, m.max_logit)
        if not all(math.isfinite(v) for v in values):
            return "non-finite sensitivity or logits"
        if m.s_irrelevant > f * m0.s_irrelevant:
            return f"irrelevant sensitivity exploded ({m.s_irrelevant:.3g} > {f:g} x start)"
        if m.max_logit > f * max(m0.max_logit, 1.0):
            return f"logits exploded (max |logit| {m.max_logit:.3g} > {f:g} x start)"
        return None

    def _trainable(self, model: nn.Module, x: torch.Tensor) -> list[nn.Parameter]:
        """The parameters the run moves (see the `update` setting)."""
        params = [p for p in model.parameters() if p.requires_grad]
        if self.config.update == "all":
            return params
        chosen = last_layer_parameters(model, x) if self.config.update == "last" else (
            parameters_after_batchnorm(model, x) or params)
        ids = {id(p) for p in chosen}
        params = [p for p in params if id(p) in ids]
        if not params:
            raise ConfigError(f"mumis: update={self.config.update} finds no trainable weights in this model; "
                              "use update=all")
        return params

    def run(self, model: nn.Module, ctx: RunContext) -> RunOutput:
        """Unlearn; under torchrun (see `mumis.distributed`) every rank runs this with the same
        seed and forget set: each global batch and its c' are drawn identically on all ranks,
        each rank computes its part, gradients and stopping statistics are all-reduced, so all
        ranks take the same steps and stop at the same step, as one process would."""
        cfg, k, g = self.config, ctx.num_classes, ctx.generator
        dist_on = distributed.is_distributed()
        if dist_on:
            distributed.broadcast_module(model)  # identical start even if the ranks loaded differently
        x_all, y_all = ctx.forget
        n = len(y_all)
        params = self._trainable(model, x_all[:2])
        constrained: list[nn.Module] = []
        if cfg.batchnorm_filters == "fixed_norm":  # only layers that move and feed a BatchNorm
            moving = {id(p) for p in params}
            constrained = [layer for layer in layers_feeding_batchnorm(model, x_all[:2])
                           if id(getattr(layer, "weight", None)) in moving]
        filters = FilterNorms(constrained)
        if cfg.optimizer == "sgd":
            opt: torch.optim.Optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum)
        else:
            opt = torch.optim.Adam(params, lr=cfg.lr)
        mon_idx = torch.randperm(n, generator=g)[: cfg.monitor_samples].to(x_all.device)
        x_mon, y_mon = x_all[mon_idx], y_all[mon_idx]
        c_mon = None
        if cfg.monitor_irrelevant == "fixed":
            c_mon = (y_mon + torch.randint(1, k, y_mon.shape, generator=g).to(y_mon.device)) % k

        def read() -> _Monitor:
            if dist_on:
                return _monitor_sharded(model, x_mon, y_mon, c_mon, cfg.norm, k)
            return _monitor(model, x_mon, y_mon, c_mon, cfg.norm, k)

        m0 = read()
        unit = max(m0.s_target ** (2 if cfg.norm == "squared" else 1), 1e-12)  # the initial target term
        scale = 1.0 / unit if cfg.normalise else 1.0
        cap: float | torch.Tensor | None = None
        if cfg.irrelevant_cap is not None and cfg.cap_reference == "target":  # per sample, (N,)
            cap = cfg.irrelevant_cap * torch.cat([
                input_sensitivity(model, x_all[i : i + 512], y_all[i : i + 512], norm=cfg.norm).detach()
                for i in range(0, n, 512)])
        elif cfg.irrelevant_cap is not None:  # in the units of the loss term (squared or not)
            cap = cfg.irrelevant_cap * (m0.s_irrelevant_sq if cfg.norm == "squared" else m0.s_irrelevant)
        history = [{"step": 0, **vars(m0)}]
        good_state, good_step = copy.deepcopy(model.state_dict()), 0
        stop_reason = f"max_steps ({cfg.max_steps}) reached"
        step, epoch_batches = 0, iter(())
        stopper = Stopper(cfg.stop, delta=cfg.delta, target_forget_acc=self._target(y_all, k), start=m0,
                          patience=cfg.plateau_patience)
        if (reason := stopper(m0)) is not None:
            return RunOutput(steps=0, stop_reason=f"{reason} before any update", history=history)
        bar = tqdm(total=cfg.max_steps, desc=self.name, leave=False, disable=not (ctx.progress and sys.stderr.isatty() and distributed.is_main()))
        while step < cfg.max_steps:
            idx = next(epoch_batches, None)
            if idx is None:
                epoch_batches = iter(batches(n, cfg.batch_size, g))
                continue
            idx = idx.to(x_all.device)
            c = y_all[idx]
            grads: list[torch.Tensor | None] | tuple[torch.Tensor | None, ...] | None = None
            if dist_on:
                loss, grads = self._reduced_grads(model, params, x_all[idx], c, _take(cap, idx), k, g, scale)
            else:
                loss = self._loss(model, x_all[idx], c, _take(cap, idx), k, g) * scale
            if not torch.isfinite(loss):
                model.load_state_dict(good_state)
                stop_reason = f"diverged at step {step + 1} (non-finite loss); restored weights of step {good_step}"
                break
            opt.zero_grad(set_to_none=True)
            if grads is None:
                grads = torch.autograd.grad(loss, params, allow_unused=True)
            by_param = dict(zip(params, grads, strict=True))
            filters.project(by_param)
            for p in params:
                p.grad = by_param[p]
            opt.step()
            filters.retract()
            step += 1
            bar.update(1)
            if step % cfg.monitor_every and step != cfg.max_steps:
                continue
            m = read()
            row = {"step": step, "batch_loss": float(loss.detach()), **vars(m)}
            ctx.record(history, row)
            bar.set_postfix(forget_acc=f"{m.forget_acc:.1f}%", s_ratio=f"{m.s_irrelevant / m0.s_irrelevant:.2f}")
            if (why := self._diverged(m, m0)) is not None:
                model.load_state_dict(good_state)
                stop_reason = f"diverged at step {step} ({why}); restored weights of step {good_step}"
                break
            good_state, good_step = copy.deepcopy(model.state_dict()), step
            if (reason := stopper(m)) is not None:
                stop_reason = reason
                break
        bar.close()
        moved = {id(p) for p in params}
        return RunOutput(steps=step, stop_reason=stop_reason, history=history,
                         extra={"restored_step": good_step if stop_reason.startswith("diverged") else None,
                                "updated": [n for n, p in model.named_parameters() if id(p) in moved]})


@dataclass
class MuMisPublishedConfig(MuMisConfig):
    """The published method as written: unbounded loss, random c', S' growth stopping rule."""

    lr: float = _h("learning rate", default=1e-4)
    normalise: bool = _h(MuMisConfig.__dataclass_fields__["normalise"].metadata["help"], default=False)
    update: Literal["last", "after_batchnorm", "all"] = _h(
        MuMisConfig.__dataclass_fields__["update"].metadata["help"], default="all")
    batchnorm_filters: Literal["fixed_norm", "free"] = _h(
        MuMisConfig.__dataclass_fields__["batchnorm_filters"].metadata["help"], default="free")
    irrelevant_cap: float | None = _h("None: the published, unbounded irrelevant term", default=None)
    stop: StopRule = _h(MuMisConfig.__dataclass_fields__["stop"].metadata["help"], default="published")


class MuMisPublished(MuMis):
    """MU-Mis exactly as published (for comparison; see docs/mumis-study.md for its failure modes)."""

    name = "mumis_published"
    summary = "MU-Mis as published: unbounded objective, S'-based stopping rule"
    Config = MuMisPublishedConfig
    batchnorm_note = ("eval mode, as the paper states; every weight moves, so on BatchNorm networks a "
                      "re-estimation of the statistics can bring much of the forgotten class back (docs/mumis.md)")


@dataclass
class MuMisV1Config(MuMisPublishedConfig):
    """First version (2024): full-batch gradient descent, stop on the mean loss decrease."""

    batch_size: int = _h("forget samples per step; 0 = the whole forget set (full batch)", default=0)
    stop: StopRule = _h(MuMisConfig.__dataclass_fields__["stop"].metadata["help"], default="v1")


class MuMisV1(MuMis):
    """MU-Mis, first version (2024): full batch, loss-decrease stopping rule."""

    name = "mumis_v1"
    summary = "MU-Mis first version: full batch, stop when the mean loss decrease reaches delta"
    Config = MuMisV1Config


for _cls in (MuMis, MuMisPublished, MuMisV1):
    register_method(_cls)

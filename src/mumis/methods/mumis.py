"""MU-Mis: machine unlearning by minimizing input sensitivity (remaining-data-free).

Paper: X. Cheng, Z. Huang, et al., "Remaining-data-free Machine Unlearning by Suppressing
Sample Contribution", ICLR 2026 (arXiv 2402.15109; first version "Machine Unlearning by
Suppressing Sample Contribution", 2024). https://arxiv.org/abs/2402.15109

Objective, per forget sample (x, c) and an irrelevant class c' != c:
    l(x) = w_c * S_c(x)^2 - w_c' * S_c'(x)^2,   S_k(x) = || d f_k(x) / d x ||
minimised by gradient descent on the weights with the forget data only, model in eval mode.
The loss is unbounded below, so the stopping rule is part of the method.

Three registered variants (`mumis` here, the other two in `mumis_variants.py`):
- `mumis`: our defaults (docs/mumis-study.md, sections 7-10): the published objective with every
  sample's irrelevant term capped at the initial mean irrelevant term, normalised, only the
  last layer moving (SGD lr 1), and a forget-set accuracy stop read after every step (with a
  plateau stop that returns the lowest reading's weights, and backtracking on a step past a
  partial target; `_mumis_stop.py`); after a whole-class run, a calibration of the classifier
  for the forgotten classes (`_mumis_bias.py`). Remaining-data-free. With a
  holdout (samples no model trained on, `needs_holdout = "optional"`) the stop makes the forget
  set look like unseen samples of its classes, under a utility guard, and keeps the best reading
  (`HoldoutGuide`): any forget set.
- `mumis_published`: the published method as written (random c', SGD, S' growth stopping rule).
- `mumis_v1`: the 2024 first version (full batch, stop when the mean loss decrease reaches delta).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from ..exceptions import ConfigError
from ..functional import input_sensitivity, norms, other_classes, selected_logit_gradients
from ..functional.batchnorm import (
    FilterNorms,
    batchnorm_as_affine,
    has_running_batchnorm,
    last_layer,
    last_layer_parameters,
    layers_feeding_batchnorm,
    parameters_after_batchnorm,
)
from ._loop import Batch, LoopState, LossMethod
from ._mumis_bias import calibrate_forgotten_classes
from ._mumis_config import MuMisConfig
from ._mumis_monitor import CachedHead, HoldoutGuide, Stopper, StopRule, _logits, _Monitor, _monitor
from ._mumis_stop import MuMisStopping
from .base import HoldoutUse, RunContext, RunOutput, register_method

#: Where the run's per-request state comes from (result extra `state_from`; see the class).
STATE_FROM = "current model"

__all__ = ["HoldoutGuide", "MuMis", "MuMisConfig", "StopRule", "Stopper", "_Monitor", "_monitor"]


def _take(cap: float | torch.Tensor | None, idx: torch.Tensor) -> float | torch.Tensor | None:
    """The batch's caps: per-sample caps are indexed, a scalar cap is shared."""
    return cap[idx] if isinstance(cap, torch.Tensor) else cap


@register_method
class MuMis(MuMisStopping, LossMethod):
    """MU-Mis with our defaults (see the module docstring and docs/mumis-study.md).

    On the base loop (`LossMethod`, which also runs it under torchrun) with a step budget and
    no epoch rows; its own stopping rule is `check_stop`: every `monitor_every` steps the
    monitor reading (a history row), the divergence guard (restores the last good weights)
    and the `Stopper`.

    Per-request state: the cap reference (`cap_reference`), the monitor's start reading (the
    stopping rule's baseline) and the holdout guide's start are all read in `prepare` from the
    model it is given, i.e. the current model. On a chain of deletion requests
    (`mumis unlearn --checkpoint` an unlearning run) that is the previous request's result, not
    the chain's original; the result's extra says so (`state_from: "current model"`).

    With a partial target and only the last layer moving, the forget accuracy is read on the whole
    forget set from the cached head (a 256-sample reading is too noisy for the `overshoot` band:
    docs/mumis-study.md §10h); the sensitivities stay on the monitor subsample.
    """

    name = "mumis"
    paper = "Cheng et al., ICLR 2026, arXiv 2402.15109"
    summary = "minimise target-class input sensitivity, raise irrelevant-class sensitivity; forget data only"
    Config = MuMisConfig
    needs_double_backward = True
    needs_holdout: ClassVar[HoldoutUse] = "optional"
    progress_keys = ("forget_acc", "s_irrelevant")
    batchnorm_mode = "eval"
    batchnorm_note = ("eval mode (per-sample input gradients need samples that do not interact); by default only "
                      "the classifier moves (update=last), so no BatchNorm re-estimation can undo the forgetting")

    @classmethod
    def fast_settings(cls) -> dict[str, Any]:
        """Conformance runs use a random 40-sample forget set: give the stopping target."""
        return {"target_forget_acc": 50.0}

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
                "target cannot be 0 % there; give it a holdout of unseen samples (train the original and "
                "the retrained model with --holdout 0.05, or pass holdout=(X, y)), or set target_forget_acc "
                "to the accuracy the retrained model would have on it (e.g. --set target_forget_acc=95)"
            )
        return 0.0

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
        """The base loop, then (whole-class forgetting) the forgotten classes' bias. With
        update=last on a model with BatchNorm it runs on a copy whose BatchNorm layers are their
        eval-mode affine maps (the same function, frozen anyway: only the classifier moves; its
        double backward costs about 0.7x), and the classifier it learned is copied back: the
        backbone and its statistics are returned untouched."""
        copy_back = self.config.update == "last" and has_running_batchnorm(model)
        work = batchnorm_as_affine(model) if copy_back else model
        out = super().run(work, ctx)
        self._lower_forgotten_bias(work, out)
        if copy_back:
            probe = ctx.forget[0][:2]
            with torch.no_grad():
                for p, q in zip(last_layer_parameters(model, probe), last_layer_parameters(work, probe), strict=True):
                    p.copy_(q)
        return out

    def _lower_forgotten_bias(self, model: nn.Module, out: RunOutput) -> None:
        """A model that never saw a class gives it its lowest logit on every input, but the MU-Mis
        loss ignores the classifier's bias. After a whole-class run that ended within `overshoot` of
        its target (target 0, at most K/2 classes, no divergence; a plateau at 0.8 % too):
        `calibrate_forgotten_classes` (the rows zeroed with `forgotten_weights=zero`, the biases
        lowered below every other logit on the monitor samples; study §10g, §10i)."""
        cfg = self.config
        target = self.guide.target if self.guide is not None else self.stopper.target
        classes = torch.unique(self.y_mon).tolist()
        if not cfg.lower_forgotten_bias or cfg.stop != "forget_acc" or target != 0.0 or len(classes) > self.k // 2 \
                or out.stop_reason.startswith("diverged"):
            return
        left = 100.0 * float((_logits(model, self.x_mon).argmax(1) == self.y_mon).float().mean())
        if left > cfg.overshoot:  # not forgotten yet: the step only calibrates a forgetting done
            return
        zero = cfg.forgotten_weights == "zero"
        done = calibrate_forgotten_classes(model, self.x_mon, self.y_mon, self.k, zero_weights=zero,
                                           lse_before=self.lse_before)
        if done is None:
            out.extra["forgotten_bias_shift"] = None
            out.stop_reason += "; the last layer has no per-class bias: the forgotten class's bias was not lowered"
            return
        out.extra["forgotten_bias_shift"] = {str(c): v for c, v in done.bias_shift.items()}
        said = ["zeroed the forgotten class's weights"] if zero else []
        if done.other_shift is not None:
            out.extra["other_logits_shift"] = {str(c): v for c, v in done.other_shift.items()}
            said.append("raised the other classes' logits on its images by "
                        + ", ".join(f"{v:.3g}" for v in done.other_shift.values()))
        elif self.lse_before is not None:
            said.append("left the other classes' logits (the last layer is not linear)")
        said.append("lowered its bias by " + ", ".join(f"{v:.3g}" for v in done.bias_shift.values()))
        out.stop_reason += "; " + ", ".join(said[:-1]) + (" and " if len(said) > 1 else "") + said[-1]

    # ------------------------------------------------------------------ the base loop's hooks
    def budget(self) -> tuple[int | None, int]:
        return None, self.config.max_steps

    def prepare(self, model: nn.Module, ctx: RunContext) -> dict[str, Any]:
        """Parameters to move, the monitor subsample and its start reading, loss scale and caps."""
        cfg, k, g = self.config, ctx.num_classes, ctx.generator
        self.x, self.y = x_all, y_all = ctx.forget
        self.k, n = k, len(y_all)
        self.params = self._trainable(model, x_all[:2])
        constrained: list[nn.Module] = []
        if cfg.batchnorm_filters == "fixed_norm":  # only layers that move and feed a BatchNorm
            moving = {id(p) for p in self.params}
            constrained = [layer for layer in layers_feeding_batchnorm(model, x_all[:2])
                           if id(getattr(layer, "weight", None)) in moving]
        self.filters = FilterNorms(constrained)
        mon_idx = torch.randperm(n, generator=g)[: cfg.monitor_samples].to(x_all.device)
        self.x_mon, self.y_mon = x_all[mon_idx], y_all[mon_idx]
        self.y_read = self.y_mon  # whose accuracy the forget readings are (the whole set: see below)
        self.c_mon = None
        if cfg.monitor_irrelevant == "fixed":
            self.c_mon = (self.y_mon + torch.randint(1, k, self.y_mon.shape, generator=g).to(self.y_mon.device)) % k
        self.m0 = m0 = self._read(model)
        assert m0.s_target is not None and m0.s_irrelevant is not None and m0.s_irrelevant_sq is not None  # full
        unit = max(m0.s_target ** (2 if cfg.norm == "squared" else 1), 1e-12)  # the initial target term
        self.scale = 1.0 / unit if cfg.normalise else 1.0
        self.cap: float | torch.Tensor | None = None
        if cfg.irrelevant_cap is not None and cfg.cap_reference == "target":  # per sample, (N,)
            self.cap = cfg.irrelevant_cap * torch.cat([
                input_sensitivity(model, x_all[i : i + 512], y_all[i : i + 512], norm=cfg.norm).detach()
                for i in range(0, n, 512)])
        elif cfg.irrelevant_cap is not None:  # in the units of the loss term (squared or not)
            self.cap = cfg.irrelevant_cap * (m0.s_irrelevant_sq if cfg.norm == "squared" else m0.s_irrelevant)
        self.good_state, self.good_step = self._save(), 0
        self.best_state, self.best_step = self.good_state, 0  # lowest forget accuracy read so far
        self.backtracks = 0
        self.pending = None  # a light reading's row, recorded if the run stops on it
        self.guide = None
        self.head = None
        sets = {"forget": self.x_mon}
        if ctx.holdout is not None and cfg.stop == "forget_acc":
            self.guide = HoldoutGuide(model, ctx.holdout, y_all, m0.forget_acc, target=cfg.target_forget_acc,
                                      patience_steps=cfg.plateau_patience)
            sets["holdout"] = ctx.holdout[0]
            target = self.guide.target
        else:
            target = self._target(y_all, k)
        if cfg.update == "last" and cfg.stop == "forget_acc":  # what feeds the last layer never changes
            whole = target > 0 and n > len(self.y_mon)  # a partial target: read the whole forget set (see the class)
            if whole:
                sets["forget"] = x_all
            self.head = CachedHead.build(model, last_layer(model, x_all[:2]), sets)
            if self.head is not None and whole:
                self.y_read = y_all
                m0.forget_acc = self._light(model).forget_acc
                if self.guide is not None:
                    self.guide.rescore(m0.forget_acc)
            if self.guide is not None:
                self.guide.head = self.head
        self.stopper = Stopper(cfg.stop, delta=cfg.delta, target_forget_acc=target, start=m0,
                               patience=cfg.plateau_patience)
        self.lse_before = None  # the logit scale the calibration restores (whole-class runs)
        if target == 0.0 and cfg.stop == "forget_acc" and cfg.lower_forgotten_bias and cfg.restore_other_logits:
            self.lse_before = torch.logsumexp(_logits(model, self.x_mon), 1)
        if self.guide is not None:
            guide = self.guide
            return {**m0.row(), "target_forget_acc": guide.target, "holdout_acc": guide.start.acc,
                    "holdout_loss": guide.start.loss}
        return m0.row()

    def parameters_to_update(self, model: nn.Module, ctx: RunContext) -> list[nn.Parameter]:
        return self.params

    def make_optimizer(self, params: list[nn.Parameter]) -> torch.optim.Optimizer:
        if self.config.optimizer == "sgd":
            self.optimizer: torch.optim.Optimizer = torch.optim.SGD(params, lr=self.config.lr,
                                                                    momentum=self.config.momentum)
        else:
            self.optimizer = torch.optim.Adam(params, lr=self.config.lr)
        return self.optimizer

    def compute_loss(self, model: nn.Module, batch: Batch, ctx: RunContext) -> torch.Tensor:
        full = batch.full  # c' is drawn for the global batch, then this rank's part is computed
        loss = self._loss(model, self.x[full], self.y[full], _take(self.cap, full), self.k, ctx.generator,
                          shard=batch.part)
        return loss * self.scale

    def adjust_grads(self, params: list[nn.Parameter]) -> None:
        by_param = {p: p.grad for p in params}
        self.filters.project(by_param)
        for p in params:
            p.grad = by_param[p]

    def after_update(self) -> None:
        self.filters.retract()

    def epoch_row(self, model: nn.Module, state: LoopState) -> dict[str, Any] | None:
        return None  # the monitor readings are the history

    def result_extra(self, model: nn.Module, stop_reason: str) -> dict[str, Any]:
        moved = {id(p) for p in self.params}
        restored = stop_reason.startswith("diverged") or "restored weights of step" in stop_reason
        extra: dict[str, Any] = {"restored_step": self.good_step if restored else None,
                 "updated": [n for n, p in model.named_parameters() if id(p) in moved],
                 "state_from": STATE_FROM, "backtracks": self.backtracks,
                 "final_lr": self.optimizer.param_groups[0]["lr"] if hasattr(self, "optimizer") else self.config.lr}
        if self.guide is not None:
            extra.update(target_forget_acc=self.guide.target, kept_step=self.guide.best_step,
                         holdout_acc_start=self.guide.start.acc)
        return extra

"""AMUN: fine-tune on the forget samples' closest misclassified adversarial examples.

Paper: A. Ebrahimpour-Boroojeny, H. Sundaram, V. Chandrasekaran, "Not All Wrong is Bad: Using
Adversarial Examples for Unlearning", ICML 2025 (arXiv 2503.00917). Official code:
https://github.com/Ali-E/AMUN (`AMUN_all_in_one.py`, `pgdl2_modified.py`, `helper.py`).

1. For each forget sample (x, y), the closest adversarial example the original model
   misclassifies: L2 PGD with no random start on the cross-entropy of y, step eps / 10 along the
   L2-normalised input gradient, projected on the L2 ball of radius eps around x and clipped to
   [0, 1]. A sample stops at the first iterate the model misclassifies; after `pgd_steps` steps
   the radius of every sample still classified right doubles and PGD goes on from where it is.
   The example is labelled with the model's own prediction on it (`pgdl2_modified.py::PGDL2`).
   The radius starts at `eps_init` (0.01) for the first 50 forget samples; the others start at
   the median of the radii those 50 needed (`AMUN_all_in_one.py`, 50th percentile).
2. Fine-tune (train mode) with cross-entropy on the forget samples with their own labels plus
   their adversarial examples with the adversarial labels (`amun`, no remaining data), or on
   those plus the retain set (`amun_retain`), shuffled together: SGD with momentum 0.9 and weight
   decay 5e-4, lr x0.1 every `lr_step_epochs` epochs (StepLR).

Follows `AMUN_all_in_one.py` with `--unlearn_method amun` (the training set is the forget set and
its adversarial set, plus the remaining data with `--remain use`; `advonly` would drop the forget
samples). Defaults: its lr 0.05, StepLR step 1, gamma 0.1, 10 epochs, batch 128; PGD 50 steps.
Departures: the official radius doubles without bound; we stop after `max_doublings` (a sample
still classified right then keeps its last iterate, labelled with the model's prediction there,
its own label, and is counted in the result). Inputs are assumed to be images in [0, 1]
(`clamp`; turn it off for unbounded features). Adversarial examples are found in eval mode.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..config import setting
from ._loop import Batch, LoopState, LossMethod, percent_correct
from .base import RunContext, register_method


@dataclass
class AMUNConfig:
    lr: float = setting("SGD learning rate (official 0.05)", default=0.05, gt=0)
    momentum: float = setting("SGD momentum", default=0.9, ge=0, lt=1)
    weight_decay: float = setting("SGD weight decay", default=5e-4, ge=0)
    epochs: int = setting("passes over the fine-tuning set", default=10, ge=1)
    lr_step_epochs: int = setting("multiply the lr by lr_gamma every this many epochs (StepLR step)", default=1, ge=1)
    lr_gamma: float = setting("lr multiplier of each StepLR step", default=0.1, gt=0, le=1)
    batch_size: int = setting("samples per step; 0 = full batch", default=128, ge=0, note="0 = full batch")
    max_steps: int = setting("step budget across epochs (0 = no limit beyond epochs)", default=0, ge=0,
                             note="0 = no limit")
    eps_init: float = setting("initial L2 radius of the PGD search for the first init_samples samples",
                              default=0.01, gt=0)
    init_samples: int = setting("forget samples whose needed radii set the others' initial radius (median)",
                                default=50, ge=1)
    pgd_steps: int = setting("PGD steps per radius before the radius doubles", default=50, ge=1)
    max_doublings: int = setting("most radius doublings per sample (official: unbounded)", default=20, ge=0)
    clamp: bool = setting("clip adversarial inputs to [0, 1] (images); turn off for unbounded features",
                          default=True)


def closest_adversarial(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: torch.Tensor,
                        steps: int, max_doublings: int, clamp: bool = True
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """L2 PGD with a growing radius until `model` misclassifies each sample (official PGDL2).

    Args:
        eps: (N,) initial radius per sample.
    Returns:
        (x_adv, label = the model's prediction on x_adv, the radius reached, found: bool (N,)).
    """
    adv, eps, label = x.detach().clone(), eps.detach().clone().to(x.device), y.clone()
    found = torch.zeros(len(y), dtype=torch.bool, device=x.device)
    active = torch.arange(len(y), device=x.device)
    view = (-1,) + (1,) * (x.dim() - 1)
    for _doubling in range(max_doublings + 1):
        for step_no in range(steps + 1):  # the last pass only looks: did the last step cross?
            if not len(active):
                break
            xa = adv[active].requires_grad_(True)
            logits = model(xa)
            pred = logits.argmax(1)
            wrong = pred != y[active]
            label[active[wrong]], found[active[wrong]] = pred[wrong], True  # adv holds that iterate
            keep = ~wrong
            if step_no == steps or not bool(keep.any()):
                active = active[keep]
                break
            # summed CE: each sample's input gradient is its own (the official mean only rescales
            # it, and the step is normalised per sample)
            (grad,) = torch.autograd.grad(F.cross_entropy(logits, y[active], reduction="sum"), xa)
            active, grad = active[keep], grad[keep].detach()
            grad = grad / (grad.flatten(1).norm(dim=1) + 1e-10).view(view)
            e = eps[active].view(view)
            delta = adv[active] + e / 10 * grad - x[active]
            factor = torch.clamp(e.flatten() / delta.flatten(1).norm(dim=1).clamp_min(1e-30), max=1.0)
            step = x[active] + delta * factor.view(view)
            adv[active] = step.clamp(0.0, 1.0) if clamp else step
        if not len(active):
            break
        eps[active] *= 2  # still classified right after `steps` steps: double the radius
    if len(active):  # never crossed within max_doublings: the last iterate, the model's label on it
        eps[active] /= 2
        with torch.no_grad():
            label[active] = model(adv[active]).argmax(1)
    return adv.detach(), label, eps, found


@register_method
class AMUN(LossMethod):
    """AMUN (Ebrahimpour-Boroojeny et al., ICML 2025); see the module docstring."""

    name = "amun"
    paper = ("Ebrahimpour-Boroojeny, Sundaram, Chandrasekaran, ICML 2025, Not All Wrong is Bad: "
             "Using Adversarial Examples for Unlearning, arXiv 2503.00917")
    summary = "fine-tune on the forget set plus its closest misclassified adversarial examples; forget data only"
    Config = AMUNConfig
    batchnorm_mode = "train"
    batchnorm_note = "adversarial search in eval mode, fine-tuning in train mode (AMUN code)"

    @classmethod
    def fast_settings(cls) -> dict[str, Any]:
        """Conformance runs: a shorter PGD per radius (the tiny case's samples cross early anyway)."""
        return {"pgd_steps": 10, "init_samples": 10}

    def prepare(self, model: nn.Module, ctx: RunContext) -> dict[str, Any]:
        cfg = self.config
        fx, fy = ctx.forget
        k = min(cfg.init_samples, len(fy))
        eps = torch.full((len(fy),), cfg.eps_init, device=fx.device)
        a0, l0, e0, f0 = closest_adversarial(model, fx[:k], fy[:k], eps[:k], cfg.pgd_steps, cfg.max_doublings,
                                             cfg.clamp)
        rest = len(fy) - k
        if rest:
            eps[k:] = torch.quantile(e0, 0.5)  # the others start at the median radius (official)
            a1, l1, e1, f1 = closest_adversarial(model, fx[k:], fy[k:], eps[k:], cfg.pgd_steps,
                                                 cfg.max_doublings, cfg.clamp)
            a0, l0, e0, f0 = torch.cat([a0, a1]), torch.cat([l0, l1]), torch.cat([e0, e1]), torch.cat([f0, f1])
        self.adv_x, self.adv_y, self.found = a0, l0, f0
        self.x, self.y = torch.cat([fx, a0]), torch.cat([fy, l0])
        if self.requires_retain:
            assert ctx.retain is not None  # the front door enforces requires_retain
            self.x, self.y = torch.cat([self.x, ctx.retain[0]]), torch.cat([self.y, ctx.retain[1]])
        self.fx, self.fy = fx, fy
        self.stats = {"adversarial_found": int(f0.sum()), "median_radius": float(torch.quantile(e0, 0.5)),
                      "adversarial_label_counts": torch.bincount(l0, minlength=ctx.num_classes).tolist()}
        return {"forget_acc": percent_correct(model, fx, fy), "adversarial_found": self.stats["adversarial_found"]}

    def on_epoch_start(self, epoch: int, opt: torch.optim.Optimizer, ctx: RunContext) -> None:
        cfg = self.config
        self.lr = cfg.lr * cfg.lr_gamma ** (epoch // cfg.lr_step_epochs)  # StepLR, stepped per epoch
        for group in opt.param_groups:
            group["lr"] = self.lr

    def compute_loss(self, model: nn.Module, batch: Batch, ctx: RunContext) -> torch.Tensor:
        return F.cross_entropy(model(self.x[batch.idx]), self.y[batch.idx])

    def epoch_row(self, model: nn.Module, state: LoopState) -> dict[str, Any] | None:
        model.eval()
        row = {"loss": state.stats["loss"].mean, "lr": self.lr, "forget_acc": percent_correct(model, self.fx, self.fy)}
        model.train(self.batchnorm_mode == "train")
        return row

    def result_extra(self, model: nn.Module, stop_reason: str) -> dict[str, Any]:
        return dict(self.stats)


@register_method
class AMUNRetain(AMUN):
    """AMUN with the remaining data (`--remain use`)."""

    name = "amun_retain"
    summary = "fine-tune on the retain set, the forget set and its closest misclassified adversarial examples"
    requires_retain = True

"""MU-Mis's settings (`MuMisConfig`, the `mumis` method of methods/mumis.py; the published
variants redefault some of them in methods/mumis_variants.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..config import setting
from ._mumis_monitor import StopRule


@dataclass
class MuMisConfig:
    lr: float = setting("learning rate (in units of the normalised loss when normalise is on)", default=1.0, gt=0)
    optimizer: Literal["sgd", "adam"] = setting("sgd (plain gradient descent) or adam", default="sgd")
    momentum: float = setting("SGD momentum (0 = plain gradient descent)", default=0.0, ge=0, lt=1)
    batch_size: int = setting("forget samples per step; 0 = the whole forget set (full batch)", default=128,
                              ge=0, note="0 = full batch")
    max_steps: int = setting("step budget; the run always stops here", default=1000, ge=1)
    norm: Literal["squared", "l2"] = setting("squared L2 (published) or plain L2 norm of input gradients", default="squared")
    target_weight: float = setting("weight of the target-class term S_c", default=1.0)
    irrelevant_weight: float = setting("weight of the irrelevant-class term S_c'", default=1.0)
    irrelevant: Literal["random", "all"] = setting(
        "random: one c' per sample per step (published); all: mean over the K-1 other classes", default="random")
    irrelevant_cap: float | None = setting(
        "cap each sample's irrelevant term at this multiple of a reference (cap_reference); "
        "None: unbounded, as published",
        default=1.0, gt=0, note="or None")
    cap_reference: Literal["mean", "target"] = setting(
        "what irrelevant_cap multiplies: 'mean' (the initial mean irrelevant term on the monitor subsample) or "
        "'target' (each sample's own initial target term: one extra input-gradient pass over the forget set)",
        default="mean")
    switch: Literal["none", "misclassified"] = setting(
        "per-sample switch: 'misclassified' drops a sample's terms once the model no longer predicts its label",
        default="none")
    normalise: bool = setting(
        "divide the loss by the initial mean target term on the monitor subsample (makes lr transferable across "
        "models whose sensitivities differ by orders of magnitude)", default=True)
    stop: StopRule = setting(
        "forget_acc: forget accuracy <= target_forget_acc; published: S' turned up from a dip and "
        "S'(t)/S'(0) > delta; growth: S'(t)/S'(0) > delta; v1: mean loss decrease >= delta; none",
        default="forget_acc")
    delta: float = setting("threshold of the published / growth / v1 stopping rules", default=1.0)
    target_forget_acc: float | None = setting(
        "forget accuracy (percent) at which the forget_acc rule stops; None = with a holdout, the accuracy "
        "unseen samples of the forget set's classes get (0 for a class the holdout lacks); without one, 0 for "
        "a forget set of at most K/2 classes (full-class forgetting), required otherwise", default=None,
        ge=0, le=100, note="a percentage, or None")
    plateau_patience: int = setting(
        "forget_acc rule: also stop when the forget accuracy has not reached a new low for this many steps "
        "(0: never); a run stopped so, or by max_steps, returns the weights of its lowest reading",
        default=50, ge=0)
    overshoot: float = setting(
        "forget_acc rule: a reading more than this many points (at least one monitor sample) below the target "
        "(a step too large for a partial target: a sub-class, a random subset), or with a holdout past its "
        "utility guard, undoes the steps since the last good reading and halves the learning rate (at most "
        "max_backtracks times)", default=1.0, ge=0)
    max_backtracks: int = setting("how many times a run may halve its learning rate so (0: never)", default=6, ge=0)
    lower_forgotten_bias: bool = setting(
        "whole-class forgetting (target 0) that ended within `overshoot` points of it on the monitor subsample: "
        "lower each forgotten class's classifier bias until its logit is 1 below the lowest other logit on every "
        "monitor sample, as in a model that never saw the class (no other prediction changes); skipped when the "
        "last layer has no per-class bias (the record says so)",
        default=True)
    forgotten_weights: Literal["zero", "keep"] = setting(
        "with the bias step: zero (the forgotten class's classifier weights are set to 0 first, so its logit is "
        "the same constant on every input and carries nothing of the memorised features: the loss attack's "
        "within-class signal) or keep them", default="zero")
    restore_other_logits: bool = setting(
        "with the bias step: add the same multiple of the forget images' mean feature to every other class's "
        "classifier row, so that the other classes' log-sum-exp on those images rises, on average, to the "
        "log-sum-exp the model had there before the run (training pushed them down on these very images; a model "
        "that never saw them did not). The same shift for all other classes leaves their ranking, and so every "
        "prediction among them, unchanged; needs a linear last layer", default=True)
    monitor_samples: int = setting(
        "size of the fixed seeded forget subsample the stopping statistics use (with a partial target and "
        "update=last, the forget accuracy is read on the whole forget set)", default=256, ge=1)
    monitor_irrelevant: Literal["fixed", "all"] = setting(
        "S' on the monitor subsample: 'fixed' (one seeded c' per sample, drawn once) or 'all' K-1 classes",
        default="fixed")
    monitor_every: int = setting("steps between two evaluations of the stopping statistics", default=5, ge=1)
    monitor_full_every: int = setting(
        "forget_acc rule: every how many readings also measure the sensitivities (S_c, S', loss: input-gradient "
        "passes, for the history and the S' divergence guard); the others read the forget accuracy and the "
        "logits with forward passes only, all that rule needs. The readings at step 0 and at max_steps are "
        "always full; 1: every reading full", default=4, ge=1)
    divergence_factor: float = setting(
        "divergence guard: S' or max |logit| growing past this multiple of its start value", default=50.0, gt=1)
    update: Literal["last", "after_batchnorm", "all"] = setting(
        "which weights move: last: only the last layer with weights (the classifier); after_batchnorm: the "
        "layers that run after the network's last BatchNorm (all if it has none); all: every weight, as "
        "published. A re-estimation of BatchNorm statistics cannot undo a change of the layers after the last "
        "BatchNorm", default="last")
    batchnorm_filters: Literal["fixed_norm", "free"] = setting(
        "fixed_norm: keep the norm of each output filter of a layer feeding a BatchNorm (a rescaled filter "
        "lowers sensitivities only against frozen running statistics, and re-estimating them undoes it); "
        "free: no constraint, as published", default="fixed_norm")

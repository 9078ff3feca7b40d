"""Recovery audits: does the forgotten knowledge come back after something any user can do?

Two audits, each run on a copy of the model (the evaluated model is never changed), the same
way on the unlearned and on the retrained model, which is the yardstick:

- **BatchNorm re-estimation** (`reestimate_batchnorm`): reset every BatchNorm layer's running
  statistics and re-estimate them as a cumulative average (momentum=None) over unlabelled
  images, BatchNorm layers in train mode and everything else in eval mode, without gradients
  and without changing any weight. A model whose forgetting lives only in stale running
  statistics gets the forgotten class back; a retrained model does not.
- **Relearning attack** (`relearn`): a few seeded SGD steps of ordinary fine-tuning with
  cross-entropy on a small slice of the retain set (never the forget set: the attacker only
  has ordinary data). BatchNorm layers are in train mode, as in any fine-tuning (batch
  statistics, running statistics updated with the layer's own momentum); dropout and every
  other module stay in eval mode, so the attack is deterministic and draws nothing from the
  global RNG.

`mumis.evaluate(..., metrics="recovery")` measures the accuracies after each audit.

A third audit reads the features instead of the outputs:

- **Feature probe** (`feature_probe`): a linear probe (multinomial logistic regression,
  classes weighted equally) on the model's penultimate features, the input of its last layer
  with weights, fitted on half of the forget samples plus half of a labelled retain slice, and
  scored on the other halves. A model that only silenced the forgotten class in its classifier
  keeps the class separable in its features, and the probe finds it; the retrained model's
  score is the yardstick (its features never had to encode the class, but may still separate
  it somewhat: that much is not a failure).
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..exceptions import ConfigError, DataError, ModelError
from ..functional.batchnorm import last_layer
from .accuracy import model_device
from .mia import _one_blas_thread


@dataclass(frozen=True)
class RecoveryConfig:
    """Settings of the recovery audits (every one fixed by default, so runs compare).

    Attributes:
        bn_samples: unlabelled images for the BatchNorm re-estimation: a seeded slice of the
            retain set of min(bn_samples, retain size) images (ignored when the caller gives
            its own images).
        bn_batch_size: images per forward pass of the re-estimation (batches of equal size;
            each batch counts once in the cumulative average).
        relearn_samples: retain images (with labels) the attacker fine-tunes on: a seeded
            slice of min(relearn_samples, retain size).
        relearn_steps: SGD steps of the attack.
        relearn_lr: SGD learning rate of the attack.
        relearn_momentum: SGD momentum of the attack.
        relearn_batch_size: samples per attack step (the whole slice when it is smaller).
    """

    bn_samples: int = 600
    bn_batch_size: int = 200
    relearn_samples: int = 1000
    relearn_steps: int = 30
    relearn_lr: float = 0.01
    relearn_momentum: float = 0.9
    relearn_batch_size: int = 64

    def __post_init__(self) -> None:
        checks = [
            (self.bn_samples >= 2, "bn_samples must be at least 2"),
            (self.bn_batch_size >= 2, "bn_batch_size must be at least 2"),
            (self.relearn_samples >= 2, "relearn_samples must be at least 2"),
            (self.relearn_steps >= 0, "relearn_steps must be >= 0"),
            (self.relearn_lr > 0 and math.isfinite(self.relearn_lr), "relearn_lr must be a positive number"),
            (0 <= self.relearn_momentum < 1, "relearn_momentum must be in [0, 1)"),
            (self.relearn_batch_size >= 2, "relearn_batch_size must be at least 2"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ConfigError(f"recovery audit setting out of range: {msg}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def of(cls, value: RecoveryConfig | dict[str, Any] | None) -> RecoveryConfig:
        """A config from itself, a {setting: value} dict (unknown keys: ConfigError) or None."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"recovery must be a RecoveryConfig or a dict of its settings, got "
                              f"{type(value).__name__}")
        valid = list(cls.__dataclass_fields__)
        unknown = [k for k in value if k not in valid]
        if unknown:
            from ..registry import did_you_mean

            raise ConfigError(f"unknown recovery audit setting {unknown[0]!r}."
                              f"{did_you_mean(unknown[0], valid)} Valid: {', '.join(valid)}")
        return cls(**value)


def batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The BatchNorm layers (1d/2d/3d, SyncBatchNorm) that keep running statistics."""
    return [m for m in model.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


def _bn_train_only(model: nn.Module, bns: Sequence[nn.Module]) -> None:
    """Everything in eval mode (no dropout), the BatchNorm layers in train mode."""
    model.eval()
    for bn in bns:
        bn.train()


def reestimate_batchnorm(
    model: nn.Module, images: torch.Tensor, *, batch_size: int = 200
) -> nn.Module | None:
    """A copy of `model` whose BatchNorm running statistics are re-estimated on `images`.

    Every BatchNorm layer's statistics are reset and then averaged cumulatively
    (momentum=None) over batches of `images` of (nearly) equal size, under `no_grad`, with only
    the BatchNorm layers in train mode; no weight changes. The copy is returned in eval mode.

    Args:
        model: the classifier (left untouched).
        images: (N, ...) unlabelled inputs, N >= 2.
        batch_size: images per forward pass (at least 2: train-mode BatchNorm needs 2 values).
    Returns:
        The re-estimated copy, or None when the model has no BatchNorm layer with running
        statistics (nothing to re-estimate: the audit does not apply).
    Raises:
        DataError: fewer than 2 images.
    """
    if len(images) < 2:
        raise DataError(f"BatchNorm re-estimation needs at least 2 images, got {len(images)}")
    if not batchnorm_layers(model):
        return None
    audited = copy.deepcopy(model)
    bns = batchnorm_layers(audited)
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the batches
    dev = model_device(audited)
    n_batches = max(1, len(images) // max(batch_size, 2))  # every chunk holds >= 2 images
    _bn_train_only(audited, bns)
    with torch.no_grad():
        for chunk in torch.tensor_split(images, n_batches):
            audited(chunk.to(dev))
    audited.eval()
    return audited


@dataclass
class RelearnOutcome:
    """What `relearn` did: the attacked copy, the steps taken and a note when it stopped early."""

    model: nn.Module
    steps: int
    note: str | None = None


def relearn(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    steps: int = 30,
    lr: float = 0.01,
    momentum: float = 0.9,
    batch_size: int = 64,
    seed: int = 0,
) -> RelearnOutcome:
    """A short relearning attack: SGD fine-tuning of a copy of `model` on (x, y).

    Batches of `batch_size` (or all of x when smaller) are drawn from a stream of seeded
    permutations of range(len(x)), so two calls with the same arguments take identical steps.
    Every parameter is trained (an attacker holds all the weights). BatchNorm layers are in
    train mode, every other module in eval mode. A non-finite loss stops the attack before
    that step. The copy is returned in eval mode.

    Args:
        model: the classifier (left untouched).
        x, y: the attacker's labelled data (N >= 2).
        steps, lr, momentum, batch_size: the SGD attack.
        seed: seed of the batch order.
    Returns:
        RelearnOutcome(model=attacked copy, steps=steps taken, note=why it stopped early).
    Raises:
        DataError: fewer than 2 samples, or x and y of different lengths.
    """
    if len(x) != len(y) or len(x) < 2:
        raise DataError(f"the relearning attack needs at least 2 labelled samples (x and y of the "
                        f"same length); got {len(x)} inputs and {len(y)} labels")
    audited = copy.deepcopy(model)
    params = list(audited.parameters())
    if not params or steps == 0:
        note = "the model has no parameters; nothing to fine-tune" if not params else None
        return RelearnOutcome(audited.eval(), 0, note)
    for p in params:
        p.requires_grad_(True)
    dev = model_device(audited)
    opt = torch.optim.SGD(params, lr=lr, momentum=momentum)
    g = torch.Generator().manual_seed(seed)
    size = min(batch_size, len(x))
    need = steps * size
    stream = torch.cat([torch.randperm(len(x), generator=g) for _ in range(-(-need // len(x)))])
    _bn_train_only(audited, batchnorm_layers(audited))
    done, note = 0, None
    with torch.enable_grad():
        for i in range(steps):
            idx = stream[i * size:(i + 1) * size]
            loss = F.cross_entropy(audited(x[idx].to(dev)), y[idx].to(dev))
            if not math.isfinite(float(loss.detach())):
                note = f"non-finite loss at attack step {i + 1}; stopped before it"
                break
            if not loss.requires_grad:
                note = "the model's output does not depend on its parameters; nothing to fine-tune"
                break
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            done += 1
    audited.eval()
    for p in audited.parameters():
        p.grad = None
    return RelearnOutcome(audited, done, note)


def audit_slices(n_retain: int, cfg: RecoveryConfig, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded retain indices for the re-estimation and for the attack: the first
    min(bn_samples, n) and min(relearn_samples, n) of one permutation (they may overlap)."""
    perm = torch.randperm(n_retain, generator=torch.Generator().manual_seed(seed))
    return perm[:cfg.bn_samples], perm[:cfg.relearn_samples]


@torch.no_grad()
def penultimate_features(model: nn.Module, x: torch.Tensor, *, batch_size: int = 512) -> torch.Tensor:
    """(N, D) inputs of the model's last layer with weights (its classifier), in eval mode.

    The layer is found on one forward of `x[:2]` (`functional.batchnorm.last_layer`); its input
    is flattened per sample. The model's train/eval modes are restored afterwards.

    Raises:
        ModelError: the model has no submodule with weights (nothing to call a feature layer).
    """
    layer = last_layer(model, x[:2].to(model_device(model)))
    if layer is model:
        raise ModelError("the feature probe needs a model whose classifier is a submodule with weights "
                         "(e.g. a final nn.Linear); this model has none")
    found: list[torch.Tensor] = []

    def grab(_mod: nn.Module, inp: tuple[torch.Tensor, ...]) -> None:
        found.append(inp[0].detach().flatten(1).cpu())

    modes = {m: m.training for m in model.modules()}
    handle = layer.register_forward_pre_hook(grab)
    dev = model_device(model)
    try:
        model.eval()
        for chunk in x.split(batch_size):
            model(chunk.to(dev))
    finally:
        handle.remove()
        for m, t in modes.items():
            m.training = t
    if len(found) != -(-len(x) // batch_size):  # the layer must run once per forward
        raise ModelError(f"the feature probe's layer ({type(layer).__name__}) ran {len(found)} times on "
                         f"{-(-len(x) // batch_size)} forwards; it needs a classifier called once per forward")
    return torch.cat(found).float()


@dataclass
class ProbeOutcome:
    """What `feature_probe` measured (accuracies in percent on the held-out halves)."""

    forget_acc: float  # held-out forget samples given their own label by the probe
    retain_acc: float  # held-out retain samples (the probe works at all)
    details: dict[str, Any]

    def keys(self) -> dict[str, float]:
        """The evaluation keys: `probe_forget_acc`, `probe_retain_acc`."""
        return {"probe_forget_acc": self.forget_acc, "probe_retain_acc": self.retain_acc}


def feature_probe(
    model: nn.Module,
    forget: tuple[torch.Tensor, torch.Tensor],
    retain: tuple[torch.Tensor, torch.Tensor],
    *,
    retain_samples: int = 1000,
    c: float = 1.0,
    max_iter: int = 1000,
    seed: int = 0,
) -> ProbeOutcome:
    """A linear probe on penultimate features: does the model still separate the forget set?

    The forget set and a seeded slice of min(retain_samples, retain size) labelled retain
    samples are each split in two halves by one seeded permutation. A multinomial logistic
    regression (`sklearn`, lbfgs, L2 strength 1/c, `class_weight="balanced"` so that a
    forgotten class of many samples does not dominate) is fitted on the standardised features
    of the first halves and scored on the second halves. The model is not changed.

    Args:
        model: the classifier (eval mode is used; its modes are restored).
        forget, retain: (x, y) pairs; the forget set needs at least 4 samples.
        retain_samples: size of the labelled retain slice (an attacker's ordinary data).
        c, max_iter: the logistic regression's inverse L2 strength and iteration budget.
        seed: seed of the two permutations.
    Returns:
        ProbeOutcome; `keys()` gives `probe_forget_acc` and `probe_retain_acc`.
    Raises:
        DataError: fewer than 4 forget or retain samples, or x and y of different lengths.
        ConfigError: retain_samples < 4, c <= 0 or max_iter < 1.
        ModelError: no classifier layer to read the features from.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    if retain_samples < 4 or not (c > 0 and math.isfinite(c)) or max_iter < 1:
        raise ConfigError(f"feature probe settings out of range: retain_samples={retain_samples} (>= 4), "
                          f"c={c} (> 0), max_iter={max_iter} (>= 1)")
    for name, (x, y) in (("forget", forget), ("retain", retain)):
        if len(x) != len(y) or len(x) < 4:
            raise DataError(f"the feature probe needs at least 4 labelled {name} samples (x and y of the "
                            f"same length); got {len(x)} inputs and {len(y)} labels")
    g = torch.Generator().manual_seed(seed)
    f_perm = torch.randperm(len(forget[1]), generator=g)
    r_perm = torch.randperm(len(retain[1]), generator=g)[:retain_samples]
    f_tr, f_te = f_perm[: len(f_perm) // 2], f_perm[len(f_perm) // 2:]
    r_tr, r_te = r_perm[: len(r_perm) // 2], r_perm[len(r_perm) // 2:]
    feats = penultimate_features(model, torch.cat([forget[0][f_perm], retain[0][r_perm]]))
    labels = torch.cat([forget[1][f_perm], retain[1][r_perm]]).cpu()
    nf, nr = len(f_tr), len(r_tr)
    train_idx = torch.cat([torch.arange(nf), len(f_perm) + torch.arange(nr)])
    x_train, y_train = feats[train_idx], labels[train_idx]
    mean, std = x_train.mean(0), x_train.std(0).clamp_min(1e-6)  # a dead feature stays 0, not NaN
    z = ((feats - mean) / std).double().numpy()
    if not math.isfinite(float(z.sum())):
        raise ModelError("the feature probe got non-finite features from the model")
    clf = LogisticRegression(C=c, max_iter=max_iter, class_weight="balanced")
    with warnings.catch_warnings(record=True) as caught, _one_blas_thread():
        warnings.simplefilter("always", ConvergenceWarning)
        clf.fit(z[train_idx.numpy()], y_train.numpy())
    pred = torch.from_numpy(clf.predict(z)).to(labels.dtype)
    hit = (pred == labels).double()
    f_hit, r_hit = hit[nf:len(f_perm)], hit[len(f_perm) + nr:]
    details = {"features": int(feats.shape[1]), "forget_train": nf, "forget_test": len(f_te),
               "retain_train": nr, "retain_test": len(r_te),
               "converged": not any(issubclass(w.category, ConvergenceWarning) for w in caught)}
    return ProbeOutcome(100.0 * float(f_hit.mean()), 100.0 * float(r_hit.mean()), details)


__all__ = ["ProbeOutcome", "RecoveryConfig", "RelearnOutcome", "audit_slices", "batchnorm_layers",
           "feature_probe", "penultimate_features", "relearn", "reestimate_batchnorm"]

"""Train original and retrained (oracle) models: SGD with momentum, weight decay and a schedule.

`train_model` is the loop; `TrainConfig` holds its settings; named recipes (`quick`, the default,
and `memorise`, which drives train accuracy to about 100 % as in the MU-Mis paper) give
per-dataset/per-model settings; `train_run` is what `mumis train` does: data + forget spec ->
model -> run directory.

Determinism: on the CPU the same seed gives bit-identical weights. Initialisation happens under
a forked, seeded global RNG; shuffling and augmentation draw from a seeded `torch.Generator`;
the loop itself runs under a forked global RNG (for user models with dropout), so the caller's
RNG state is never touched.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
import yaml
from torch import nn

from . import distributed
from .config import build_config, config_to_dict
from .exceptions import ConfigError, DataError, ModelError
from .registry import did_you_mean
from .utils import (
    atomic_write_json,
    atomic_write_text,
    check_overwritable,
    make_generator,
    resolve_device,
    sync,
)

Schedule = Literal["cosine", "step", "constant"]


@dataclass
class TrainConfig:
    """Settings of one training run (every field can be set with `--set key=value`).

    Attributes:
        epochs: passes over the training data.
        batch_size: samples per SGD step.
        lr: peak learning rate.
        momentum: SGD momentum.
        nesterov: Nesterov momentum.
        weight_decay: L2 penalty (SGD's weight_decay, on every parameter).
        schedule: "cosine" (to 0), "step" (x `gamma` at 50 % and 75 % of training), "constant".
        gamma: decay factor of the "step" schedule.
        warmup_epochs: linear warm-up from lr/10 over this many epochs (may be fractional).
        augment: random-crop augmentation (zero padding of `crop_padding` pixels, tensor ops).
        crop_padding: padding of the random crop, in pixels.
        hflip: random horizontal flips (off for digits and MNIST-like data: a flipped digit is
            another symbol).
        label_smoothing: cross-entropy label smoothing (0 keeps the memorisation regime).
        eval_batch_size: batch size for measuring accuracy.
    """

    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    schedule: Schedule = "cosine"
    gamma: float = 0.1
    warmup_epochs: float = 0.0
    augment: bool = False
    crop_padding: int = 2
    hflip: bool = False
    label_smoothing: float = 0.0
    eval_batch_size: int = 1024

    def validate(self) -> None:
        """Raise ConfigError on out-of-range values."""
        checks = [
            (self.epochs >= 1, "epochs must be at least 1"),
            (self.batch_size >= 1, "batch_size must be at least 1"),
            (self.lr > 0 and math.isfinite(self.lr), "lr must be a positive number"),
            (0.0 <= self.momentum < 1.0, "momentum must be in [0, 1)"),
            (not self.nesterov or self.momentum > 0, "nesterov needs momentum > 0"),
            (self.weight_decay >= 0, "weight_decay must be >= 0"),
            (0.0 < self.gamma <= 1.0, "gamma must be in (0, 1]"),
            (0.0 <= self.warmup_epochs < self.epochs, "warmup_epochs must be in [0, epochs)"),
            (0 <= self.crop_padding <= 16, "crop_padding must be in 0..16"),
            (0.0 <= self.label_smoothing < 1.0, "label_smoothing must be in [0, 1)"),
            (self.eval_batch_size >= 1, "eval_batch_size must be at least 1"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ConfigError(f"training setting out of range: {msg}")


# --------------------------------------------------------------------------- recipes
#: Recipe name -> {(dataset family, model): settings}; "*" matches anything. Entries are layered
#: from general to specific: ("*", "*"), ("*", model), (family, "*"), (family, model).
#: Measured on a shared 2-core CPU machine, one thread (README has the table): digits mlp quick
#: 98.9 % test / 99.9 % train in ~4 s, memorise 100 % train; fashion-mnist cnn quick (5 epochs)
#: 91.1 % test in ~3 min, memorise (12 epochs) 99.7 % train / 92.0 % test in ~4-8 min.
RECIPES: dict[str, dict[tuple[str, str], dict[str, Any]]] = {
    "quick": {
        ("*", "*"): {"epochs": 10, "batch_size": 128, "lr": 0.05, "weight_decay": 5e-4},
        ("*", "resnet18"): {"lr": 0.1, "augment": True, "crop_padding": 4},
        # 1-pixel shifts on 8x8 digits: ~98.5 % test instead of ~97.4 % without.
        ("digits", "*"): {"epochs": 50, "batch_size": 64, "augment": True, "crop_padding": 1},
        ("mnist", "*"): {"epochs": 5},
        ("cifar", "*"): {"epochs": 30, "augment": True, "crop_padding": 4, "hflip": True},
    },
    # Train accuracy ~100 %: no augmentation, no label smoothing, little or no weight decay,
    # small batches. Recipes may also set model options ("model.KEY", built-in models only).
    "memorise": {
        ("*", "*"): {"epochs": 30, "batch_size": 128, "lr": 0.05, "weight_decay": 1e-4},
        ("digits", "*"): {"epochs": 40, "batch_size": 64},
        # fashion-mnist cnn: 99.1 % train after 10 epochs with hidden=512 (97.9 % with 128).
        ("mnist", "*"): {"epochs": 12, "batch_size": 64, "weight_decay": 0.0},
        ("mnist", "cnn"): {"model.hidden": 512},
        ("cifar", "*"): {"epochs": 60, "lr": 0.1, "weight_decay": 5e-4},
    },
}


def dataset_family(dataset: str) -> str:
    """'digits', 'mnist' (MNIST, Fashion-MNIST, other 28x28 grey sets), 'cifar' or '*'."""
    d = dataset.partition("@")[0].lower()  # a subset NAME@N trains like NAME
    if d == "digits":
        return "digits"
    if "mnist" in d:
        return "mnist"
    if d.startswith("cifar"):
        return "cifar"
    return "*"


def recipe_settings(recipe: str, *, dataset: str, model: str) -> dict[str, Any]:
    """The TrainConfig settings a named recipe gives for one dataset and model.

    Raises:
        ConfigError: unknown recipe (with did-you-mean).
    """
    if recipe not in RECIPES:
        names = sorted(RECIPES)
        raise ConfigError(f"unknown recipe {recipe!r}.{did_you_mean(recipe, names)} "
                          f"Choose one of: {', '.join(names)}")
    table = RECIPES[recipe]
    fam = dataset_family(dataset)
    out: dict[str, Any] = {}
    for key in (("*", "*"), ("*", model), (fam, "*"), (fam, model)):
        out.update(table.get(key, {}))
    return out


def make_train_config(
    recipe: str = "quick",
    *,
    dataset: str,
    model: str,
    overrides: dict[str, Any] | None = None,
) -> TrainConfig:
    """A recipe's TrainConfig with user overrides applied on top (strictly typed).

    The recipe's model options (`model.KEY`) are left out: see `recipe_model_options`.
    """
    settings, _ = split_overrides(recipe_settings(recipe, dataset=dataset, model=model))
    settings.update(overrides or {})
    return build_config(TrainConfig, settings, what="training")


def recipe_model_options(recipe: str, *, dataset: str, model: str) -> dict[str, Any]:
    """The model options a recipe sets (its `model.KEY` entries), e.g. {'hidden': 512}."""
    return split_overrides(recipe_settings(recipe, dataset=dataset, model=model))[1]


# --------------------------------------------------------------------------- the loop
def lr_at(cfg: TrainConfig, step: int, total_steps: int, steps_per_epoch: int) -> float:
    """Learning rate at optimiser step `step` (0-based) of `total_steps`."""
    warm = int(round(cfg.warmup_epochs * steps_per_epoch))
    if step < warm:
        return cfg.lr * (0.1 + 0.9 * step / warm)
    if cfg.schedule == "constant":
        return cfg.lr
    progress = (step - warm) / max(total_steps - warm, 1)
    if cfg.schedule == "cosine":
        return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * progress))
    return cfg.lr * cfg.gamma ** ((progress >= 0.5) + (progress >= 0.75))  # step


def augment_batch(
    x: torch.Tensor, *, padding: int, hflip: bool, generator: torch.Generator
) -> torch.Tensor:
    """Random crop after zero padding, and optional horizontal flip, per sample.

    Args:
        x: images (B, C, H, W).
        padding: pixels of zero padding on each side (0: no crop).
        hflip: flip each image left-right with probability 1/2.
        generator: a CPU generator (the draws do not depend on the device).

    Returns:
        Augmented images (B, C, H, W), a new tensor.
    """
    b, _, h, w = x.shape
    if padding > 0:
        dy = torch.randint(0, 2 * padding + 1, (b,), generator=generator).to(x.device)
        dx = torch.randint(0, 2 * padding + 1, (b,), generator=generator).to(x.device)
        xp = F.pad(x, (padding, padding, padding, padding))  # (B, C, H+2p, W+2p)
        rows = dy[:, None] + torch.arange(h, device=x.device)  # (B, H)
        cols = dx[:, None] + torch.arange(w, device=x.device)  # (B, W)
        bidx = torch.arange(b, device=x.device)[:, None, None]
        x = xp[bidx, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)  # (B, C, H, W)
    if hflip:
        flip = (torch.rand(b, generator=generator) < 0.5).to(x.device)
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    return x.contiguous()


@torch.no_grad()
def accuracy(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 1024,
    device: str | torch.device | None = None,
) -> float:
    """Accuracy in percent of `model` (in eval mode; its mode is restored) on (x, y)."""
    if len(y) == 0:
        return float("nan")
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        correct = 0
        for i in range(0, len(y), batch_size):
            xb = x[i:i + batch_size].to(dev)
            correct += int((model(xb).argmax(1).cpu() == y[i:i + batch_size].cpu()).sum())
    finally:
        model.train(was_training)
    return 100.0 * correct / len(y)


def _show_progress(progress: bool) -> bool:
    return bool(progress) and sys.stderr.isatty()


#: Below this many multiply-adds per forward pass of one batch, train with one CPU thread: the
#: per-op work is too small to split well, and on a busy machine threads waiting for a core cost
#: far more than they save. Measured on a shared 2-core machine: digits MLP 50 epochs 1-6 s with
#: 1 thread vs minutes with 2; Fashion-MNIST CNN step 30 ms vs 210-370 ms. Covers the digits and
#: 28x28 models (Fashion-MNIST CNN: 1.6e8); ResNet-18 on 32x32 (7e10) keeps torch's setting.
SMALL_STEP_MACS = 2e8


def forward_macs(model: nn.Module, sample: torch.Tensor) -> int:
    """Multiply-adds of Linear and Conv layers in a forward pass of one sample (estimate).

    Args:
        model: the model (modes are restored afterwards).
        sample: one input (1, ...) on the model's device.

    Returns:
        The count; layers other than Linear / Conv are ignored.
    """
    total = 0

    def hook(m: nn.Module, _inp: object, out: object) -> None:
        nonlocal total
        if isinstance(out, torch.Tensor):
            w: torch.Tensor = m.weight  # type: ignore[assignment]  # (out, in) or (out, in/groups, *kernel)
            total += int(w.numel() * (out[0].numel() // w.shape[0]))

    modes = {m: m.training for m in model.modules()}
    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d))]
    try:
        model.eval()
        with torch.no_grad():
            model(sample[:1])
    finally:
        for h in handles:
            h.remove()
        for m, mode in modes.items():
            m.training = mode
    return total


def choose_threads(model: nn.Module, x: torch.Tensor, batch_size: int,
                   device: str | torch.device = "cpu") -> int | None:
    """1 for small CPU workloads (see SMALL_STEP_MACS), None (torch's setting) otherwise.

    Depends only on the model and batch size, never on the machine's load, so a run stays
    reproducible (results can differ with the thread count).
    """
    if resolve_device(device).type != "cpu":
        return None
    macs = forward_macs(model, x[:1].to(next(model.parameters()).device))
    return 1 if macs * min(batch_size, len(x)) < SMALL_STEP_MACS else None


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Use `n` intra-op CPU threads inside the block (None: unchanged), restored afterwards."""
    before = torch.get_num_threads()
    if n is None or n == before:
        yield
        return
    if n < 1:
        raise ConfigError(f"threads must be at least 1, got {n}")
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def check_distributed_training(model: nn.Module) -> None:
    """Refuse models whose training would differ per rank under torchrun (BatchNorm).

    Raises:
        ConfigError: the model has BatchNorm layers (batch statistics are per rank part).
    """
    bn = [name for name, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if bn:
        raise ConfigError(
            f"training a model with BatchNorm ({bn[0]}, ...) under torchrun is not supported yet: "
            "each rank would normalise with the statistics of its part of the batch; train it as one process"
        )


def train_model(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    cfg: TrainConfig,
    *,
    seed: int,
    device: str | torch.device = "cpu",
    progress: bool = True,
    threads: int | None = None,
) -> list[dict[str, float]]:
    """Train `model` in place on (x, y) with SGD, momentum, weight decay and `cfg.schedule`.

    Args:
        model: a classifier returning logits (N, K); moved to `device` and trained in place.
        x: inputs (N, ...) in [0, 1].
        y: labels (N,) int64.
        cfg: training settings.
        seed: seeds shuffling, augmentation and any randomness inside the model (dropout).
        device: "cpu", "cuda[:N]" or "auto".
        progress: show a progress bar (only on a terminal).
        threads: CPU threads during training (None: torch's setting); restored afterwards.

    Under torchrun (`mumis.distributed`) every rank draws the same global batches and
    augmentation, trains on its contiguous part of each batch and the gradients are summed
    across ranks: the same model as one process, to float tolerance (no BatchNorm, see
    `check_distributed_training`).

    Returns:
        One dict per epoch: epoch, loss (mean), acc (running train accuracy in percent, on the
        augmented batches), lr (at the end of the epoch), time_s (cumulative).

    Raises:
        DataError: x and y do not match or there is nothing to train on.
        FloatingPointError: the loss became NaN or infinite (lower lr).
    """
    if x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise DataError(f"training data must be non-empty with one label per sample, got "
                        f"{x.shape[0]} inputs and {y.shape[0]} labels")
    dev = resolve_device(device)
    model.to(dev)
    dist_on = distributed.is_distributed()
    if dist_on:  # torchrun: each rank computes its part of every global batch (see mumis.distributed)
        check_distributed_training(model)
        distributed.broadcast_module(model)
    x, y = x.to(dev), y.to(dev)
    from .models.checks import probe_model

    _, key = probe_model(model, x, what="training", labels=y)  # inputs / classes that do not fit: one line
    if key is not None:
        raise ModelError(f"the model returns its logits as .{key}; training needs a tensor: train "
                         f"mumis.models.LogitsAdapter(model, {key!r}) (a CLI model factory returns it)")
    n = x.shape[0]
    bs = min(cfg.batch_size, n)
    steps_per_epoch = math.ceil(n / bs)
    total = cfg.epochs * steps_per_epoch
    gen = make_generator(seed)  # CPU: shuffling and augmentation draws
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                          weight_decay=cfg.weight_decay, nesterov=cfg.nesterov)
    images = x.ndim == 4
    history: list[dict[str, float]] = []
    bar = None
    if _show_progress(progress) and distributed.is_main():
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc="train", unit="step", leave=False, dynamic_ncols=True)
    was_training = model.training
    model.train()
    step = 0
    t0 = time.perf_counter()
    devices = [dev.index or 0] if dev.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices), torch_threads(threads):
            torch.manual_seed(int(seed) + 1)  # dropout etc. in user models; global RNG restored
            for epoch in range(1, cfg.epochs + 1):
                perm = torch.randperm(n, generator=gen).to(dev)
                loss_sum = torch.zeros((), device=dev)
                correct = torch.zeros((), device=dev, dtype=torch.long)
                seen = 0
                for i in range(0, n, bs):
                    idx = perm[i:i + bs]
                    if idx.numel() < 2 and n >= 2:
                        continue  # a batch of 1 breaks BatchNorm in train mode
                    xb, yb = x[idx], y[idx]
                    if images and (cfg.augment or cfg.hflip):
                        xb = augment_batch(xb, padding=cfg.crop_padding if cfg.augment else 0,
                                           hflip=cfg.hflip, generator=gen)
                    lr = lr_at(cfg, step, total, steps_per_epoch)
                    for group in opt.param_groups:
                        group["lr"] = lr
                    opt.zero_grad(set_to_none=True)
                    if dist_on:  # this rank's contiguous part; augmentation drawn for the whole batch
                        lo, hi = distributed.shard_bounds(len(idx))
                        xb, yb = xb[lo:hi], yb[lo:hi]
                    if len(yb):
                        logits = model(xb)  # (b, K)
                        loss = F.cross_entropy(logits, yb, label_smoothing=cfg.label_smoothing)
                        # weighted by this part's share: the summed gradients are the global batch mean's
                        (loss * (len(yb) / len(idx))).backward()
                        loss_sum += loss.detach() * len(yb)
                        correct += (logits.detach().argmax(1) == yb).sum()
                        seen += len(yb)
                    if dist_on:
                        distributed.all_reduce_grads(params)
                    opt.step()
                    step += 1
                    if bar is not None:
                        bar.update(1)
                if dist_on:
                    loss_sum, correct, seen = (distributed.all_reduce_sum(loss_sum),
                                               distributed.all_reduce_sum(correct), int(distributed.all_reduce_sum(
                                                   torch.tensor(seen))))
                mean_loss = float(loss_sum) / max(seen, 1)
                if not math.isfinite(mean_loss):
                    raise FloatingPointError(
                        f"training diverged: the loss is {mean_loss} in epoch {epoch}; "
                        f"lower lr (now {cfg.lr}) with --set lr=..."
                    )
                sync(dev)
                history.append({
                    "epoch": epoch, "loss": mean_loss, "acc": 100.0 * int(correct) / max(seen, 1),
                    "lr": lr_at(cfg, max(step - 1, 0), total, steps_per_epoch),
                    "time_s": time.perf_counter() - t0,
                })
                if bar is not None:
                    bar.set_postfix(epoch=epoch, loss=f"{mean_loss:.3f}", acc=f"{history[-1]['acc']:.1f}")
    finally:
        if bar is not None:
            bar.close()
        model.train(was_training)
    return history


# --------------------------------------------------------------------------- a whole run
@dataclass
class TrainResult:
    """What `train_run` produced."""

    run_dir: Path
    model: nn.Module
    meta: dict[str, Any]
    metrics: dict[str, Any]
    history: list[dict[str, float]] = field(default_factory=list)


def split_overrides(overrides: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split `--set` overrides into (training settings, model options `model.KEY`)."""
    train: dict[str, Any] = {}
    model: dict[str, Any] = {}
    for k, v in (overrides or {}).items():
        if k.startswith("model."):
            model[k[len("model."):]] = v
        else:
            train[k] = v
    return train, model


def train_run(
    *,
    out: str | Path,
    dataset: str = "digits",
    model: str = "mlp",
    forget: str | None = None,
    recipe: str = "quick",
    seed: int = 0,
    split_seed: int = 0,
    data_dir: str | Path | None = None,
    label_space: Literal["fine", "coarse"] | None = None,
    epochs: int | None = None,
    overrides: dict[str, Any] | None = None,
    model_kwargs: dict[str, Any] | None = None,
    device: str = "auto",
    threads: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> TrainResult:
    """Train an original model (no `forget`) or the retrained oracle (`forget` given) into `out`.

    The oracle trains on the retain set only, with the same recipe and seed. Everything is
    validated before any work; the run directory appears only when complete.

    Args:
        out: the run directory to create.
        dataset: registered dataset name.
        model: `mlp`, `cnn`, `resnet18` or `package.module:function`.
        forget: forget spec (`class:3`, `subclass:NAME`, `random:0.1`, `indices:FILE`).
        recipe: `quick` or `memorise`.
        seed: training seed (initialisation, shuffling, augmentation).
        split_seed: seed of the forget split (random specs); part of the manifest.
        data_dir: data folder (default: the dataset's own default).
        label_space: "coarse" trains an original on superclass labels (for sub-class
            scenarios); with a `subclass:` spec it is implied.
        epochs: overrides the recipe's epochs.
        overrides: TrainConfig settings (`lr`, ...) and model options as `model.KEY`.
        model_kwargs: model options (merged with the `model.KEY` overrides).
        device: "auto", "cpu", "cuda[:N]".
        threads: CPU threads for training (default: 1 for small models and data, see
            `choose_threads`, else torch's setting).
        overwrite: replace an existing non-empty `out`.
        progress: progress bar on a terminal.

    Returns:
        TrainResult with the run directory, the trained model (eval mode), meta and metrics.

    Raises:
        ConfigError, DataError, ModelError: bad input, before anything is written.
    """
    from .checkpoint import build_meta, save_model_dir
    from .data import full_manifest, load_dataset, make_splits, resolve_manifest
    from .models import build_model, is_user_factory, model_spec, resolve_model_kwargs
    from .utils import staged_run_dir

    out = Path(out)
    # checked first so a taken --out fails in a second, not after the data is loaded
    check_overwritable(out, overwrite=overwrite, protected=[data_dir])
    train_over, model_over = split_overrides(overrides)
    if epochs is not None:
        train_over["epochs"] = epochs
    model_key = "*" if is_user_factory(model) else model
    cfg = make_train_config(recipe, dataset=dataset, model=model_key, overrides=train_over)
    recipe_mkw = recipe_model_options(recipe, dataset=dataset, model=model_key)
    mkw = resolve_model_kwargs(model, {**recipe_mkw, **(model_kwargs or {}), **model_over})
    dev = resolve_device(device)
    if data_dir is not None and not Path(data_dir).exists():
        raise DataError(f"data folder {str(data_dir)!r} does not exist; give the folder holding "
                        f"the {dataset} files with --data-dir")
    bundle = load_dataset(dataset, data_dir)
    if Path(bundle.source).exists():  # the default data folder is protected from --overwrite too
        check_overwritable(out, overwrite=overwrite, protected=[bundle.source])
    if forget:
        manifest = resolve_manifest(forget, bundle, seed=split_seed)
        if label_space is not None and label_space != manifest.label_space:
            raise ConfigError(f"forget spec {forget!r} trains in the {manifest.label_space} label "
                              f"space, not {label_space!r}; drop --label-space")
    else:
        manifest = full_manifest(bundle, label_space or "fine")
        if (label_space == "coarse") and bundle.coarse_classes is None:
            raise DataError(f"dataset {dataset!r} has no superclass labels; drop --label-space coarse")
    splits = make_splits(bundle, manifest)
    x_tr, y_tr = splits.retain
    # Normalisation from the data this model trains on: the oracle never sees the forget set.
    mean, std = _channel_stats(x_tr)
    net = build_model(model, input_shape=bundle.input_shape, num_classes=manifest.num_classes,
                      mean=mean, std=std, seed=seed, **mkw)
    from .models.checks import probe_model

    probe_model(net, x_tr, what="training", num_classes=manifest.num_classes)  # one line, before any work
    spec = model_spec(model, input_shape=bundle.input_shape, num_classes=manifest.num_classes,
                      mean=mean, std=std, kwargs=mkw)
    recipe_d = {"name": recipe, "config": config_to_dict(cfg)}
    meta = build_meta(kind="train", model=spec, dataset=bundle, data_dir=data_dir,
                      manifest=manifest, forget_spec=forget, seed=seed, recipe=recipe_d,
                      split_seed=int(split_seed))
    if threads is not None and threads < 1:
        raise ConfigError(f"--threads must be at least 1, got {threads}")
    if threads is None:
        threads = choose_threads(net, x_tr, cfg.batch_size, dev)
    if distributed.is_distributed():
        check_distributed_training(net)  # before any work
    # Under torchrun every rank trains (its part of each batch); only rank 0 writes `out`.
    main = distributed.is_main()
    staged = staged_run_dir(out, overwrite=overwrite) if main else contextlib.nullcontext(None)
    with staged as stage:
        t0 = time.perf_counter()
        history = train_model(net, x_tr, y_tr, cfg, seed=seed, device=dev, progress=progress,
                              threads=threads)
        sync(dev)
        train_time = time.perf_counter() - t0
        net.eval()
        ebs = cfg.eval_batch_size
        metrics: dict[str, Any] = {
            "train_acc": accuracy(net, x_tr, y_tr, batch_size=ebs),
            "test_acc": accuracy(net, *splits.test, batch_size=ebs),
            "train_time_s": train_time,
            "epochs": cfg.epochs,
            "num_train": int(len(y_tr)),
            "device": str(dev),
            "threads": threads if threads is not None else torch.get_num_threads(),
            "world_size": distributed.world(),
        }
        if forget:
            metrics["retain_acc"] = metrics["train_acc"]
            metrics["forget_acc"] = accuracy(net, *splits.forget, batch_size=ebs)
            if splits.test_remaining is not None and splits.test_forgotten is not None:
                metrics["test_remaining_acc"] = accuracy(net, *splits.test_remaining, batch_size=ebs)
                metrics["test_forgotten_acc"] = accuracy(net, *splits.test_forgotten, batch_size=ebs)
        if stage is not None:
            save_model_dir(stage, net, meta)
            atomic_write_json(stage / "metrics.json", metrics)
            atomic_write_text(stage / "history.jsonl", "".join(json.dumps(h) + "\n" for h in history))
            resolved = {
                "dataset": dataset, "data_dir": meta["dataset"]["data_dir"], "model": model,
                "model_kwargs": spec["kwargs"], "forget": forget, "label_space": manifest.label_space,
                "recipe": recipe, "seed": int(seed), "split_seed": int(split_seed),
                "device": str(dev), "train": config_to_dict(cfg),
            }
            atomic_write_text(stage / "config.yaml", yaml.safe_dump(resolved, sort_keys=False))
    distributed.barrier()  # the run directory exists on return, on every rank
    return TrainResult(run_dir=out, model=net, meta=meta, metrics=metrics, history=history)


def _channel_stats(x: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of (N, C, ...) data (as DatasetBundle.channel_stats)."""
    flat = x.transpose(0, 1).reshape(x.shape[1], -1)  # (C, N*...)
    return flat.mean(dim=1).tolist(), flat.std(dim=1).clamp_min(1e-6).tolist()


__all__ = [
    "RECIPES", "SMALL_STEP_MACS", "TrainConfig", "TrainResult", "accuracy", "augment_batch",
    "choose_threads", "dataset_family", "forward_macs", "lr_at", "make_train_config",
    "recipe_model_options", "recipe_settings", "split_overrides", "torch_threads", "train_model", "train_run",
]

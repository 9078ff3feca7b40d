"""The training loop: SGD with momentum, weight decay and a schedule, seeded and deterministic.

Determinism: on the CPU the same seed gives bit-identical weights. Shuffling and augmentation
draw from a seeded `torch.Generator`; the loop itself runs under a forked global RNG (for user
models with dropout), so the caller's RNG state is never touched.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .. import distributed
from ..caller_state import preserved_state
from ..exceptions import ConfigError, DataError, ModelError
from ..utils import make_generator, resolve_device, sync
from .augment import augment_batch
from .recipes import TrainConfig
from .schedule import lr_at
from .threads import torch_threads


@torch.no_grad()
def model_accuracy(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 1024,
    device: str | torch.device | None = None,
) -> float:
    """Accuracy in percent of `model` (in eval mode; its mode is restored) on (x, y).

    Runs the model; `mumis.metrics.logits_accuracy` is the same number from logits already computed.
    """
    if len(y) == 0:
        return float("nan")
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    correct = 0
    with preserved_state(model, eval_mode=True):  # the caller's modes come back, also on error
        for i in range(0, len(y), batch_size):
            xb = x[i:i + batch_size].to(dev)
            correct += int((model(xb).argmax(1).cpu() == y[i:i + batch_size].cpu()).sum())
    return 100.0 * correct / len(y)


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


@dataclass
class _Run:
    """The state of one `train_model` call that every step reads or advances."""

    model: nn.Module
    x: torch.Tensor
    y: torch.Tensor
    cfg: TrainConfig
    dev: torch.device
    dist_on: bool
    gen: torch.Generator
    opt: torch.optim.Optimizer
    params: list[nn.Parameter]
    bar: Any = None
    step: int = 0

    @property
    def n(self) -> int:
        return int(self.x.shape[0])

    @property
    def bs(self) -> int:
        return min(self.cfg.batch_size, self.n)

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.n / self.bs)

    @property
    def total(self) -> int:
        return self.cfg.epochs * self.steps_per_epoch

    def lr(self, step: int) -> float:
        return lr_at(self.cfg, step, self.total, self.steps_per_epoch)


def _place(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
           device: str | torch.device) -> tuple[torch.device, bool, torch.Tensor, torch.Tensor]:
    """Check the data, move model and data to the device, sync ranks; one line on a misfit."""
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
    from ..models.checks import probe_model

    _, key = probe_model(model, x, what="training", labels=y)  # inputs / classes that do not fit: one line
    if key is not None:
        raise ModelError(f"the model returns its logits as .{key}; training needs a tensor: train "
                         f"mumis.models.LogitsAdapter(model, {key!r}) (a CLI model factory returns it)")
    return dev, dist_on, x, y


def _batch_step(run: _Run, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int] | None:
    """One SGD step on the global batch `idx`: (loss, logits, labels) of this rank's part."""
    cfg = run.cfg
    xb, yb = run.x[idx], run.y[idx]
    if xb.ndim == 4 and (cfg.augment or cfg.hflip):
        xb = augment_batch(xb, padding=cfg.crop_padding if cfg.augment else 0,
                           hflip=cfg.hflip, generator=run.gen)
    lr = run.lr(run.step)
    for group in run.opt.param_groups:
        group["lr"] = lr
    run.opt.zero_grad(set_to_none=True)
    if run.dist_on:  # this rank's contiguous part; augmentation drawn for the whole batch
        lo, hi = distributed.shard_bounds(len(idx))
        xb, yb = xb[lo:hi], yb[lo:hi]
    out = None
    if len(yb):
        logits = run.model(xb)  # (b, K)
        loss = F.cross_entropy(logits, yb, label_smoothing=cfg.label_smoothing)
        # weighted by this part's share: the summed gradients are the global batch mean's
        (loss * (len(yb) / len(idx))).backward()
        out = (loss.detach(), logits.detach(), yb)
    if run.dist_on:
        distributed.all_reduce_grads(run.params)
    run.opt.step()
    run.step += 1
    if run.bar is not None:
        run.bar.update(1)
    return None if out is None else (out[0], out[1].argmax(1).eq(out[2]).sum(), len(out[2]))


def _epoch(run: _Run) -> tuple[float, float]:
    """One pass over the shuffled data: (mean loss, running train accuracy in percent)."""
    n, bs = run.n, run.bs
    perm = torch.randperm(n, generator=run.gen).to(run.dev)
    loss_sum = torch.zeros((), device=run.dev)
    correct = torch.zeros((), device=run.dev, dtype=torch.long)
    seen = 0
    for i in range(0, n, bs):
        idx = perm[i:i + bs]
        if idx.numel() < 2 and n >= 2:
            continue  # a batch of 1 breaks BatchNorm in train mode
        part = _batch_step(run, idx)
        if part is not None:
            loss_sum += part[0] * part[2]
            correct += part[1]
            seen += part[2]
    if run.dist_on:
        loss_sum, correct = distributed.all_reduce_sum(loss_sum), distributed.all_reduce_sum(correct)
        seen = int(distributed.all_reduce_sum(torch.tensor(seen)))
    return float(loss_sum) / max(seen, 1), 100.0 * int(correct) / max(seen, 1)


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
    dev, dist_on, x, y = _place(model, x, y, device)
    gen = make_generator(seed)  # CPU: shuffling and augmentation draws
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                          weight_decay=cfg.weight_decay, nesterov=cfg.nesterov)
    run = _Run(model, x, y, cfg, dev, dist_on, gen, opt, params)
    if progress and sys.stderr.isatty() and distributed.is_main():
        from tqdm.auto import tqdm

        run.bar = tqdm(total=run.total, desc="train", unit="step", leave=False, dynamic_ncols=True)
    history: list[dict[str, float]] = []
    t0 = time.perf_counter()
    devices = [dev.index or 0] if dev.type == "cuda" else []
    try:
        with preserved_state(model), torch.random.fork_rng(devices=devices), torch_threads(threads):
            model.train()  # the caller's modes come back afterwards (preserved_state)
            torch.manual_seed(int(seed) + 1)  # dropout etc. in user models; global RNG restored
            for epoch in range(1, cfg.epochs + 1):
                mean_loss, acc = _epoch(run)
                if not math.isfinite(mean_loss):
                    raise FloatingPointError(
                        f"training diverged: the loss is {mean_loss} in epoch {epoch}; "
                        f"lower lr (now {cfg.lr}) with --set lr=..."
                    )
                sync(dev)
                history.append({"epoch": epoch, "loss": mean_loss, "acc": acc,
                                "lr": run.lr(max(run.step - 1, 0)), "time_s": time.perf_counter() - t0})
                if run.bar is not None:
                    run.bar.set_postfix(epoch=epoch, loss=f"{mean_loss:.3f}", acc=f"{acc:.1f}")
    finally:
        if run.bar is not None:
            run.bar.close()
    return history

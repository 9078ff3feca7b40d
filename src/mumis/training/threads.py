"""CPU thread policy of training: one thread for small workloads, restored afterwards."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from ..exceptions import ConfigError
from ..utils import resolve_device

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

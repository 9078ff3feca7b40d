"""Model outputs computed once per split, and the accuracies derived from them.

Every metric of an evaluation is a function of the logits of a split (or of the input
gradients, for the sensitivity diagnostics), so `compute_logits` runs each split through the
model exactly once, in batches, under `torch.no_grad()` and in eval mode; accuracies,
confidences, entropies and losses are then cheap tensor operations on those logits.
"""

from __future__ import annotations

import contextlib
import math

import torch
from torch import nn

from ..caller_state import preserved_state
from ..exceptions import DataError, ModelError
from ..utils import model_device


def eval_mode(model: nn.Module) -> contextlib.AbstractContextManager[nn.Module]:
    """Every submodule in eval mode for the block; each one's own flag (and the rest of the
    caller's state) restored afterwards, even on error (`mumis.caller_state`)."""
    return preserved_state(model, eval_mode=True)


def compute_logits(
    model: nn.Module,
    x: torch.Tensor,
    *,
    batch_size: int = 256,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Logits of `model` on `x`, in batches, without gradients and in eval mode.

    Args:
        model: an `nn.Module` returning logits of shape (B, K).
        x: (N, ...) inputs.
        batch_size: samples per forward pass.
        device: where to run the model (default: the model's own device).
    Returns:
        (N, K) float32 logits on the CPU; (0, 0) when `x` is empty.
    Raises:
        ModelError: the model does not return (B, K) logits.
    """
    if batch_size < 1:
        raise DataError(f"batch_size must be at least 1, got {batch_size}")
    dev = torch.device(device) if device is not None else model_device(model)
    out: list[torch.Tensor] = []
    with eval_mode(model), torch.no_grad():
        for start in range(0, len(x), batch_size):
            xb = x[start : start + batch_size].to(dev)
            logits = model(xb)  # (B, K)
            if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or len(logits) != len(xb):
                shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits)
                raise ModelError(
                    f"the model must return logits of shape (N, K); for a batch of {len(xb)} "
                    f"it returned {shape}"
                )
            out.append(logits.detach().float().cpu())
    if not out:
        return torch.zeros(0, 0)
    return torch.cat(out)  # (N, K)


def logits_accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    """Top-1 accuracy in percent; NaN for an empty split (nothing to measure)."""
    if len(y) == 0:
        return math.nan
    correct = int((logits.argmax(dim=1) == y.to(logits.device)).sum())
    return 100.0 * correct / len(y)  # exact in float64 (a float32 mean prints 97.26027250289917)


def per_class_accuracy(
    logits: torch.Tensor, y: torch.Tensor, num_classes: int
) -> list[float | None]:
    """Accuracy in percent of each class c = 0..num_classes-1; None for a class with no sample."""
    pred = logits.argmax(dim=1) if len(y) else y
    out: list[float | None] = []
    for c in range(num_classes):
        mask = y == c
        n = int(mask.sum())
        out.append(None if n == 0 else 100.0 * int((pred[mask] == c).sum()) / n)
    return out

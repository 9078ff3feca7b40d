"""What both audits read from a model: the logit-scaled confidence of the true class."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..exceptions import DataError


def logit_scaled_confidence(logits: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray) -> np.ndarray:
    """log(p_y / (1 - p_y)) of each sample's true class, (N,) float64.

    Written as z_y - logsumexp_{k != y} z_k, which equals log p_y - log sum_{k != y} p_k without
    forming the probabilities, so confident outputs neither overflow nor round to +-inf. (The
    challenge kit and the LiRA code add 1e-45 inside both logarithms instead, which caps the
    value at about +-103.6; the two agree below that.)

    Args:
        logits: (N, K) outputs, K >= 2.
        y: (N,) true labels in 0..K-1.
    Raises:
        DataError: shapes that do not fit, or labels outside 0..K-1.
    """
    z = torch.as_tensor(logits).double()
    t = torch.as_tensor(y).long()
    if z.dim() != 2 or z.shape[1] < 2 or t.shape != (z.shape[0],):
        raise DataError(f"logits must be (N, K>=2) and labels (N,); got {tuple(z.shape)} and {tuple(t.shape)}")
    if len(t) == 0:
        return np.zeros(0)
    if int(t.min()) < 0 or int(t.max()) >= z.shape[1]:
        raise DataError(f"labels must lie in 0..{z.shape[1] - 1}; got {int(t.min())}..{int(t.max())}")
    true = z.gather(1, t.view(-1, 1)).squeeze(1)
    others = z.scatter(1, t.view(-1, 1), float("-inf"))  # the true class left out of the sum
    return (true - torch.logsumexp(others, dim=1)).numpy()


@torch.no_grad()
def model_confidences(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *,
                      batch_size: int = 1024) -> np.ndarray:
    """Logit-scaled confidences of `model` (eval mode; its mode is restored) on (x, y), (N,)."""
    dev = next(model.parameters()).device
    was = model.training
    model.eval()
    try:
        out = [model(x[i:i + batch_size].to(dev)).detach().cpu() for i in range(0, len(x), batch_size)]
    finally:
        model.train(was)
    logits = torch.cat(out) if out else torch.zeros(0, 2)
    return logit_scaled_confidence(logits, y)


@torch.no_grad()
def model_accuracy_pct(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 1024) -> float:
    """Accuracy in percent of `model` (eval mode; its mode is restored) on (x, y); NaN when empty."""
    if len(y) == 0:
        return float("nan")
    dev = next(model.parameters()).device
    was = model.training
    model.eval()
    try:
        hits = sum(int((model(x[i:i + batch_size].to(dev)).argmax(1).cpu() == y[i:i + batch_size]).sum())
                   for i in range(0, len(y), batch_size))
    finally:
        model.train(was)
    return 100.0 * hits / len(y)

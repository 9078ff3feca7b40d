"""Layers shared by the built-in models."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..exceptions import ModelError


class Normalize(nn.Module):
    """Per-channel `(x - mean) / std`, the first layer of every built-in model.

    Keeping normalisation inside the model means every model takes the [0, 1] pixels the user
    holds, so input gradients (MU-Mis sensitivities) are taken with respect to those pixels.

    Args:
        mean: one value per channel (or a single value for all channels).
        std: as `mean`; every value must be positive.
        ndim: number of dimensions of one sample (3 for (C, H, W), 1 for a feature vector).
    """

    mean: torch.Tensor  # (C, 1, 1) buffers
    std: torch.Tensor

    def __init__(self, mean: Sequence[float], std: Sequence[float], *, ndim: int = 3) -> None:
        super().__init__()
        mean_t = torch.as_tensor([float(m) for m in mean], dtype=torch.float32)
        std_t = torch.as_tensor([float(s) for s in std], dtype=torch.float32)
        if mean_t.numel() == 0 or mean_t.shape != std_t.shape:
            raise ModelError(
                f"normalisation mean and std must be non-empty and of equal length, "
                f"got {len(mean_t)} and {len(std_t)} values"
            )
        if not bool((std_t > 0).all()):
            raise ModelError(f"normalisation std must be positive, got {std_t.tolist()}")
        shape = (-1,) + (1,) * max(ndim - 1, 0)  # (C, 1, 1): broadcasts over (N, C, H, W)
        self.register_buffer("mean", mean_t.reshape(shape))
        self.register_buffer("std", std_t.reshape(shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"channels={self.mean.numel()}"

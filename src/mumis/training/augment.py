"""Data augmentation as tensor operations: random crop after zero padding, horizontal flip."""

from __future__ import annotations

import torch
import torch.nn.functional as F


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

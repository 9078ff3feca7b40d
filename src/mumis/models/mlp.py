"""A fully connected classifier: normalise, flatten, (Linear, ReLU) x len(hidden), Linear."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from ..exceptions import ModelError
from .layers import Normalize


class MLP(nn.Module):
    """Multi-layer perceptron on flattened inputs.

    Args:
        input_shape: shape of one sample, e.g. (1, 8, 8).
        num_classes: number of logits K.
        mean, std: per-channel normalisation of the [0, 1] inputs.
        hidden: widths of the hidden layers (empty: a linear model).
    """

    def __init__(
        self,
        *,
        input_shape: Sequence[int],
        num_classes: int,
        mean: Sequence[float],
        std: Sequence[float],
        hidden: Sequence[int] = (256, 256),
    ) -> None:
        super().__init__()
        hidden = [int(h) for h in hidden]
        if any(h < 1 for h in hidden):
            raise ModelError(f"mlp hidden sizes must be positive integers, got {hidden}")
        self.normalize = Normalize(mean, std, ndim=len(input_shape))
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(input_shape)
        for h in hidden:
            # ReLU(inplace=False): in-place activations break double backward (MU-Mis).
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(x))  # (N, ...) -> (N, K)

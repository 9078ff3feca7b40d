"""A small convolutional classifier: 2 conv blocks + 2 fully connected layers.

Works on 8x8 digits as well as 28x28 (MNIST-like) and 32x32 (CIFAR-like) images: each conv
block halves the spatial size with a 2x2 max-pool, so an 8x8 input ends at 2x2.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..exceptions import ModelError
from .layers import Normalize


class CNN(nn.Module):
    """conv3x3-ReLU-maxpool2 x 2, then Linear-ReLU-Linear.

    Args:
        input_shape: (C, H, W) of one sample; H and W at least 4.
        num_classes: number of logits K.
        mean, std: per-channel normalisation of the [0, 1] inputs.
        channels: output channels of the two conv layers.
        hidden: width of the first fully connected layer.
    """

    def __init__(
        self,
        *,
        input_shape: Sequence[int],
        num_classes: int,
        mean: Sequence[float],
        std: Sequence[float],
        channels: Sequence[int] = (16, 32),
        hidden: int = 128,
    ) -> None:
        super().__init__()
        if len(input_shape) != 3:
            raise ModelError(f"cnn needs image inputs (C, H, W), got input shape {tuple(input_shape)}")
        c, h, w = (int(v) for v in input_shape)
        if h < 4 or w < 4:
            raise ModelError(f"cnn needs images of at least 4x4 pixels, got {h}x{w}")
        chans = [int(v) for v in channels]
        if len(chans) != 2 or min(chans) < 1 or int(hidden) < 1:
            raise ModelError(f"cnn needs two positive conv widths and a positive hidden size, got "
                             f"channels={chans}, hidden={hidden}")
        self.normalize = Normalize(mean, std, ndim=3)
        self.features = nn.Sequential(  # no in-place ops: double backward must work
            nn.Conv2d(c, chans[0], 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (N, C1, H/2, W/2)
            nn.Conv2d(chans[0], chans[1], 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (N, C2, H/4, W/4)
        )
        flat = chans[1] * (h // 4) * (w // 4)
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(flat, int(hidden)), nn.ReLU(), nn.Linear(int(hidden), num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(self.normalize(x)))  # (N, C, H, W) -> (N, K)

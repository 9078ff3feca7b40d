"""The in-memory dataset every stage works with, and the dataset registry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

from ..registry import Registry

LabelSpace = Literal["fine", "coarse"]


@dataclass
class DatasetBundle:
    """Train and test tensors of one dataset.

    Images are float32 in [0, 1], shape (N, C, H, W); labels int64 (N,). Normalisation is not
    applied here: models carry it as their first layer, so input gradients (and so MU-Mis
    sensitivities) are taken with respect to the [0, 1] pixels the user holds.
    """

    name: str
    x_train: torch.Tensor  # (N, C, H, W) float32 in [0, 1]
    y_train: torch.Tensor  # (N,) int64, fine labels
    x_test: torch.Tensor  # (M, C, H, W)
    y_test: torch.Tensor  # (M,)
    classes: list[str]
    source: str = ""
    # Optional superclass labels (CIFAR-100 -> CIFAR-20, Fashion-MNIST grouping) for sub-class forgetting.
    coarse_train: torch.Tensor | None = None
    coarse_test: torch.Tensor | None = None
    coarse_classes: list[str] | None = None
    extra: dict = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def num_classes_in(self, label_space: LabelSpace) -> int:
        return len(self.coarse_classes or []) if label_space == "coarse" else self.num_classes

    def labels(self, label_space: LabelSpace = "fine") -> tuple[torch.Tensor, torch.Tensor]:
        """(train, test) labels in the fine or the superclass label space."""
        if label_space == "coarse":
            if self.coarse_train is None or self.coarse_test is None:
                from ..exceptions import DataError

                raise DataError(f"dataset {self.name!r} has no superclass labels")
            return self.coarse_train, self.coarse_test
        return self.y_train, self.y_test

    def channel_stats(self) -> tuple[list[float], list[float]]:
        """Per-channel mean and std of the training images (the models' normalisation)."""
        x = self.x_train.transpose(0, 1).reshape(self.x_train.shape[1], -1)  # (C, N*H*W)
        std = x.std(dim=1).clamp_min(1e-6)
        return x.mean(dim=1).tolist(), std.tolist()


Loader = Callable[[Path | None], DatasetBundle]
DATASETS: Registry[Loader] = Registry("dataset")


def register_dataset(name: str) -> Callable[[Loader], Loader]:
    def deco(fn: Loader) -> Loader:
        return DATASETS.register(name, fn)

    return deco


def load_dataset(name: str, data_dir: str | Path | None = None) -> DatasetBundle:
    """Load a registered dataset by name (`digits`, `fashion-mnist`, ...)."""
    loader = DATASETS.get(name)
    return loader(Path(data_dir) if data_dir is not None else None)

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


#: Seed of the stratified draw behind `NAME@TRAIN[/TEST]`; fixed so the name alone says the data.
SUBSET_SEED = 0


def parse_dataset_name(name: str) -> tuple[str, int | None, int | None]:
    """Split `NAME[@TRAIN[/TEST]]` into the registered name and the subset sizes (None: all).

    `fashion-mnist@12000/2000` is a fixed, class-stratified subset of 12,000 training and 2,000
    test images of Fashion-MNIST (the same subset every time); `fashion-mnist@12000` keeps the
    whole test set.

    Raises:
        ConfigError: unknown dataset (with did-you-mean) or malformed sizes.
    """
    from ..exceptions import ConfigError

    base, at, sizes = name.partition("@")
    DATASETS.get(base)  # unknown name -> ConfigError with did-you-mean
    if not at:
        return base, None, None
    parts = sizes.split("/")
    if len(parts) > 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ConfigError(f"dataset {name!r}: after '@' give the training subset size and optionally "
                          f"'/' and the test subset size, positive integers, e.g. {base}@12000/2000")
    return base, int(parts[0]), int(parts[1]) if len(parts) == 2 else None


def _subset(bundle: DatasetBundle, name: str, n_train: int | None, n_test: int | None) -> DatasetBundle:
    from ..exceptions import DataError
    from .common import stratified_subset

    def pick(n: int | None, y: torch.Tensor, split: str) -> torch.Tensor | None:
        if n is None:
            return None
        if n > len(y):
            raise DataError(f"dataset {name!r} asks for {n} {split} samples; {bundle.name} has "
                            f"{len(y)}")
        k = len(set(y.tolist()))
        if split == "training" and n < k:  # some class would have no training image at all
            raise DataError(f"dataset {name!r} asks for {n} {split} samples, fewer than the {k} classes "
                            f"of {bundle.name}; give at least {k} so that every class keeps an image")
        return torch.as_tensor(stratified_subset(y.numpy(), n, SUBSET_SEED))

    tr, te = pick(n_train, bundle.y_train, "training"), pick(n_test, bundle.y_test, "test")

    def cut(t: torch.Tensor | None, idx: torch.Tensor | None) -> torch.Tensor | None:
        return t if t is None or idx is None else t[idx]

    return DatasetBundle(
        name=name, x_train=cut(bundle.x_train, tr), y_train=cut(bundle.y_train, tr),  # type: ignore[arg-type]
        x_test=cut(bundle.x_test, te), y_test=cut(bundle.y_test, te),  # type: ignore[arg-type]
        classes=bundle.classes, source=f"{bundle.source} (stratified subset, seed {SUBSET_SEED})",
        coarse_train=cut(bundle.coarse_train, tr), coarse_test=cut(bundle.coarse_test, te),
        coarse_classes=bundle.coarse_classes, extra=dict(bundle.extra),
    )


def load_dataset(name: str, data_dir: str | Path | None = None) -> DatasetBundle:
    """Load a registered dataset by name (`digits`, `fashion-mnist`, ...); `NAME@TRAIN[/TEST]`
    loads a fixed class-stratified subset of it (see `parse_dataset_name`)."""
    base, n_train, n_test = parse_dataset_name(name)
    bundle = DATASETS.get(base)(Path(data_dir) if data_dir is not None else None)
    if n_train is None and n_test is None:
        return bundle
    return _subset(bundle, name, n_train, n_test)

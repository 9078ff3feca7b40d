"""Helpers shared by the file-based dataset loaders (idx, cifar, imagefolder, npz)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..exceptions import DataError

#: Datasets without their own test split are split 80/20 with this fixed seed (not the run
#: seed), so every run on the same files shares one test set.
TEST_SPLIT_SEED = 0
TEST_FRACTION = 0.2


def require_data_dir(data_dir: Path | None, dataset: str, what: str) -> Path:
    """Return `data_dir` if it exists; DataError saying what to pass otherwise.

    Args:
        data_dir: the `--data-dir` the user gave, or None.
        dataset: registry name, for the message.
        what: what the path should hold, for the message.

    Raises:
        DataError: if no path was given or it does not exist.
    """
    if data_dir is None:
        raise DataError(
            f"dataset {dataset!r} has no default location; pass --data-dir pointing at {what}"
        )
    if not data_dir.exists():
        raise DataError(
            f"dataset {dataset!r}: {str(data_dir)!r} does not exist; "
            f"pass --data-dir pointing at {what}"
        )
    return data_dir


def stratified_split(
    y: np.ndarray, test_fraction: float = TEST_FRACTION, seed: int = TEST_SPLIT_SEED
) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic stratified train/test split of sample indices.

    Each class with at least two samples keeps at least one sample on each side; a class with
    a single sample goes to train.

    Args:
        y: (N,) integer labels.
        test_fraction: share of each class put in the test set.
        seed: seed of the per-class permutations.

    Returns:
        (train_idx, test_idx), each sorted int64.
    """
    rng = np.random.default_rng(seed)
    train: list[np.ndarray] = []
    test: list[np.ndarray] = []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        k = 0 if len(idx) < 2 else min(len(idx) - 1, max(1, round(test_fraction * len(idx))))
        test.append(idx[:k])
        train.append(idx[k:])
    tr = np.sort(np.concatenate(train)).astype(np.int64) if train else np.zeros(0, np.int64)
    te = np.sort(np.concatenate(test)).astype(np.int64) if test else np.zeros(0, np.int64)
    return tr, te


def stratified_subset(y: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Sorted int64 indices of exactly `n` samples of labels `y`, each class in its proportion
    (the classes with the largest remainders get the rounding), drawn with `default_rng(seed)`."""
    classes, counts = np.unique(y, return_counts=True)
    quota = counts * n / len(y)
    take = np.floor(quota).astype(int)
    take[np.argsort(-(quota - take), kind="stable")[: n - int(take.sum())]] += 1
    rng = np.random.default_rng(seed)
    idx = [rng.choice(np.flatnonzero(y == c), size=k, replace=False)
           for c, k in zip(classes, take, strict=True)]
    return np.sort(np.concatenate(idx)).astype(np.int64)


def uint8_images(x: np.ndarray) -> torch.Tensor:
    """Integer pixels 0..255, (N, C, H, W) -> float32 tensor in [0, 1] (a fresh copy)."""
    # one pass into a new writable array (buffers read from files are read-only)
    return torch.from_numpy(np.divide(x, np.float32(255.0), dtype=np.float32))  # (N, C, H, W)


def labels_tensor(y: np.ndarray) -> torch.Tensor:
    """Integer labels -> int64 tensor (N,), always a fresh writable copy."""
    return torch.from_numpy(np.array(y, dtype=np.int64))


def check_file_labels(y: np.ndarray, num_classes: int, where: str, fix: str) -> None:
    """DataError unless every label lies in 0..num_classes-1.

    Args:
        y: integer labels.
        num_classes: size of the label space.
        where: the file or array named in the message.
        fix: how to fix it, for the message.

    Raises:
        DataError: on a negative or too large label.
    """
    if y.size and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise DataError(
            f"{where}: labels range {int(y.min())}..{int(y.max())} but there are {num_classes} "
            f"classes (0..{num_classes - 1}); {fix}"
        )

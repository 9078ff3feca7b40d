"""The holdout: a seeded, class-stratified validation split of the training data that no model
of a run trains on (`mumis train --holdout`), recorded in the run's manifest."""

from __future__ import annotations

import re

import numpy as np

from ..exceptions import DataError
from .base import DatasetBundle


def parse_holdout(value: str | float | int) -> float | int:
    """`--holdout` as a fraction in [0, 1) (`0.05`, `5%`) or a count (`300`); 0 disables it."""
    text = str(value).strip()
    how = "give a fraction such as 0.05, a percentage such as 5%, a count such as 300, or 0 for none"
    try:
        if text.endswith("%"):
            number: float | int = float(text[:-1]) / 100.0
        elif re.fullmatch(r"\d+", text):
            number = int(text)
        else:
            number = float(text)
    except ValueError:
        raise DataError(f"--holdout {text!r} is not a number; {how}") from None
    if isinstance(number, float) and not 0.0 <= number < 1.0:  # also NaN
        raise DataError(f"--holdout {text!r} is out of range; {how} (a fraction lies in [0, 1))")
    return number


def draw_holdout(bundle: DatasetBundle, size: float | int, seed: int) -> np.ndarray | None:
    """A seeded, class-stratified validation split of the training set: train indices, sorted.

    `size` is a fraction of the training set (rounded per class, at least one sample of each
    class with two or more) or a total count (spread over the classes in proportion); 0 gives
    None. Stratified on the fine labels, so the split is the same in either label space and for
    every forget spec: the original and the retrained models of a run hold out the same samples.
    """
    if not size:
        return None
    y = bundle.y_train.numpy()
    n = len(y)
    frac = size / n if isinstance(size, int) else float(size)
    if isinstance(size, int) and size >= n:
        raise DataError(f"--holdout {size} takes every one of the {n} training samples; hold out fewer")
    rng = np.random.default_rng(seed)
    chosen = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        k = min(max(int(round(frac * len(idx))), 1), len(idx) - 1)  # keep one to train on
        chosen.append(rng.permutation(idx)[:k])
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def _check_holdout(holdout: np.ndarray | None, n_train: int) -> np.ndarray | None:
    """Sorted, unique, in-range holdout indices (None or empty: None)."""
    if holdout is None or len(holdout) == 0:
        return None
    held = np.unique(np.asarray(holdout, dtype=np.int64))
    if int(held[0]) < 0 or int(held[-1]) >= n_train:
        raise DataError(f"the holdout indices must lie in 0..{n_train - 1} (the training set); was the run "
                        "made with other data files?")
    return held

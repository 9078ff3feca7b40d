"""scikit-learn's embedded 8x8 handwritten digits: the default dataset (no files needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .base import DatasetBundle, register_dataset

#: The train/test split is fixed (not the run seed) so that every run shares one test set.
DIGITS_TEST_SPLIT_SEED = 0


@register_dataset("digits")
def load_digits_dataset(data_dir: Path | None = None) -> DatasetBundle:
    """1,797 8x8 grey images, 10 classes; stratified 80/20 split with a fixed seed."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.images.astype(np.float32) / 16.0)[:, None]  # (N, 1, 8, 8) in [0, 1]
    y = d.target.astype(np.int64)
    idx = np.arange(len(y))
    tr, te = train_test_split(idx, test_size=0.2, stratify=y, random_state=DIGITS_TEST_SPLIT_SEED)
    tr.sort()
    te.sort()
    return DatasetBundle(
        name="digits",
        x_train=torch.from_numpy(x[tr]),
        y_train=torch.from_numpy(y[tr]),
        x_test=torch.from_numpy(x[te]),
        y_test=torch.from_numpy(y[te]),
        classes=[str(i) for i in range(10)],
        source="sklearn.datasets.load_digits",
    )

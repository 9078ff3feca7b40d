"""Tensors of one scenario: forget, retain, test (and test_remaining / test_forgotten)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..exceptions import DataError
from .base import DatasetBundle
from .forget import Manifest

Pair = tuple[torch.Tensor, torch.Tensor]  # (x, y)


@dataclass
class Splits:
    """What evaluation and unlearning methods read; labels are in the manifest's label space."""

    forget: Pair
    retain: Pair
    test: Pair
    kind: str
    num_classes: int
    forgotten_classes: list[int]
    test_remaining: Pair | None = None
    test_forgotten: Pair | None = None

    @property
    def classwise(self) -> bool:
        """True for class-wise and sub-class forgetting (SSD-style remaining / forgotten tests)."""
        return self.test_remaining is not None and self.test_forgotten is not None


def make_splits(bundle: DatasetBundle, manifest: Manifest) -> Splits:
    """Index a dataset with a manifest; checks that the manifest belongs to this dataset."""
    if manifest.dataset != bundle.name:
        raise DataError(f"manifest is for dataset {manifest.dataset!r}, not {bundle.name!r}")
    n, n_test = len(bundle.y_train), len(bundle.y_test)
    both = np.concatenate([manifest.forget, manifest.retain])
    # forget and retain must partition 0..n-1 (an overlap would leak forgotten data into retain)
    test_idx = [a for a in (manifest.test_remaining, manifest.test_forgotten) if a is not None]
    if (len(both) != n or not np.array_equal(np.sort(both), np.arange(n))
            or any(len(a) and (int(a.min()) < 0 or int(a.max()) >= n_test) for a in test_idx)):
        raise DataError(
            f"manifest does not fit dataset {bundle.name!r} ({n} training, {n_test} test "
            "samples, forget and retain a partition of the training set); "
            "was it made with other data files?"
        )
    y_tr, y_te = bundle.labels(manifest.label_space)

    def take(x: torch.Tensor, y: torch.Tensor, idx) -> Pair:  # noqa: ANN001
        i = torch.as_tensor(idx, dtype=torch.long)
        return x[i], y[i]

    return Splits(
        forget=take(bundle.x_train, y_tr, manifest.forget),
        retain=take(bundle.x_train, y_tr, manifest.retain),
        test=(bundle.x_test, y_te),
        kind=manifest.kind,
        num_classes=manifest.num_classes,
        forgotten_classes=list(manifest.forgotten_classes),
        test_remaining=None if manifest.test_remaining is None
        else take(bundle.x_test, y_te, manifest.test_remaining),
        test_forgotten=None if manifest.test_forgotten is None
        else take(bundle.x_test, y_te, manifest.test_forgotten),
    )

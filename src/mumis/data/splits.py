"""Tensors of one scenario: forget, retain, test (and test_remaining / test_forgotten, holdout)."""

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
    #: training samples no model of the run trained on (the run's validation split), for the
    #: methods that declare `needs_holdout`; evaluation reads it only for the loss rank test
    #: (`mumis.evaluation.rank`: the unseen side). Samples of a forgotten
    #: class or sub-class are left out: the retrained model has no such class to compare with.
    holdout: Pair | None = None

    @property
    def classwise(self) -> bool:
        """True for class-wise and sub-class forgetting (SSD-style remaining / forgotten tests)."""
        return self.test_remaining is not None and self.test_forgotten is not None


def make_splits(bundle: DatasetBundle, manifest: Manifest) -> Splits:
    """Index a dataset with a manifest; checks that the manifest belongs to this dataset."""
    if manifest.dataset != bundle.name:
        raise DataError(f"manifest is for dataset {manifest.dataset!r}, not {bundle.name!r}")
    n, n_test = len(bundle.y_train), len(bundle.y_test)
    # a chain's request: the earlier requests' samples are in neither forget nor retain
    before = [] if manifest.forgotten_before is None else [manifest.forgotten_before]
    both = np.concatenate([manifest.forget, *before, manifest.retain, manifest.held_out])
    # forget, retain (and holdout) must partition 0..n-1 (an overlap would leak forgotten data into retain)
    test_idx = [a for a in (manifest.test_remaining, manifest.test_forgotten) if a is not None]
    if (len(both) != n or not np.array_equal(np.sort(both), np.arange(n))
            or any(len(a) and (int(a.min()) < 0 or int(a.max()) >= n_test) for a in test_idx)):
        raise DataError(
            f"manifest does not fit dataset {bundle.name!r} ({n} training, {n_test} test "
            "samples, forget, retain and holdout a partition of the training set); "
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
        holdout=_holdout(bundle, manifest, take, y_tr),
    )


def _holdout(bundle: DatasetBundle, manifest: Manifest, take, y_tr: torch.Tensor) -> Pair | None:  # noqa: ANN001
    """The holdout handed to methods: without the forgotten (fine) classes' samples."""
    held = manifest.held_out
    if manifest.kind in ("class", "subclass") and len(held):
        fine = bundle.y_train.numpy()[held]
        held = held[~np.isin(fine, manifest.forgotten_classes)]
    return take(bundle.x_train, y_tr, held) if len(held) else None


_HOW = ("build them with mumis.checkpoint.load_run_splits(RETRAINED_RUN_DIR) or "
        "mumis.data.splits_from_tensors(forget=(X, y), retain=(X, y), test=(X, y))")


def check_splits(splits: object) -> Splits:
    """`splits` if it is a Splits with a non-empty forget set; DataError saying how to make one.

    An original model's run directory holds a split that forgets nothing: evaluating on it gives
    only n/a values, so it is refused here rather than reported as an all-n/a table.
    """
    if not isinstance(splits, Splits):
        raise DataError(f"splits must be a mumis.data.Splits, got {type(splits).__name__}; {_HOW}")
    if len(splits.forget[1]) == 0:
        raise DataError("the splits forget nothing (the split of an original model trained on all "
                        "data?); take them from the retrained model's run directory: "
                        "mumis.checkpoint.load_run_splits('runs/retrained'), or splits_from_tensors")
    return splits


def splits_from_tensors(
    *,
    forget: Pair,
    retain: Pair,
    test: Pair,
    num_classes: int | None = None,
    holdout: Pair | None = None,
) -> Splits:
    """Splits from your own tensors, for `mumis.evaluate` (and the methods' forget / retain data).

    When no class of the forget set occurs in the retain set (class-wise forgetting), the test
    set is also split into the kept classes (`test_remaining`) and the forgotten ones
    (`test_forgotten`), as for `class:K`; otherwise the scenario is a random-subset one.

    Args:
        forget: (X, y) of the training samples to forget; X float (N, ...), y int64 (N,).
        retain: (X, y) of the training samples kept.
        test: (X, y) of held-out samples.
        num_classes: number of classes K (default: the largest label + 1).
        holdout: (X, y) of training-distribution samples neither model trained on, for methods
            that declare `needs_holdout` (kept as given; evaluation reads it only as the unseen
            side of the loss rank test).
    Returns:
        Splits (kind "class" or "random").
    Raises:
        DataError: a pair that is not (X, y) tensors of matching length with integer labels in
            0..K-1 and finite float inputs of one shape.
    """
    from ..api import to_tensors

    named = [("forget", forget), ("retain", retain), ("test", test)]
    pairs = {name: to_tensors(data, name) for name, data in
             named + ([("holdout", holdout)] if holdout is not None else [])}
    shapes = {name: tuple(x.shape[1:]) for name, (x, _) in pairs.items()}
    if len(set(shapes.values())) != 1:
        raise DataError(f"forget, retain, test (and holdout) inputs must have one sample shape; got {shapes}")
    top = max(int(y.max()) for _, y in pairs.values()) + 1
    k = top if num_classes is None else int(num_classes)
    for name, (_, y) in pairs.items():
        if int(y.min()) < 0 or int(y.max()) >= k:
            raise DataError(f"{name} labels range {int(y.min())}..{int(y.max())}; with {k} classes "
                            f"they must lie in 0..{k - 1} (pass num_classes=)")
    fy, ry = pairs["forget"][1], pairs["retain"][1]
    gone = sorted(set(fy.tolist()) - set(ry.tolist()))
    classwise = set(fy.tolist()) == set(gone)
    tx, ty = pairs["test"]
    fgt = torch.isin(ty, torch.tensor(gone, dtype=ty.dtype)) if classwise else None
    return Splits(
        forget=pairs["forget"], retain=pairs["retain"], test=(tx, ty),
        kind="class" if classwise else "random", num_classes=k,
        forgotten_classes=gone if classwise else [],
        test_remaining=None if fgt is None else (tx[~fgt], ty[~fgt]),
        test_forgotten=None if fgt is None else (tx[fgt], ty[fgt]),
        holdout=pairs.get("holdout"),
    )

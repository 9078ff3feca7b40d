"""Tensors of one scenario from a dataset and its manifest (mumis.data.splits)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mumis.data import DatasetBundle, full_manifest, load_dataset, make_splits, resolve_manifest
from mumis.exceptions import DataError


def tiny_bundle(name: str = "tiny", n_train: int = 40, n_test: int = 20) -> DatasetBundle:
    """4 fine classes in 2 superclasses ({0, 1}, {2, 3}); labels cycle 0..3."""
    g = torch.Generator().manual_seed(0)
    y_tr, y_te = torch.arange(n_train) % 4, torch.arange(n_test) % 4
    return DatasetBundle(
        name=name, x_train=torch.rand(n_train, 1, 2, 2, generator=g), y_train=y_tr,
        x_test=torch.rand(n_test, 1, 2, 2, generator=g), y_test=y_te,
        classes=["a", "b", "c", "d"],
        coarse_train=y_tr // 2, coarse_test=y_te // 2, coarse_classes=["ab", "cd"],
    )


def _rows(x: torch.Tensor) -> set[bytes]:
    return {r.numpy().tobytes() for r in x}


def test_class_splits_partition_and_test_sets() -> None:
    b = tiny_bundle()
    s = make_splits(b, resolve_manifest("class:1", b))
    assert s.kind == "class" and s.classwise and s.num_classes == 4 and s.forgotten_classes == [1]
    assert len(s.forget[0]) + len(s.retain[0]) == 40
    assert _rows(s.forget[0]).isdisjoint(_rows(s.retain[0]))
    assert _rows(s.forget[0]) | _rows(s.retain[0]) == _rows(b.x_train)
    assert set(s.forget[1].tolist()) == {1} and 1 not in s.retain[1].tolist()
    assert s.test[0] is b.x_test and len(s.test_remaining[0]) + len(s.test_forgotten[0]) == 20
    assert set(s.test_forgotten[1].tolist()) == {1} and 1 not in s.test_remaining[1].tolist()


def test_random_splits_have_no_classwise_sets() -> None:
    b = tiny_bundle()
    s = make_splits(b, resolve_manifest("random:0.25", b, seed=1))
    assert not s.classwise and s.test_remaining is None
    assert s.forget[0].shape == (10, 1, 2, 2) and s.retain[1].dtype == torch.int64


def test_subclass_splits_use_coarse_labels() -> None:
    b = tiny_bundle()
    s = make_splits(b, resolve_manifest("subclass:d", b))
    assert s.num_classes == 2 and s.forgotten_classes == [3]
    assert set(s.forget[1].tolist()) == {1}  # fine class d lies in superclass 1 ("cd")
    assert set(s.retain[1].tolist()) == {0, 1} and set(s.test[1].tolist()) == {0, 1}
    assert set(s.test_forgotten[1].tolist()) == {1}


def test_full_manifest_splits() -> None:
    b = tiny_bundle()
    s = make_splits(b, full_manifest(b))
    assert len(s.forget[0]) == 0 and torch.equal(s.retain[0], b.x_train)


def test_manifest_of_other_data_is_refused() -> None:
    b = tiny_bundle()
    m = resolve_manifest("class:1", b)
    with pytest.raises(DataError, match="'other'"):
        make_splits(tiny_bundle(name="other"), m)
    with pytest.raises(DataError, match="does not fit"):
        make_splits(tiny_bundle(n_train=44), m)
    with pytest.raises(DataError, match="does not fit"):
        make_splits(tiny_bundle(n_test=10), m)  # test indices beyond the test set


def test_overlapping_forget_and_retain_is_refused() -> None:
    b = tiny_bundle()
    m = resolve_manifest("random:5", b)
    m.retain = np.concatenate([m.retain[:-1], m.forget[:1]])  # same length, one overlap
    with pytest.raises(DataError, match="partition"):
        make_splits(b, m)


def test_digits_end_to_end() -> None:
    b = load_dataset("digits")
    s = make_splits(b, resolve_manifest("class:3", b))
    assert len(s.forget[0]) + len(s.retain[0]) == len(b.y_train)
    assert set(s.forget[1].tolist()) == {3} and s.forget[0].shape[1:] == (1, 8, 8)

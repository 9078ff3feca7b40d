"""Forget specifications, index files and split manifests (mumis.data.forget)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mumis.data import DatasetBundle, Manifest, full_manifest, parse_forget_spec, resolve_manifest
from mumis.data.forget import read_index_file
from mumis.exceptions import DataError


def tiny_bundle(n_train: int = 40, n_test: int = 20, coarse: bool = True) -> DatasetBundle:
    """4 fine classes (a, b, c, d) in 2 superclasses ({a, b}, {c, d}); labels cycle 0..3."""
    g = torch.Generator().manual_seed(0)
    y_tr, y_te = torch.arange(n_train) % 4, torch.arange(n_test) % 4
    b = DatasetBundle(
        name="tiny", x_train=torch.rand(n_train, 1, 2, 2, generator=g), y_train=y_tr,
        x_test=torch.rand(n_test, 1, 2, 2, generator=g), y_test=y_te, classes=["a", "b", "c", "d"],
    )
    if coarse:
        b.coarse_train, b.coarse_test, b.coarse_classes = y_tr // 2, y_te // 2, ["ab", "cd"]
    return b


# ---------------------------------------------------------------- parsing


@pytest.mark.parametrize("text, fields", [
    ("class:3", {"kind": "class", "classes": (3,)}),
    ("class: 5, 3,5", {"kind": "class", "classes": (3, 5)}),
    ("subclass:rose", {"kind": "subclass", "subclass": "rose"}),
    ("subclass:7", {"kind": "subclass", "subclass": "7"}),
    ("random:0.1", {"kind": "random", "fraction": 0.1, "count": None}),
    ("random:600", {"kind": "random", "count": 600, "fraction": None}),
    ("indices:/tmp/f.txt", {"kind": "indices", "path": "/tmp/f.txt"}),
])
def test_parse_valid_specs(text: str, fields: dict) -> None:
    spec = parse_forget_spec(text)
    assert spec.text == text
    for key, value in fields.items():
        assert getattr(spec, key) == value


@pytest.mark.parametrize("text, message", [
    ("random:1.5", "strictly between 0 and 1"),
    ("random:0", "at least 1"),
    ("random:0.0", "strictly between"),
    ("random:abc", "fraction"),
    ("class:a", "integers"),
    ("class:-1", "integers"),
    ("class:", "nothing after"),
    ("clas:3", "Did you mean 'class'"),
    ("everything", "bad forget spec"),
])
def test_parse_invalid_specs(text: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        parse_forget_spec(text)


# ---------------------------------------------------------------- resolving


def _is_partition(m: Manifest, n: int) -> bool:
    both = np.concatenate([m.forget, m.retain])
    return len(both) == n and np.array_equal(np.sort(both), np.arange(n))


def test_class_manifest() -> None:
    b = tiny_bundle()
    m = resolve_manifest("class:1,3", b)
    assert m.kind == "class" and m.label_space == "fine" and m.num_classes == 4
    assert m.forgotten_classes == [1, 3] and _is_partition(m, 40)
    assert set(b.y_train[m.forget].tolist()) == {1, 3}
    assert set(b.y_train[m.retain].tolist()) == {0, 2}
    assert set(b.y_test[m.test_forgotten].tolist()) == {1, 3}
    assert set(b.y_test[m.test_remaining].tolist()) == {0, 2}


@pytest.mark.parametrize("text, message", [
    ("class:99", "out of range"),
    ("class:0,1,2,3", "every class"),
    ("random:40", "between 1 and 39"),
    ("random:0.001", "selects 0"),
    ("subclass:e", "no class named"),
    ("subclass:9", "out of range"),
])
def test_resolve_invalid(text: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        resolve_manifest(text, tiny_bundle())


def test_subclass_uses_coarse_label_space() -> None:
    b = tiny_bundle()
    for text in ("subclass:C", "subclass:2"):  # by name (any case) or by fine id
        m = resolve_manifest(text, b)
        assert m.kind == "subclass" and m.label_space == "coarse" and m.num_classes == 2
        assert m.forgotten_classes == [2] and _is_partition(m, 40)
        assert set(b.y_train[m.forget].tolist()) == {2}
        assert set(b.y_test[m.test_forgotten].tolist()) == {2}
    with pytest.raises(DataError, match="superclass"):
        resolve_manifest("subclass:a", tiny_bundle(coarse=False))


def test_random_manifest_is_seeded() -> None:
    b = tiny_bundle()
    m0, again, m1 = (resolve_manifest("random:0.25", b, seed=s) for s in (0, 0, 1))
    assert len(m0.forget) == 10 and _is_partition(m0, 40)
    assert np.array_equal(m0.forget, again.forget) and m0.hash == again.hash
    assert not np.array_equal(m0.forget, m1.forget) and m0.hash != m1.hash
    assert m0.test_remaining is None and m0.test_forgotten is None
    assert len(resolve_manifest("random:7", b).forget) == 7


def test_indices_manifest(tmp_path: Path) -> None:
    b = tiny_bundle()
    txt = tmp_path / "idx.txt"
    txt.write_text("5, 1\n9 30\n")
    m = resolve_manifest(f"indices:{txt}", b)
    assert m.forget.tolist() == [1, 5, 9, 30] and _is_partition(m, 40)
    npy = tmp_path / "idx.npy"
    np.save(npy, np.array([[3, 4]], dtype=np.uint16))
    assert resolve_manifest(f"indices:{npy}", b).forget.tolist() == [3, 4]


@pytest.mark.parametrize("content, message", [
    ("", "empty"),
    ("1 2 x", "'x'"),
    ("1 2.5", "'2.5'"),
    ("-1", "'-1'"),
    ("3 40", "index 40"),
    ("3 3", "more than once"),
])
def test_bad_index_files(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "idx.txt"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        resolve_manifest(f"indices:{path}", tiny_bundle())


def test_bad_npy_index_files(tmp_path: Path) -> None:
    for name, arr, message in (("neg.npy", np.array([-1, 3]), "negative"),
                               ("float.npy", np.array([1.0]), "float64"),
                               ("obj.npy", np.array([{}], dtype=object), "not a plain")):
        np.save(tmp_path / name, arr, allow_pickle=True)
        with pytest.raises(DataError, match=message):
            read_index_file(tmp_path / name)
    with pytest.raises(DataError, match="not found"):
        read_index_file(tmp_path / "missing.txt")


# ---------------------------------------------------------------- manifests


def test_manifest_round_trip_and_tamper(tmp_path: Path) -> None:
    m = resolve_manifest("class:2", tiny_bundle(), seed=3)
    path = tmp_path / "manifest.json"
    m.save(path)
    back = Manifest.from_dict(json.loads(path.read_text()))
    assert back.to_dict() == m.to_dict() and back.hash == m.compute_hash()
    for key, value in (("forget", m.forget.tolist()[1:]), ("seed", 4), ("label_space", "coarse"),
                       ("test_forgotten", m.test_forgotten.tolist()[:-1])):
        d = m.to_dict()
        d[key] = value
        with pytest.raises(DataError, match="hash"):
            Manifest.from_dict(d)


@pytest.mark.parametrize("change", [
    {"forget": None}, {"kind": "everything"}, {"label_space": "medium"}, {"seed": "x"},
])
def test_malformed_manifest(change: dict) -> None:
    d = resolve_manifest("random:5", tiny_bundle()).to_dict()
    d.update(change, hash="")
    with pytest.raises(DataError, match="malformed"):
        Manifest.from_dict(d)
    del d["retain"]
    with pytest.raises(DataError, match="malformed"):
        Manifest.from_dict(d)


def test_full_manifest() -> None:
    m = full_manifest(tiny_bundle(), label_space="coarse")
    assert len(m.forget) == 0 and m.retain.tolist() == list(range(40)) and m.num_classes == 2
    assert Manifest.from_dict(m.to_dict()).hash == m.hash

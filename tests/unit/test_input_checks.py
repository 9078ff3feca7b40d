"""Unit tests of the boundary checks behind the bad-input sweep: output paths, seeds, dense npz
labels, split equality across seeds, splits from tensors, the API's (X, y) validation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mumis.api import to_tensors
from mumis.cli._checks import check_output_dir, check_output_file, seed_type
from mumis.config import check_seed
from mumis.data import check_splits, load_dataset, resolve_manifest, splits_from_tensors
from mumis.data.npz import load_npz
from mumis.exceptions import ConfigError, DataError


def test_output_file_checks(tmp_path: Path) -> None:
    check_output_file(tmp_path / "new" / "deeper" / "m.json", "--json")  # missing parents are fine
    check_output_file(None, "--json")
    (tmp_path / "f").write_text("x")
    for bad, needle in [(tmp_path, "is a folder"), (tmp_path / "f" / "m.json", "is a file"),
                        (Path("/sys/m.json"), "cannot be written"), ("", "is a folder")]:
        with pytest.raises(ConfigError, match=needle):
            check_output_file(bad, "--json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]  # the probe leaves nothing


def test_output_dir_checks(tmp_path: Path) -> None:
    check_output_dir(tmp_path / "run")
    check_output_dir(tmp_path)  # an existing folder: whether it may be replaced is decided elsewhere
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match="existing file"):
        check_output_dir(tmp_path / "f")
    with pytest.raises(ConfigError, match="is a file"):
        check_output_dir(tmp_path / "f" / "run")
    with pytest.raises(ConfigError, match="cannot be written"):
        check_output_dir("/sys/run")


@pytest.mark.parametrize("seed", [-1, 1.5, "3", True, None])
def test_check_seed_refuses_non_integers(seed: object) -> None:
    with pytest.raises(ConfigError, match="non-negative integer"):
        check_seed(seed)


def test_seed_type() -> None:
    assert seed_type("7") == 7 and check_seed(np.int64(3)) == 3
    for text in ("-1", "x", "1.0"):
        with pytest.raises(Exception, match="non-negative integer"):
            seed_type(text)


def _npz(path: Path, y: np.ndarray, **extra: np.ndarray) -> Path:
    x = np.zeros((len(y), 1, 4, 4), dtype=np.uint8)
    np.savez(path, x=x, y=y, **extra)
    return path


def test_npz_labels_must_be_dense_unless_named(tmp_path: Path) -> None:
    y = np.repeat(np.arange(3), 10)
    assert load_npz(_npz(tmp_path / "ok.npz", y)).num_classes == 3
    gap = np.where(y == 2, 5, y)  # classes 2, 3, 4 have no sample
    with pytest.raises(DataError, match=r"3 of the classes 0\.\.5 have no training sample"):
        load_npz(_npz(tmp_path / "gap.npz", gap))
    named = load_npz(_npz(tmp_path / "named.npz", gap, classes=np.array(list("abcdef"))))
    assert named.classes == list("abcdef")  # an explicit class list may have empty classes


def test_same_split_ignores_the_seed_only_where_it_does_not_matter() -> None:
    digits = load_dataset("digits")
    a, b = resolve_manifest("class:3", digits, seed=0), resolve_manifest("class:3", digits, seed=5)
    assert a.hash != b.hash and a.same_split(b)
    r0, r5 = resolve_manifest("random:0.1", digits, seed=0), resolve_manifest("random:0.1", digits, seed=5)
    assert not r0.same_split(r5) and r0.same_split(resolve_manifest("random:0.1", digits, seed=0))
    assert not a.same_split(resolve_manifest("class:4", digits))


def _pair(labels: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.rand(len(labels), 1, 4, 4, generator=torch.Generator().manual_seed(len(labels))), torch.tensor(labels)


def test_splits_from_tensors_class_and_random() -> None:
    s = splits_from_tensors(forget=_pair([2, 2]), retain=_pair([0, 1, 0]), test=_pair([0, 1, 2, 2]))
    assert s.kind == "class" and s.forgotten_classes == [2] and s.num_classes == 3
    assert s.test_forgotten is not None and s.test_forgotten[1].tolist() == [2, 2]
    r = splits_from_tensors(forget=_pair([0, 2]), retain=_pair([0, 1, 2]), test=_pair([0, 1]), num_classes=4)
    assert r.kind == "random" and not r.classwise and r.num_classes == 4
    assert check_splits(r) is r


def test_check_splits_refuses_an_empty_forget_set() -> None:
    s = splits_from_tensors(forget=_pair([1]), retain=_pair([0, 1]), test=_pair([0, 1]))
    s.forget = (s.forget[0][:0], s.forget[1][:0])
    with pytest.raises(DataError, match="forget nothing"):
        check_splits(s)
    with pytest.raises(DataError, match="Splits"):
        check_splits((s.retain, s.test))


@pytest.mark.parametrize("data, needle", [
    ((torch.rand(3, 4), torch.arange(3), torch.arange(3)), "(X, y)"),
    ((np.zeros((3, 4)), np.zeros(3)), "as_tensor"),
    ((torch.rand(3, 4), torch.zeros(3, 2)), "argmax"),
    ((torch.rand(3, 4), torch.arange(2)), "label per sample"),
    ((torch.rand(3), torch.arange(3)), "one sample per row"),
    ((torch.full((3, 4), float("nan")), torch.arange(3)), "12 inf or NaN values (first in sample 0)"),
    ((torch.rand(3, 4).to(torch.complex64), torch.arange(3)), "floating point"),
    ((torch.rand(3, 4), torch.arange(3).to(torch.complex64)), "integers"),
])
def test_to_tensors_refuses_malformed_pairs(data: object, needle: str) -> None:
    with pytest.raises(DataError, match=None) as e:
        to_tensors(data, "forget")  # type: ignore[arg-type]
    assert needle in str(e.value) and str(e.value).startswith(("forget", "the forget"))

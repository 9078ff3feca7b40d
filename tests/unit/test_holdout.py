"""The holdout split: drawing it, keeping it out of forget and retain, the manifest's record of
it (older manifests unchanged), the holdout handed to methods, and `random:P%` specs."""

from __future__ import annotations

import numpy as np
import pytest

from mumis.data import Manifest, load_dataset, make_splits, parse_forget_spec, resolve_manifest
from mumis.data.forget import draw_holdout, full_manifest, parse_holdout
from mumis.exceptions import DataError


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_draw_holdout_is_seeded_stratified_and_sized(digits):
    y = digits.y_train.numpy()
    a, b = draw_holdout(digits, 0.05, seed=0), draw_holdout(digits, 0.05, seed=0)
    assert np.array_equal(a, b) and np.all(np.diff(a) > 0)  # same seed, same sorted split
    assert not np.array_equal(a, draw_holdout(digits, 0.05, seed=1))
    per_class = np.bincount(y[a], minlength=10)
    expected = np.round(0.05 * np.bincount(y, minlength=10))
    assert np.array_equal(per_class, expected)  # every class, in proportion
    count = draw_holdout(digits, 100, seed=0)
    assert abs(len(count) - 100) <= 5 and set(y[count]) == set(range(10))
    assert draw_holdout(digits, 0, seed=0) is None and draw_holdout(digits, 0.0, seed=0) is None


@pytest.mark.parametrize(("text", "value"), [("0.05", 0.05), ("5%", 0.05), ("300", 300), ("0", 0)])
def test_parse_holdout_forms(text, value):
    assert parse_holdout(text) == pytest.approx(value) and type(parse_holdout(text)) is type(value)


@pytest.mark.parametrize("text", ["1.5", "-0.1", "abc", "nan", "100%", "5%%"])
def test_parse_holdout_refuses_bad_values(text):
    with pytest.raises(DataError, match="--holdout"):
        parse_holdout(text)


def test_draw_holdout_refuses_a_count_taking_everything(digits):
    with pytest.raises(DataError, match="every one"):
        draw_holdout(digits, len(digits.y_train), seed=0)


def _partition(m: Manifest, n: int) -> None:
    both = np.concatenate([m.forget, m.retain, m.held_out])
    assert np.array_equal(np.sort(both), np.arange(n))


@pytest.mark.parametrize("spec", ["class:3", "class:3,5", "random:0.1", "random:1%", "random:50"])
def test_holdout_stays_out_of_forget_and_retain(digits, spec):
    held = draw_holdout(digits, 0.05, seed=0)
    m = resolve_manifest(spec, digits, seed=0, holdout=held)
    n = len(digits.y_train)
    _partition(m, n)
    assert np.array_equal(m.holdout, held)
    assert not np.intersect1d(m.forget, held).size and not np.intersect1d(m.retain, held).size
    if spec.startswith("class"):  # every other sample of the classes is forgotten
        classes = [int(c) for c in spec[6:].split(",")]
        y = digits.y_train.numpy()
        assert np.array_equal(m.forget, np.setdiff1d(np.flatnonzero(np.isin(y, classes)), held))
    if spec == "random:1%":  # a percent of the samples outside the holdout
        assert len(m.forget) == round(0.01 * (n - len(held)))


def test_without_a_holdout_manifests_are_those_of_older_runs(digits):
    """--holdout 0 changes nothing: same draw, same retain set, same hash, no holdout key."""
    for spec in ("class:3", "random:0.1"):
        old = resolve_manifest(spec, digits, seed=0)
        new = resolve_manifest(spec, digits, seed=0, holdout=draw_holdout(digits, 0, seed=0))
        assert new.hash == old.hash and np.array_equal(new.forget, old.forget)
        assert "holdout" not in new.to_dict() and new.holdout is None
    full = full_manifest(digits)
    assert len(full.retain) == len(digits.y_train) and "holdout" not in full.to_dict()


def test_manifest_records_the_holdout(digits):
    held = draw_holdout(digits, 0.05, seed=0)
    m = resolve_manifest("random:0.1", digits, seed=0, holdout=held)
    back = Manifest.from_dict(m.to_dict())
    assert back.hash == m.hash and np.array_equal(back.holdout, held) and back.same_split(m)
    plain = resolve_manifest("random:0.1", digits, seed=0)
    assert m.hash != plain.hash and not m.same_split(plain)
    altered = m.to_dict()
    altered["holdout"] = altered["holdout"][1:]
    with pytest.raises(DataError, match="hash"):
        Manifest.from_dict(altered)
    full = full_manifest(digits, holdout=held)
    _partition(full, len(digits.y_train))
    assert np.array_equal(full.holdout, held)


def test_an_index_file_may_name_held_out_samples(digits, tmp_path):
    held = draw_holdout(digits, 0.05, seed=0)
    f = tmp_path / "one_person.txt"
    f.write_text(" ".join(str(i) for i in [int(held[0]), int(held[1]), 7, 11]))
    m = resolve_manifest(f"indices:{f}", digits, seed=0, holdout=held)
    _partition(m, len(digits.y_train))
    assert np.array_equal(m.forget, np.sort([int(held[0]), int(held[1]), 7, 11]))
    assert len(m.holdout) == len(held) - 2 and int(held[0]) not in m.holdout


def test_splits_hand_out_the_holdout_without_forgotten_classes(digits):
    held = draw_holdout(digits, 0.05, seed=0)
    y = digits.y_train.numpy()
    splits = make_splits(digits, resolve_manifest("class:3", digits, seed=0, holdout=held))
    assert splits.holdout is not None and 3 not in splits.holdout[1].tolist()
    assert len(splits.holdout[1]) == int((y[held] != 3).sum())
    rand = make_splits(digits, resolve_manifest("random:0.1", digits, seed=0, holdout=held))
    assert rand.holdout is not None and len(rand.holdout[1]) == len(held)
    assert make_splits(digits, resolve_manifest("random:0.1", digits, seed=0)).holdout is None


def test_a_manifest_whose_holdout_overlaps_retain_is_refused(digits):
    m = resolve_manifest("random:0.1", digits, seed=0, holdout=draw_holdout(digits, 0.05, seed=0))
    m.holdout = np.concatenate([m.holdout, m.retain[:1]])
    with pytest.raises(DataError, match="partition"):
        make_splits(digits, m)


@pytest.mark.parametrize(("text", "fraction"), [("random:1%", 0.01), ("random:10 %", 0.10), ("random:0.5%", 0.005)])
def test_percent_specs(text, fraction):
    assert parse_forget_spec(text).fraction == pytest.approx(fraction)


@pytest.mark.parametrize("text", ["random:0%", "random:100%", "random:abc%", "random:-5%", "random:nan%"])
def test_bad_percent_specs_are_one_line(text):
    with pytest.raises(DataError, match="strictly between 0 and 100") as e:
        parse_forget_spec(text)
    assert "\n" not in str(e.value)

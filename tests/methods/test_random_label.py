"""random_label / random_label_retain: labels drawn per batch, uniform over all classes (the SalUn
code) or over the wrong ones; on digits class 3 both variants forget the class, and the retain
variant lands near retrain."""

from __future__ import annotations

import pytest
import torch

import mumis
from mumis.methods.random_label import random_labels, wrong_labels
from mumis.testing import trained_digits_case


def test_wrong_labels_are_wrong_uniform_and_seeded() -> None:
    y = torch.arange(10).repeat(500)
    new = wrong_labels(y, 10, torch.Generator().manual_seed(0))
    assert not (new == y).any() and new.min() >= 0 and new.max() <= 9
    counts = torch.bincount(new[y == 3], minlength=10)
    assert counts[3] == 0 and (counts[torch.arange(10) != 3] > 30).all()  # ~55 each
    assert torch.equal(new, wrong_labels(y, 10, torch.Generator().manual_seed(0)))
    assert (wrong_labels(torch.tensor([0, 1, 1]), 2, torch.Generator()) == torch.tensor([1, 0, 0])).all()


def test_random_labels_are_uniform_over_all_classes_unless_wrong_only() -> None:
    y = torch.full((5000,), 3)
    new = random_labels(y, 10, torch.Generator().manual_seed(0))
    counts = torch.bincount(new, minlength=10)
    assert (counts > 400).all()  # ~500 each, the true class included (SalUn code's torch.randint)
    assert not (random_labels(y, 10, torch.Generator().manual_seed(0), wrong_only=True) == 3).any()


def test_labels_are_redrawn_for_every_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two epochs over one full batch draw two different label vectors (not one drawn per run)."""
    import mumis.methods.random_label as rl

    original, _, splits = trained_digits_case()
    seen: list[torch.Tensor] = []
    real = rl.random_labels

    def spy(*a: object, **k: object) -> torch.Tensor:
        seen.append(real(*a, **k))  # type: ignore[arg-type]
        return seen[-1]

    monkeypatch.setattr(rl, "random_labels", spy)
    mumis.unlearn(original, splits.forget, method="random_label", seed=0, device="cpu", epochs=2, batch_size=0)
    assert len(seen) == 2 and not torch.equal(seen[0], seen[1])


def _report(method: str, **kw: object) -> dict:
    original, retrained, splits = trained_digits_case()
    res = mumis.unlearn(original, splits.forget, method=method, seed=0, device="cpu", **kw)
    return mumis.evaluate(res.model, splits, reference=retrained).to_dict()


def test_random_label_forgets_the_class_on_digits() -> None:
    rep = _report("random_label")
    m = rep["model"]
    assert m["forget_acc"] <= 5.0 and m["test_forgotten_acc"] <= 5.0  # measured 0.0 / 0.0
    assert m["test_remaining_acc"] >= 80.0  # measured 88.9: no retain data to repair the damage


def test_random_label_retain_lands_near_retrain_on_digits() -> None:
    rep = _report("random_label_retain", retain=trained_digits_case()[2].retain)
    m, ref = rep["model"], rep["reference"]
    assert m["forget_acc"] <= 5.0  # measured 0.0
    assert abs(m["test_remaining_acc"] - ref["test_remaining_acc"]) <= 2.0  # measured 99.1 vs 99.1
    assert rep["gap_paper"] <= 2.0  # measured 0.0

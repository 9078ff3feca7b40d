"""Boundary Shrink: FGSM neighbour labels are wrong and nearest; class-wise forgetting on digits."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import mumis
from mumis.exceptions import ConfigError
from mumis.methods.boundary_shrink import BoundaryShrink, neighbour_labels
from mumis.testing import trained_digits_case


def _linear(weight: list[list[float]]) -> nn.Module:
    model = nn.Linear(2, len(weight), bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor(weight))
    return model.eval()


def test_neighbour_label_is_the_nearest_wrong_class() -> None:
    # Class k scores x . w_k: class 0 along +x, class 1 along +y, class 2 far along -x.
    model = _linear([[1.0, 0.0], [0.0, 1.0], [-5.0, 0.0]])
    x = torch.tensor([[0.6, 0.5], [0.9, 0.1]])  # both class 0, class 1 is across the nearest boundary
    y = torch.tensor([0, 0])
    nb = neighbour_labels(model, x, y, bound=0.1, clamp=False)
    assert nb.tolist() == [1, 1]


def test_neighbour_label_never_the_true_label() -> None:
    # A step too small to cross any boundary: the argmax on x_adv is still the true class,
    # yet the neighbour label must be another one (the runner-up).
    model = _linear([[3.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])
    x = torch.tensor([[1.0, 0.2]])
    nb = neighbour_labels(model, x, torch.tensor([0]), bound=1e-3, clamp=False)
    assert nb.tolist() == [1]


def test_validate_rejects_bad_ranges() -> None:
    with pytest.raises(ConfigError, match="bound"):
        BoundaryShrink(bound=0.0)
    with pytest.raises(ConfigError, match="momentum"):
        BoundaryShrink(momentum=1.0)


def test_forgets_a_class_and_keeps_the_others_on_digits() -> None:
    original, retrained, splits = trained_digits_case(forget="class:3")
    res = mumis.unlearn(original, splits.forget, method="boundary_shrink", seed=0, device="cpu")
    rep = mumis.evaluate(res.model, splits, reference=retrained, metrics="accuracy").to_dict()
    m, ref = rep["model"], rep["reference"]
    assert m["forget_acc"] <= 5.0  # retrained: 0
    assert m["test_forgotten_acc"] <= 5.0
    assert m["test_remaining_acc"] >= ref["test_remaining_acc"] - 3.0
    assert rep["gap_paper"] < 3.0
    # every neighbour label is a wrong one, so no forget sample is relabelled 3
    assert res.extra["neighbour_label_counts"][3] == 0

"""Boundary Shrink: FGSM neighbour labels are the nearest class (the true one kept where the step
crosses no boundary, as the official code does); class-wise forgetting on digits with the
digits-adapted preset."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import mumis
from mumis.exceptions import ConfigError
from mumis.methods.boundary_shrink import BoundaryShrink, neighbour_labels
from mumis.runs.settings import load_method_file
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
    nb = neighbour_labels(model, x, y, bound=0.5, clamp=False)  # a step that crosses for both
    assert nb.tolist() == [1, 1]


def test_a_step_that_crosses_nothing_keeps_the_true_label_unless_excluded() -> None:
    # A step too small to cross any boundary: the argmax on x_adv is still the true class. The
    # official code keeps it; exclude_true takes the runner-up.
    model = _linear([[3.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])
    x = torch.tensor([[1.0, 0.2]])
    assert neighbour_labels(model, x, torch.tensor([0]), bound=1e-3, clamp=False).tolist() == [0]
    assert neighbour_labels(model, x, torch.tensor([0]), bound=1e-3, clamp=False, exclude_true=True).tolist() == [1]


def test_validate_rejects_bad_ranges() -> None:
    with pytest.raises(ConfigError, match="bound"):
        BoundaryShrink(bound=0.0)
    with pytest.raises(ConfigError, match="momentum"):
        BoundaryShrink(momentum=1.0)


def test_official_labels_keep_the_true_class_for_part_of_the_digits_forget_set() -> None:
    original, _, splits = trained_digits_case(forget="class:3")
    res = mumis.unlearn(original, splits.forget, method="boundary_shrink", seed=0, device="cpu", max_steps=1)
    kept = res.extra["kept_true_label"]
    assert 0.2 * len(splits.forget[1]) < kept < 0.8 * len(splits.forget[1])  # issue 17: 36-53 %


def test_adapted_preset_forgets_a_class_and_keeps_the_others_on_digits() -> None:
    original, retrained, splits = trained_digits_case(forget="class:3")
    _, settings = load_method_file(Path(__file__).resolve().parents[2] / "configs/methods/adapted/boundary_shrink.yaml")
    res = mumis.unlearn(original, splits.forget, method="boundary_shrink", seed=0, device="cpu", **settings)
    rep = mumis.evaluate(res.model, splits, reference=retrained, metrics="accuracy").to_dict()
    m, ref = rep["model"], rep["reference"]
    assert m["forget_acc"] <= 5.0  # retrained: 0
    assert m["test_forgotten_acc"] <= 5.0
    assert m["test_remaining_acc"] >= ref["test_remaining_acc"] - 3.0
    assert rep["gap_paper"] < 3.0
    # every neighbour label is a wrong one, so no forget sample is relabelled 3
    assert res.extra["neighbour_label_counts"][3] == 0

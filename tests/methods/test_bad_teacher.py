"""Bad Teacher: the mixed-teacher loss, the seeded incompetent teacher, class forgetting on digits."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import mumis
from mumis.exceptions import ConfigError
from mumis.methods.bad_teacher import random_copy, unlearner_loss
from mumis.testing import trained_digits_case


def test_loss_uses_the_incompetent_teacher_on_forget_rows_only() -> None:
    comp = torch.tensor([[3.0, 0.0, 0.0], [0.0, 3.0, 0.0]])
    incomp = torch.tensor([[0.0, 0.0, 2.0], [1.0, 1.0, 1.0]])
    is_forget = torch.tensor([True, False])
    student = torch.stack([incomp[0], comp[1]])  # matches the right teacher on each row
    assert float(unlearner_loss(student, comp, incomp, is_forget, 1.0)) == pytest.approx(0.0, abs=1e-6)
    wrong = torch.stack([comp[0], incomp[1]])
    assert float(unlearner_loss(wrong, comp, incomp, is_forget, 1.0)) > 0.1


def test_incompetent_teacher_is_seeded_and_leaves_the_global_rng_alone() -> None:
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    state = torch.random.get_rng_state()
    a = random_copy(model, torch.Generator().manual_seed(5))
    b = random_copy(model, torch.Generator().manual_seed(5))
    c = random_copy(model, torch.Generator().manual_seed(6))
    assert torch.equal(state, torch.random.get_rng_state())
    pa, pb, pc, p0 = (torch.cat([p.flatten() for p in m.parameters()]) for m in (a, b, c, model))
    assert torch.equal(pa, pb) and not torch.equal(pa, pc) and not torch.equal(pa, p0)


def test_bad_settings_are_rejected() -> None:
    for bad in ({"lr": 0.0}, {"retain_fraction": 0.0}, {"retain_fraction": 1.5}, {"temperature": 0.0}):
        with pytest.raises(ConfigError):
            mumis.get_method("bad_teacher")(**bad)


def test_forgets_a_class_on_digits_and_keeps_the_rest() -> None:
    original, retrained, splits = trained_digits_case(forget="class:3")
    res = mumis.unlearn(original, splits.forget, method="bad_teacher", retain=splits.retain, seed=0, device="cpu")
    rep = mumis.evaluate(res.model, splits, reference=retrained).to_dict()["model"]
    assert rep["forget_acc"] <= 10.0 and rep["test_forgotten_acc"] <= 10.0  # retrained: 0, 0
    assert rep["test_remaining_acc"] >= 95.0  # retrained: 99.1
    assert res.extra["retain_used"] == round(0.3 * len(splits.retain[1]))

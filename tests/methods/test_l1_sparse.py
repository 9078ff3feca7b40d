"""l1_sparse: the penalty decays linearly and shrinks the weights' l1 norm compared with plain
fine-tuning; on digits class 3 the default forgets the class and lands near retrain."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import mumis
from mumis.methods.l1_sparse import alpha_at, l1_norm
from mumis.testing import trained_digits_case
from mumis.testing.conformance import tiny_case


def test_alpha_decays_linearly() -> None:
    assert [alpha_at(1.0, e, 4) for e in range(4)] == [1.0, 0.75, 0.5, 0.25]


def test_l1_norm_sums_absolute_trainable_parameters() -> None:
    m = nn.Linear(2, 1)
    with torch.no_grad():
        m.weight.copy_(torch.tensor([[1.0, -2.0]]))
        m.bias.fill_(-0.5)
    assert float(l1_norm(m).detach()) == pytest.approx(3.5)
    m.bias.requires_grad_(False)
    assert float(l1_norm(m).detach()) == pytest.approx(3.0)


def test_penalty_shrinks_the_l1_norm() -> None:
    case = tiny_case()
    kw = {"retain": case.retain, "seed": 0, "device": "cpu", "epochs": 3, "batch_size": 8}
    plain = mumis.unlearn(case.model, case.forget, method="l1_sparse", alpha=0.0, **kw).model
    sparse = mumis.unlearn(case.model, case.forget, method="l1_sparse", alpha=0.05, **kw).model
    assert float(l1_norm(sparse).detach()) < 0.95 * float(l1_norm(plain).detach())


def test_l1_sparse_lands_near_retrain_on_digits() -> None:
    original, retrained, splits = trained_digits_case()
    res = mumis.unlearn(original, splits.forget, method="l1_sparse", retain=splits.retain, seed=0, device="cpu")
    rep = mumis.evaluate(res.model, splits, reference=retrained).to_dict()
    m, ref = rep["model"], rep["reference"]
    assert m["forget_acc"] <= 5.0  # measured 0.0; plain fine-tuning leaves ~84 %
    assert abs(m["test_remaining_acc"] - ref["test_remaining_acc"]) <= 3.0  # measured 97.8 vs 99.1
    assert rep["gap_paper"] <= 3.0  # measured 0.8

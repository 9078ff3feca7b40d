"""retrain: re-initialisation is seeded and leaves the global RNG alone; on digits class 3 the
result behaves like the reference oracle (forgets the class, keeps the rest)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import mumis
from mumis.exceptions import ModelError
from mumis.methods.retrain import reset_parameters
from mumis.testing import trained_digits_case


def _weights(m: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in m.parameters()]


def test_reset_parameters_is_seeded_and_keeps_the_global_rng() -> None:
    a, b = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)), nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    state = torch.random.get_rng_state()
    assert reset_parameters(a, 7) == 2 and reset_parameters(b, 7) == 2
    assert torch.equal(state, torch.random.get_rng_state())
    assert all(torch.equal(x, y) for x, y in zip(_weights(a), _weights(b), strict=True))
    reset_parameters(b, 8)
    assert not torch.equal(_weights(a)[0], _weights(b)[0])


class _NoReset(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(64, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.w


def test_model_without_reset_parameters_is_refused() -> None:
    x, y = torch.rand(8, 1, 8, 8), torch.arange(8) % 10
    with pytest.raises(ModelError, match="reset_parameters"):
        mumis.unlearn(_NoReset(), (x[:4], y[:4]), method="retrain", retain=(x[4:], y[4:]), device="cpu", epochs=1)


def test_retrain_matches_the_oracle_on_digits_class_forgetting() -> None:
    original, retrained, splits = trained_digits_case()
    res = mumis.unlearn(original, splits.forget, method="retrain", retain=splits.retain, seed=0, device="cpu")
    rep = mumis.evaluate(res.model, splits, reference=retrained).to_dict()
    m, ref = rep["model"], rep["reference"]
    assert m["forget_acc"] <= 2.0 and m["test_forgotten_acc"] <= 5.0  # the class is gone
    assert abs(m["test_remaining_acc"] - ref["test_remaining_acc"]) <= 2.0
    assert rep["gap_paper"] <= 2.0
    assert res.steps == 50 * 21 and res.history[-1]["epoch"] == 50  # 1291 retain samples, batch 64

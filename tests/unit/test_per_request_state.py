"""Methods with per-request state take it from the model they are given (the current model of a
chain of requests, not the chain's original), and their result says so (`state_from`)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

import mumis
from mumis.functional import input_sensitivity
from mumis.methods.mumis import MuMis
from mumis.methods.scrub import SCRUB


def _data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 8, generator=g), torch.randint(0, 4, (n,), generator=g)


def _models() -> tuple[nn.Module, nn.Module]:
    """An "original" and a "current" model (the original after an earlier request: other weights)."""
    torch.manual_seed(0)
    original = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 4))
    current = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 4))
    return original, current


def _capture(monkeypatch: pytest.MonkeyPatch, cls: type[MuMis] | type[SCRUB], seen: dict[str, Any]) -> None:
    real = cls.prepare

    def prepare(self: Any, model: nn.Module, ctx: Any) -> Any:
        seen["start"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        out = real(self, model, ctx)
        seen["method"] = self
        return out

    monkeypatch.setattr(cls, "prepare", prepare)


def test_scrub_teacher_is_the_current_model(monkeypatch: pytest.MonkeyPatch) -> None:
    original, current = _models()
    seen: dict[str, Any] = {}
    _capture(monkeypatch, SCRUB, seen)
    res = mumis.unlearn(current, _data(16, 1), "scrub", retain=_data(32, 2), epochs=1, device="cpu")
    teacher = seen["method"].teacher.state_dict()
    assert all(torch.equal(teacher[k], v) for k, v in seen["start"].items())
    assert all(torch.equal(seen["start"][k], v) for k, v in current.state_dict().items())
    assert not torch.equal(teacher["0.weight"], original.state_dict()["0.weight"])
    assert res.extra["state_from"] == "current model"


def test_mumis_cap_reference_is_read_on_the_current_model(monkeypatch: pytest.MonkeyPatch) -> None:
    original, current = _models()
    x, y = _data(16, 1)
    seen: dict[str, Any] = {}
    _capture(monkeypatch, MuMis, seen)
    res = mumis.unlearn(current, (x, y), "mumis", irrelevant_cap=1.0, cap_reference="target", max_steps=2,
                        target_forget_acc=0.0, device="cpu")
    cap = seen["method"].cap
    mine = input_sensitivity(current, x, y, norm="squared").detach()
    theirs = input_sensitivity(original, x, y, norm="squared").detach()
    assert torch.allclose(cap, mine) and not torch.allclose(cap, theirs)
    assert res.extra["state_from"] == "current model"
    for name in ("mumis_published", "mumis_v1"):  # the variants share the statement
        assert mumis.unlearn(current, (x, y), name, device="cpu", max_steps=2).extra["state_from"] == "current model"

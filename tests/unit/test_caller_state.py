"""mumis.caller_state.preserved_state: modes, requires_grad flags and hooks come back as they were."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mumis.caller_state import preserved_state


def _odd_model() -> nn.Sequential:
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    model.train()
    model[1].eval()  # a frozen BatchNorm inside a model in training mode
    model[0].weight.requires_grad_(False)
    model[2].register_forward_hook(lambda *_: None)
    return model


def _state(model: nn.Module) -> tuple[list[bool], list[bool], list[int]]:
    return ([m.training for m in model.modules()], [p.requires_grad for p in model.parameters()],
            [len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules()])


@pytest.mark.parametrize("eval_mode", [False, True])
def test_state_comes_back_also_on_error(eval_mode: bool) -> None:
    model = _odd_model()
    before = _state(model)
    with pytest.raises(RuntimeError), preserved_state(model, eval_mode=eval_mode) as m:
        assert m is model
        assert not model.training if eval_mode else model.training
        model.train()
        for p in model.parameters():
            p.requires_grad_(not p.requires_grad)
        model[0].register_forward_pre_hook(lambda *_: None)
        model[2].register_forward_hook(lambda *_: None)
        raise RuntimeError("mid-block failure")
    assert _state(model) == before
    assert model(torch.rand(2, 3)).shape == (2, 2)  # the caller's own hook still runs


def test_device_is_restored_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    model = nn.Linear(2, 2)
    moves: list[object] = []
    monkeypatch.setattr(model, "to", lambda *a, **kw: moves.append(a[0]) or model)
    with preserved_state(model, device=True):
        pass
    assert moves == [torch.device("cpu")]  # back to where its parameters were
    with preserved_state(model):
        pass
    assert len(moves) == 1  # not asked: no move

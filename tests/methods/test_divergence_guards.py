"""Every method on the base loop stops on a non-finite loss before stepping (weights stay
finite), and the front door never hands back a model with inf / NaN weights without saying so.
(MU-Mis's own guard, which restores the last good weights, is tested in test_mumis.py.)"""

from __future__ import annotations

import copy

import pytest
import torch

import mumis
from mumis.exceptions import DataError
from mumis.methods import METHODS, RunContext
from mumis.methods._loop import LossMethod
from mumis.methods.grad_ascent import GradAscent
from mumis.testing import trained_digits_case
from mumis.utils import make_generator

GUARDED = [n for n in METHODS.names() if issubclass(METHODS.get(n), LossMethod) and not n.startswith("mumis")]


def test_the_guarded_list_is_every_baseline_on_the_loop() -> None:
    assert {"jit", "boundary_shrink", "scrub", "salun", "bad_teacher", "finetune"} <= set(GUARDED)


@pytest.mark.parametrize("method", GUARDED)
def test_every_loop_stops_on_a_non_finite_loss(method: str) -> None:
    original, _, splits = trained_digits_case(forget="class:3")
    fx, fy = splits.forget
    fx = fx.clone()
    fx[:] = float("nan")  # every forget batch gives a NaN loss, whatever the shuffling
    cls = METHODS.get(method)
    retain = (torch.full_like(splits.retain[0], float("nan")), splits.retain[1])  # some losses walk retain
    # The front door refuses NaN inputs, so the loop's own guard is driven directly.
    with pytest.raises(DataError, match="inf or NaN"):
        mumis.unlearn(original, (fx, fy), method=method, retain=retain if cls.requires_retain else None, seed=0,
                      device="cpu")
    ctx = RunContext(forget=(fx, fy), retain=retain if cls.requires_retain else None, num_classes=splits.num_classes,
                     generator=make_generator(0), device=torch.device("cpu"))
    model = copy.deepcopy(original)  # the method changes the model it is given
    out = mumis.get_method(method)().run(model, ctx)
    assert "non-finite loss at step" in out.stop_reason and "stopped before it" in out.stop_reason
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_front_door_flags_non_finite_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    original, _, splits = trained_digits_case(forget="class:3")
    real = GradAscent.run

    def broken(self, model, ctx):  # noqa: ANN001, ANN202
        out = real(self, model, ctx)
        with torch.no_grad():
            next(model.parameters())[0, 0] = float("inf")
        return out

    monkeypatch.setattr(GradAscent, "run", broken)
    with pytest.warns(RuntimeWarning, match="grad_ascent: 1 weights are inf or NaN"):
        res = mumis.unlearn(original, splits.forget, method="grad_ascent", seed=0, device="cpu", epochs=1)
    assert res.stop_reason.endswith("; 1 non-finite weights: the method diverged, do not use this model")

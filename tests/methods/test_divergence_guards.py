"""Methods with their own loops stop on a non-finite loss before stepping (weights stay finite),
and the front door never hands back a model with inf / NaN weights without saying so."""

from __future__ import annotations

import copy

import pytest
import torch

import mumis
from mumis.exceptions import DataError
from mumis.methods import RunContext
from mumis.methods.grad_ascent import GradAscent
from mumis.testing import trained_digits_case
from mumis.utils import make_generator


@pytest.mark.parametrize("method", ["scrub", "salun", "bad_teacher"])
def test_own_loops_stop_on_a_non_finite_loss(method: str) -> None:
    original, _, splits = trained_digits_case(forget="class:3")
    fx, fy = splits.forget
    fx = fx.clone()
    fx[:] = float("nan")  # every forget batch gives a NaN loss, whatever the shuffling
    # The front door refuses NaN inputs, so the loop's own guard is driven directly.
    with pytest.raises(DataError, match="inf or NaN"):
        mumis.unlearn(original, (fx, fy), method=method, retain=splits.retain, seed=0, device="cpu")
    ctx = RunContext(forget=(fx, fy), retain=splits.retain, num_classes=splits.num_classes,
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

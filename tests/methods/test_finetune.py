"""finetune: never looks at the forget set, keeps test accuracy on digits and lowers the forget
accuracy a little (FT is a weak baseline on class forgetting, as in the SalUn tables); plus the
shared epoch loop's stop on a non-finite loss."""

from __future__ import annotations

import torch

import mumis
from mumis.methods._loops import epoch_loop
from mumis.methods.base import RunContext
from mumis.testing import trained_digits_case
from mumis.testing.conformance import tiny_case


def test_forget_data_is_never_used() -> None:
    case = tiny_case()
    fx, fy = case.forget
    runs = [mumis.unlearn(case.model, forget, method="finetune", retain=case.retain, seed=1, device="cpu", epochs=2,
                          batch_size=8).model for forget in ((fx, fy), (torch.rand_like(fx), (fy + 1) % 10))]
    assert all(torch.equal(a, b) for a, b in zip(runs[0].parameters(), runs[1].parameters(), strict=True))


def test_finetune_keeps_test_accuracy_on_digits() -> None:
    original, retrained, splits = trained_digits_case()
    res = mumis.unlearn(original, splits.forget, method="finetune", retain=splits.retain, seed=0, device="cpu")
    rep = mumis.evaluate(res.model, splits, reference=retrained).to_dict()
    before = mumis.evaluate(original, splits).to_dict()["model"]
    m = rep["model"]
    assert m["test_remaining_acc"] >= before["test_remaining_acc"] - 1.0
    assert m["retain_acc"] >= 99.0
    assert m["forget_acc"] < before["forget_acc"] - 5.0  # some catastrophic forgetting (~84 % measured)
    assert res.steps == 10 * 21 and res.stop_reason == "epochs (10) done"


def test_epoch_loop_stops_before_a_non_finite_step() -> None:
    w = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.SGD([w], lr=0.1)
    ctx = RunContext(forget=(torch.zeros(4, 1), torch.zeros(4, dtype=torch.long)), retain=None, num_classes=2,
                     generator=torch.Generator().manual_seed(0), device=torch.device("cpu"))
    calls = []

    def loss_fn(idx: torch.Tensor, epoch: int) -> torch.Tensor:
        calls.append(epoch)
        return w.sum() * (float("nan") if len(calls) == 3 else 1.0)

    steps, reason, history = epoch_loop(ctx, opt, 4, epochs=5, batch_size=2, loss_fn=loss_fn)
    assert steps == 2 and "non-finite" in reason
    assert torch.isfinite(w).all() and torch.allclose(w, torch.full((3,), 0.8))
    assert [r["step"] for r in history] == [0, 2]

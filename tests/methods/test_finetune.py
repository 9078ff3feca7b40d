"""finetune: never looks at the forget set, keeps test accuracy on digits and lowers the forget
accuracy a little (FT is a weak baseline on class forgetting, as in the SalUn tables); plus the
shared epoch loop's stop on a non-finite loss."""

from __future__ import annotations

import torch

import mumis
from mumis.methods._loop import Batch, LossMethod
from mumis.methods.base import RunContext
from mumis.methods.finetune import FinetuneConfig
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


class _NanOnThirdBatch(LossMethod):
    """A one-weight loss that turns NaN on its third batch (drives the base loop's guard)."""

    name = "_nan_on_third"
    Config = FinetuneConfig

    def prepare(self, model: torch.nn.Module, ctx: RunContext) -> dict[str, object]:
        self.x, self.calls = torch.zeros(4, 1), []
        return {}

    def compute_loss(self, model: torch.nn.Module, batch: Batch, ctx: RunContext) -> torch.Tensor:
        self.calls.append(batch.epoch)
        w = next(model.parameters())
        return w.sum() * (float("nan") if len(self.calls) == 3 else 1.0)


def test_base_loop_stops_before_a_non_finite_step() -> None:
    model = torch.nn.Linear(3, 1, bias=False)
    torch.nn.init.ones_(model.weight)
    ctx = RunContext(forget=(torch.zeros(4, 1), torch.zeros(4, dtype=torch.long)), retain=None, num_classes=2,
                     generator=torch.Generator().manual_seed(0), device=torch.device("cpu"))
    method = _NanOnThirdBatch(epochs=5, batch_size=2, lr=0.1, momentum=0.0, weight_decay=0.0)
    out = method.run(model, ctx)
    assert out.steps == 2 and out.stop_reason == "non-finite loss at step 3 (epoch 2); stopped before it"
    assert torch.allclose(model.weight, torch.full((1, 3), 0.8))  # two finite steps of lr 0.1
    assert [r["step"] for r in out.history] == [0, 2]  # no row for the epoch the guard cut short
    assert method.calls == [0, 0, 1]

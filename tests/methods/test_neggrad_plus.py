"""neggrad_plus: alpha = 1 is fine-tuning on retain; on digits class 3 the official optimiser
barely forgets and the digits-adapted preset lands near the retrained model; alpha out of range
is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import mumis
from mumis.exceptions import ConfigError
from mumis.runs.settings import load_method_file
from mumis.testing import trained_digits_case
from mumis.testing.conformance import tiny_case

ADAPTED = Path(__file__).resolve().parents[2] / "configs" / "methods" / "adapted"


def test_alpha_one_is_finetuning_on_retain() -> None:
    case = tiny_case()
    kw = {"seed": 0, "device": "cpu", "epochs": 3, "batch_size": 0, "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4}
    ng = mumis.unlearn(case.model, case.forget, method="neggrad_plus", retain=case.retain, alpha=1.0, **kw).model
    ft = mumis.unlearn(case.model, case.forget, method="finetune", retain=case.retain, **kw).model
    for a, b in zip(ng.parameters(), ft.parameters(), strict=True):
        torch.testing.assert_close(a, b)  # full batches: only the sample order (summation order) differs


def test_alpha_zero_ascends_on_forget_only() -> None:
    case = tiny_case()
    fx, fy = case.forget
    res = mumis.unlearn(case.model, case.forget, method="neggrad_plus", retain=case.retain, alpha=0.0,
                        seed=0, device="cpu", epochs=1, batch_size=0, lr=1e-3, momentum=0.0)
    ce = torch.nn.functional.cross_entropy
    with torch.no_grad():
        assert ce(res.model(fx), fy) > ce(case.model.eval()(fx), fy)


@pytest.mark.parametrize("alpha", [-0.1, 1.5])
def test_alpha_range(alpha: float) -> None:
    with pytest.raises(ConfigError, match="alpha"):
        mumis.get_method("neggrad_plus")(alpha=alpha)


def _digits(**kw: object) -> dict:
    original, retrained, splits = trained_digits_case()
    res = mumis.unlearn(original, splits.forget, method="neggrad_plus", retain=splits.retain, seed=0, device="cpu",
                        **kw)
    return mumis.evaluate(res.model, splits, reference=retrained).to_dict()


def test_official_optimiser_barely_forgets_on_digits() -> None:
    """Plain SGD (train_negrad) at alpha 0.99, lr 0.01: the class stays (issue 17: 96 %)."""
    assert _digits()["model"]["forget_acc"] >= 80.0  # measured 95.9


def test_adapted_preset_lands_near_retrain_on_digits() -> None:
    _, settings = load_method_file(ADAPTED / "neggrad_plus.yaml")
    rep = _digits(**settings)
    m, ref = rep["model"], rep["reference"]
    assert m["forget_acc"] <= 5.0  # measured 0.0 (retrained 0.0)
    assert abs(m["test_remaining_acc"] - ref["test_remaining_acc"]) <= 4.0  # measured 97.8 vs 99.1
    assert rep["gap_paper"] <= 3.0  # measured 0.8

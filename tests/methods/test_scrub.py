"""SCRUB: the distillation KL, the role of the max-steps, and class forgetting on digits (the
official large-scale lr barely moves the digits MLP; the digits-adapted preset forgets)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import mumis
from mumis.exceptions import ConfigError
from mumis.methods.scrub import distill_kl
from mumis.runs.settings import load_method_file
from mumis.testing import trained_digits_case

ADAPTED = load_method_file(Path(__file__).resolve().parents[2] / "configs" / "methods" / "adapted" / "scrub.yaml")[1]


def test_distill_kl_matches_the_definition() -> None:
    s = torch.tensor([[1.0, 0.0, -1.0], [0.5, 0.5, 0.0]])
    t = torch.tensor([[0.0, 2.0, 0.0], [1.0, 0.0, 0.0]])
    temp = 4.0
    p_t, p_s = (t / temp).softmax(1), (s / temp).softmax(1)
    expected = (p_t * (p_t.log() - p_s.log())).sum(1).mean() * temp**2
    assert torch.allclose(distill_kl(s, t, temp), expected)
    assert float(distill_kl(t, t, temp)) == pytest.approx(0.0, abs=1e-6)


def test_bad_settings_are_rejected() -> None:
    for bad in ({"lr": 0.0}, {"epochs": 0}, {"temperature": -1.0}, {"lr_decay_rate": 2.0}):
        with pytest.raises(ConfigError):
            mumis.get_method("scrub")(**bad)


def _run(**kw):  # noqa: ANN202
    original, retrained, splits = trained_digits_case(forget="class:3")
    res = mumis.unlearn(original, splits.forget, method="scrub", retain=splits.retain, seed=0, device="cpu", **kw)
    return res, mumis.evaluate(res.model, splits, reference=retrained).to_dict()["model"]


def test_official_settings_barely_move_the_digits_model() -> None:
    _, rep = _run()
    assert rep["forget_acc"] >= 90.0  # measured 100 (issue 17: official loaders, lr 5e-4)


def test_adapted_preset_lands_near_retrain_on_class_forgetting() -> None:
    res, rep = _run(**ADAPTED)
    assert rep["forget_acc"] <= 5.0 and rep["test_forgotten_acc"] <= 5.0  # retrained: 0, 0
    assert rep["test_remaining_acc"] >= 95.0  # retrained: 99.1
    assert [r["epoch"] for r in res.history[1:]] == [1, 2, 3, 4, 5]


def test_without_max_steps_nothing_is_forgotten() -> None:
    """The min-steps alone keep the student at the teacher: the max-steps do the forgetting."""
    _, rep = _run(**{**ADAPTED, "max_epochs": 0})
    assert rep["forget_acc"] >= 90.0

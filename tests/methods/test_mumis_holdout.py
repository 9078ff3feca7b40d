"""MU-Mis with a holdout: the target from unseen samples of the forget set's classes, the utility
guard, the best reading kept (the original weights when none beats doing nothing), which data
the front door hands over, and the class-wise case unchanged."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import mumis
from mumis.exceptions import ConfigError
from mumis.methods._mumis_monitor import _HoldoutReading
from mumis.methods.mumis import HoldoutGuide, MuMis
from mumis.testing import trained_digits_case


def _guide(**kw) -> HoldoutGuide:
    """A guide on a fixed holdout: 9 of 10 class-0 samples right (90 %); class 1 absent."""
    model = nn.Identity()
    x = torch.tensor([[1.0, 0.0]] * 9 + [[0.0, 1.0]])
    y = torch.zeros(10, dtype=torch.long)
    y_mon = torch.tensor([0] * 4 + [1] * 4)
    return HoldoutGuide(model, (x, y), y_mon, 100.0, **{"target": None, "patience_steps": 15, **kw})


def test_target_is_the_unseen_accuracy_of_the_forget_set_classes() -> None:
    g = _guide()
    assert g.start.acc == pytest.approx(90.0)
    assert g.target == pytest.approx(45.0)  # half class 0 at 90 %, half class 1 the holdout lacks: 0
    assert g.noise == pytest.approx(200.0 * (0.9 * 0.1 / 10) ** 0.5)
    assert _guide(target=70.0).target == 70.0  # an explicit target wins


def test_a_forget_set_within_the_targets_noise_is_left_alone() -> None:
    g = _guide()  # class 0: 9 of 10 right (variance 0.009), weight 1/2; class 1 absent: exactly 0
    assert g.tolerance == pytest.approx(200.0 * (0.25 * 0.9 * 0.1 / 10) ** 0.5)  # 9.49 points
    assert g.settled(50.0) is not None and "kept the original weights" in g.settled(50.0)
    assert g.settled(60.0) is None  # beyond the noise: there is something to forget
    assert g.settled(44.0) is None and g.settled(10.0) is None  # at or below the target: the usual stop
    assert _guide(target=48.0).settled(50.0) is None  # an explicit target is taken as exact


def test_the_guard_stops_and_a_reading_past_it_is_never_kept() -> None:
    g = _guide()
    assert g(5, 80.0, _HoldoutReading(90.0, 0.1), last=False) == (True, None)
    best, why = g(10, 45.0, _HoldoutReading(60.0, 0.9), last=False)  # on target, but utility broke
    assert not best and why is not None and why.startswith("holdout accuracy fell to 60.0%")
    assert g.best_step == 5 and g.kept().startswith("kept step 5")


def test_a_gain_the_holdout_cannot_resolve_is_not_kept() -> None:
    """Start score 55 (forget 100 %, target 45 %). A 2-point gain with 4 changed holdout answers
    of 10 (margin 4 x 100 x 2 / 10 = 80 points) is not kept, though it leads (patience counts
    from it); the same gain with no changed answer is."""
    g = _guide()
    assert g.margin(_HoldoutReading(90.0, 0.1, flips=4)) == pytest.approx(80.0)
    assert g(1, 98.0, _HoldoutReading(90.0, 0.1, flips=4), last=False) == (False, None)
    assert g.best_step == 0 and g.lead_step == 1
    assert g(2, 98.0, _HoldoutReading(90.0, 0.1, flips=0), last=False) == (True, None)
    assert g.best_step == 2


def test_reaching_the_target_and_the_plateau_stop() -> None:
    g = _guide()
    assert g(5, 44.0, _HoldoutReading(88.0, 0.2), last=False)[1].startswith("forget accuracy 44.0% <= holdout target")
    p = _guide(patience_steps=10)
    readings = [p(s, 100.0, _HoldoutReading(85.0, 0.2), last=False) for s in range(1, 11)]
    assert readings[-2] == (False, None) and readings[-1] == (False, "no step closer to the holdout in 10 steps")
    assert p.best_step == 0 and "kept the original weights" in p.kept()
    assert _guide()(5, 90.0, _HoldoutReading(90.0, 0.1), last=True)[1] == "max_steps reached"


def _unseen(splits, n: int = 200) -> tuple[torch.Tensor, torch.Tensor]:
    """Samples the digits models never trained on (the case's test split), as a holdout."""
    x, y = splits.test
    return x[:n], y[:n]


def test_random_subset_with_a_holdout_is_never_worse_than_doing_nothing() -> None:
    original, _, splits = trained_digits_case("mlp", "random:0.1", 0)
    holdout = _unseen(splits)
    res = mumis.unlearn(original, splits.forget, holdout=holdout, device="cpu", seed=0)
    assert res.data_used == ["forget", "holdout"] and "kept" in res.stop_reason
    assert res.extra["target_forget_acc"] == pytest.approx(res.history[0]["target_forget_acc"])
    same = all(torch.equal(a, b) for a, b in zip(original.state_dict().values(), res.model.state_dict().values(),
                                                 strict=True))
    assert same == ("kept the original weights" in res.stop_reason)
    # the kept model is within the guard on the holdout
    with torch.no_grad():
        acc = 100.0 * float((res.model(holdout[0]).argmax(1) == holdout[1]).float().mean())
    assert acc >= res.extra["holdout_acc_start"] - 2.0 * 100.0 * (0.25 / len(holdout[1])) ** 0.5 - 1e-9
    again = mumis.unlearn(original, splits.forget, holdout=holdout, device="cpu", seed=0)
    assert again.stop_reason == res.stop_reason and all(
        torch.equal(a, b) for a, b in zip(res.model.state_dict().values(), again.model.state_dict().values(),
                                          strict=True))  # deterministic on the CPU


def test_an_unreachable_target_rolls_back_to_the_best_reading() -> None:
    """Target 0 % on a random subset: the guard stops the run, and the guarded best is kept."""
    original, _, splits = trained_digits_case("mlp", "random:0.1", 0)
    holdout = _unseen(splits)
    res = mumis.unlearn(original, splits.forget, holdout=holdout, device="cpu", target_forget_acc=0.0, lr=1.0)
    assert res.stop_reason.startswith("holdout accuracy fell") and "kept" in res.stop_reason
    with torch.no_grad():
        acc = 100.0 * float((res.model(holdout[0]).argmax(1) == holdout[1]).float().mean())
    p = res.extra["holdout_acc_start"] / 100.0
    assert acc >= 100.0 * p - max(200.0 * (p * (1 - p) / 200) ** 0.5, 0.5) - 1e-9  # within the guard
    assert res.extra["kept_step"] < res.steps


def test_class_wise_with_a_holdout_lacking_the_class_targets_zero() -> None:
    original, _, splits = trained_digits_case("mlp", "class:3", 0)
    x, y = _unseen(splits, 360)
    keep = y != 3
    res = mumis.unlearn(original, splits.forget, holdout=(x[keep], y[keep]), device="cpu")
    assert res.extra["target_forget_acc"] == 0.0
    assert res.stop_reason.startswith("forget accuracy 0.0% <= holdout target 0.0%")


def test_a_sub_class_is_recognised_from_the_data() -> None:
    """Part of a class, with unseen samples of that class in the holdout: the target is their
    accuracy, not 0 (no spec name is involved)."""
    original, _, splits = trained_digits_case("mlp", "class:3", 0)
    fx, fy = splits.forget
    part = (fx[: len(fy) // 2], fy[: len(fy) // 2])
    res = mumis.unlearn(original, part, holdout=_unseen(splits, 360), device="cpu", max_steps=20)
    assert res.extra["target_forget_acc"] > 50.0


def test_a_sub_class_already_like_its_unseen_samples_keeps_the_original() -> None:
    """The unseen samples of the forget set's class are recognised as well as the forget set
    (within the target's noise): no step is taken."""
    original, _, splits = trained_digits_case("mlp", "class:3", 0)
    fx, fy = splits.forget
    part = (fx[: len(fy) // 2], fy[: len(fy) // 2])
    x, y = splits.test
    keep = y == 3  # unseen 3s the model recognises about as well as its training 3s
    res = mumis.unlearn(original, part, holdout=(x[keep], y[keep]), device="cpu", max_steps=20)
    with torch.no_grad():
        unseen_acc = 100.0 * float((original(x[keep]).argmax(1) == 3).float().mean())
    assert unseen_acc > 90.0 and res.steps == 0 and "within the holdout target's noise" in res.stop_reason
    assert all(torch.equal(a, b) for a, b in zip(original.state_dict().values(), res.model.state_dict().values(),
                                                 strict=True))


def test_the_front_door_hands_the_holdout_only_to_methods_that_declare_it(monkeypatch) -> None:
    original, _, splits = trained_digits_case("mlp", "class:3", 0)
    holdout = _unseen(splits)
    with pytest.raises(ConfigError, match="does not use a holdout; drop holdout="):
        mumis.unlearn(original, splits.forget, method="grad_ascent", holdout=holdout, device="cpu")
    with pytest.raises(ConfigError, match="does not use a holdout"):
        mumis.unlearn(original, splits.forget, method="mumis_published", holdout=holdout, device="cpu")
    monkeypatch.setattr(MuMis, "needs_holdout", "required")
    with pytest.raises(ConfigError, match="needs a holdout.*--holdout"):
        mumis.unlearn(original, splits.forget, device="cpu")
    monkeypatch.undo()
    plain = mumis.unlearn(original, splits.forget, device="cpu", max_steps=5)
    assert plain.data_used == ["forget"] and plain.summary()["data_used"] == ["forget"]


def test_a_holdout_of_the_wrong_shape_is_one_line() -> None:
    original, _, splits = trained_digits_case("mlp", "class:3", 0)
    with pytest.raises(Exception, match="holdout") as e:
        mumis.unlearn(original, splits.forget, holdout=(torch.zeros(5, 3), torch.zeros(5, dtype=torch.long)),
                      device="cpu")
    assert "\n" not in str(e.value)

"""AMUN: the closest misclassified adversarial example (growing radius), its label, the guard on
the radius, the data each variant trains on, and a random-forgetting run on digits."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import mumis
from mumis.exceptions import ConfigError
from mumis.methods.amun import AMUN, closest_adversarial
from mumis.testing import trained_digits_case


def _two_class_line() -> nn.Module:
    """Class 0 where x0 > 0, class 1 where x0 < 0: the boundary is the plane x0 = 0."""
    model = nn.Linear(2, 2)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 0.0], [-1.0, 0.0]]))
        model.bias.zero_()
    return model.eval()


def test_radius_doubles_until_the_boundary_is_inside_it() -> None:
    # Distance 0.3 to the boundary, radius 0.1 -> 0.2 -> 0.4: crossed at 0.4, not before.
    x, y = torch.tensor([[0.3, 0.5]]), torch.tensor([0])
    adv, label, eps, found = closest_adversarial(_two_class_line(), x, y, torch.tensor([0.1]), steps=50,
                                                 max_doublings=10, clamp=False)
    assert found.tolist() == [True] and label.tolist() == [1]
    assert float(eps) == pytest.approx(0.4)
    dist = float((adv - x).norm())
    assert 0.3 <= dist <= 0.3 + 0.04 + 1e-6  # just across: at most one step (eps / 10) beyond
    assert float(adv[0, 1]) == pytest.approx(0.5)  # moved along the gradient only


def test_a_misclassified_sample_is_its_own_adversarial_example() -> None:
    x, y = torch.tensor([[-0.2, 0.1]]), torch.tensor([0])  # the model says 1
    adv, label, eps, found = closest_adversarial(_two_class_line(), x, y, torch.tensor([0.01]), steps=5,
                                                 max_doublings=3)
    assert torch.equal(adv, x) and label.tolist() == [1] and found.tolist() == [True]
    assert float(eps) == pytest.approx(0.01)


def test_the_radius_stops_growing_after_max_doublings() -> None:
    model = nn.Linear(2, 2)
    with torch.no_grad():  # ignores its input: class 0 everywhere, nothing to cross
        model.weight.zero_()
        model.bias.copy_(torch.tensor([1.0, 0.0]))
    x, y = torch.tensor([[0.5, 0.5]]), torch.tensor([0])
    adv, label, eps, found = closest_adversarial(model, x, y, torch.tensor([0.01]), steps=3, max_doublings=4)
    assert found.tolist() == [False] and label.tolist() == [0]
    assert float(eps) == pytest.approx(0.01 * 2**4)


def test_samples_are_independent_of_their_batch() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 3)).eval()
    x = torch.rand(6, 3, generator=torch.Generator().manual_seed(1))
    y = model(x).argmax(1)
    eps = torch.full((6,), 0.02)
    together = closest_adversarial(model, x, y, eps, steps=10, max_doublings=12)
    for i in range(6):
        alone = closest_adversarial(model, x[i:i + 1], y[i:i + 1], eps[i:i + 1], steps=10, max_doublings=12)
        torch.testing.assert_close(alone[0], together[0][i:i + 1])
        assert alone[1].item() == together[1][i].item()


def test_bad_settings_are_rejected() -> None:
    for bad in ({"eps_init": 0.0}, {"pgd_steps": 0}, {"lr_gamma": 1.5}, {"init_samples": 0}):
        with pytest.raises(ConfigError):
            AMUN(**bad)


def test_variants_declare_their_data_and_train_on_it() -> None:
    assert not mumis.get_method("amun").requires_retain and mumis.get_method("amun_retain").requires_retain
    original, _, splits = trained_digits_case(forget="class:3")
    fx, fy = splits.forget[0][:20], splits.forget[1][:20]
    kw = {"seed": 0, "device": "cpu", "epochs": 1, "batch_size": 0, "pgd_steps": 5}
    alone = mumis.unlearn(original, (fx, fy), method="amun", **kw)
    with_r = mumis.unlearn(original, (fx, fy), method="amun_retain", retain=splits.retain, **kw)
    assert alone.extra["adversarial_found"] == 20
    assert sum(alone.extra["adversarial_label_counts"]) == 20 and alone.extra["adversarial_label_counts"][3] == 0
    w = [p for p in alone.model.parameters()]
    assert any(not torch.equal(a, b) for a, b in zip(w, with_r.model.parameters(), strict=True))


@pytest.mark.parametrize(("method", "max_gap"), [("amun", 4.0), ("amun_retain", 1.5)])
def test_random_forgetting_on_digits(method: str, max_gap: float) -> None:
    """random:0.1 (the paper's setting): measured gap_paper 2.76 (amun; test accuracy 94.4 vs the
    retrained 99.2: the official lr 0.05 costs the MLP some accuracy) and 0.73 (amun_retain)."""
    original, retrained, splits = trained_digits_case(forget="random:0.1")
    retain = splits.retain if method == "amun_retain" else None
    res = mumis.unlearn(original, splits.forget, method=method, retain=retain, seed=0, device="cpu")
    rep = mumis.evaluate(res.model, splits, reference=retrained, metrics="accuracy").to_dict()
    assert res.extra["adversarial_found"] == len(splits.forget[1])
    assert rep["gap_paper"] <= max_gap

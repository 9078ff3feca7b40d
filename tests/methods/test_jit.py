"""JiT: the loss is the empirical local Lipschitz constant; training lowers it on the forget set."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import mumis
from mumis.exceptions import ConfigError
from mumis.methods.jit import JiT, lipschitz_loss
from mumis.testing import trained_digits_case


class _Scale(nn.Module):
    def __init__(self, s: float) -> None:
        super().__init__()
        self.s = s

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.s * x.flatten(1)


def test_loss_of_a_linear_map_is_its_lipschitz_constant() -> None:
    # f(x) = 2.5 x: every ratio ||f(x) - f(x')|| / ||x - x'|| is exactly 2.5, clipped noise or not.
    x = torch.rand(4, 1, 3, 3, generator=torch.Generator().manual_seed(0))
    loss = lipschitz_loss(_Scale(2.5), x, n_samples=7, noise_std=0.1, generator=torch.Generator().manual_seed(1))
    assert loss.item() == pytest.approx(2.5, rel=1e-5)


def test_loss_is_seeded() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(9, 5), nn.Tanh(), nn.Linear(5, 3))
    x = torch.rand(4, 1, 3, 3, generator=torch.Generator().manual_seed(0))
    a, b = (lipschitz_loss(model, x, 5, 0.1, torch.Generator().manual_seed(2)) for _ in range(2))
    assert torch.equal(a, b)


def test_validate_rejects_bad_ranges() -> None:
    with pytest.raises(ConfigError, match="n_samples"):
        JiT(n_samples=0)
    with pytest.raises(ConfigError, match="noise_std"):
        JiT(noise_std=-1.0)


def _lipschitz(model: nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        return float(lipschitz_loss(model, x, 25, 0.1, torch.Generator().manual_seed(0)))


def test_smooths_the_forget_set_and_keeps_test_accuracy_on_digits() -> None:
    original, retrained, splits = trained_digits_case(forget="class:3")
    xf = splits.forget[0]
    res = mumis.unlearn(original, splits.forget, method="jit", seed=0, device="cpu")
    assert _lipschitz(res.model, xf) < 0.7 * _lipschitz(original, xf)
    rep = mumis.evaluate(res.model, splits, reference=retrained, metrics="accuracy").to_dict()
    assert rep["model"]["test_remaining_acc"] >= rep["reference"]["test_remaining_acc"] - 5.0


def test_larger_steps_forget_the_class_on_digits() -> None:
    original, _, splits = trained_digits_case(forget="class:3")
    res = mumis.unlearn(original, splits.forget, method="jit", seed=0, device="cpu", lr=0.1)
    acc = (res.model(splits.forget[0]).argmax(1) == splits.forget[1]).float().mean().item()
    assert acc < 0.2  # original: 1.0

"""SalUn: the global saliency mask, masked updates, and class forgetting on digits."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import mumis
from mumis.exceptions import ConfigError
from mumis.methods.salun import saliency_mask
from mumis.testing import trained_digits_case


def _tiny() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.linspace(-1, 1, p.numel()).view_as(p))
    x = torch.linspace(-2, 2, 24).view(4, 6)
    return model, x, torch.tensor([0, 1, 2, 0])


def test_mask_keeps_the_top_half_of_all_weights_by_gradient_magnitude() -> None:
    model, x, y = _tiny()
    mask = saliency_mask(model, x, y, ratio=0.5, batch_size=4, generator=torch.Generator().manual_seed(0))
    params = dict(model.named_parameters())
    grads = torch.autograd.grad(-nn.functional.cross_entropy(model(x), y), list(params.values()))
    g = torch.cat([t.abs().flatten() for t in grads])
    m = torch.cat([mask[n].flatten() for n in params])
    assert set(mask) == set(params) and all(mask[n].shape == p.shape for n, p in params.items())
    assert int(m.sum()) == g.numel() // 2  # top 50 % ...
    assert g[m == 1].min() >= g[m == 0].max()  # ... by |gradient| ...
    # ... with one threshold over all parameters: per-tensor fractions differ from 0.5
    assert any(abs(float(mask[n].mean()) - 0.5) > 0.05 for n in params)


def test_bad_settings_are_rejected() -> None:
    for bad in ({"mask_ratio": 0.0}, {"mask_ratio": 1.5}, {"lr": -1.0}, {"epochs": 0}):
        with pytest.raises(ConfigError):
            mumis.get_method("salun")(**bad)


def test_forgets_a_class_on_digits_and_moves_only_masked_weights() -> None:
    original, retrained, splits = trained_digits_case(forget="class:3")
    res = mumis.unlearn(original, splits.forget, method="salun", retain=splits.retain, seed=0, device="cpu")
    rep = mumis.evaluate(res.model, splits, reference=retrained).to_dict()["model"]
    # retrained: 0, 0; measured 0.0 / 0.0 (a forget pass then a retain pass; 4.8 / 2.7 interleaved)
    assert rep["forget_acc"] <= 5.0 and rep["test_forgotten_acc"] <= 5.0
    assert rep["test_remaining_acc"] >= 95.0  # retrained: 99.1
    small = mumis.unlearn(original, splits.forget, method="salun", retain=splits.retain, seed=0, device="cpu",
                          mask_ratio=0.1, epochs=2)
    before = torch.cat([p.detach().flatten() for p in original.parameters()])
    after = torch.cat([p.detach().flatten() for p in small.model.parameters()])
    changed = (before != after).float().mean()
    assert 0.0 < float(changed) <= 0.1

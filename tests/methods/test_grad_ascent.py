"""grad_ascent: a step raises the forget loss; on digits class 3 the forget accuracy falls to
about 0 while the other classes stay well classified."""

from __future__ import annotations

import torch
import torch.nn.functional as F

import mumis
from mumis.testing import trained_digits_case
from mumis.testing.conformance import tiny_case


def test_one_step_raises_the_forget_loss() -> None:
    case = tiny_case()
    fx, fy = case.forget
    res = mumis.unlearn(case.model, case.forget, method="grad_ascent", seed=0, device="cpu", epochs=1,
                        batch_size=0, momentum=0.0, weight_decay=0.0, lr=1e-3)
    with torch.no_grad():
        before, after = F.cross_entropy(case.model.eval()(fx), fy), F.cross_entropy(res.model(fx), fy)
    assert res.steps == 1 and after > before


def test_grad_ascent_forgets_the_class_on_digits() -> None:
    original, retrained, splits = trained_digits_case()
    res = mumis.unlearn(original, splits.forget, method="grad_ascent", seed=0, device="cpu")
    rep = mumis.evaluate(res.model, splits, reference=retrained).to_dict()
    m = rep["model"]
    assert m["forget_acc"] <= 5.0 and m["test_forgotten_acc"] <= 5.0  # measured 0.7 / 0.0
    assert m["test_remaining_acc"] >= 90.0  # measured 96.6 (retrained 99.1)
    assert res.steps == 5 * 5  # 146 forget samples, batch 32

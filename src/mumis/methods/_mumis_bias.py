"""MU-Mis's calibration after a whole-class run (`MuMis._lower_forgotten_bias`, methods/mumis.py,
docs/mumis-study.md §10g, §10i-j): the forgotten classes' classifier rows zeroed, the other
classes' logits on their images restored to the model's own scale (the same shift for all of
them), and the forgotten classes' biases lowered. No prediction among the other classes changes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..functional.batchnorm import last_layer


@dataclass
class Calibration:
    bias_shift: dict[int, float]  # how far each forgotten class's bias was lowered
    other_shift: dict[int, float] | None  # mean rise (nats) of the others' log-sum-exp on its images; None: not run


def _logits_and_inputs(model: nn.Module, layer: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The model's logits on x and what its last layer received (None unless one tensor per call)."""
    seen: list[tuple[Any, ...]] = []
    hook = layer.register_forward_hook(lambda _m, args, _out: seen.append(args))
    try:
        with torch.no_grad():
            logits = torch.cat([model(x[i : i + 1024]) for i in range(0, len(x), 1024)])
    finally:
        hook.remove()
    if not seen or any(len(a) != 1 or not isinstance(a[0], torch.Tensor) or a[0].dim() != 2 for a in seen):
        return logits, None
    return logits, torch.cat([a[0].detach() for a in seen])


def calibrate_forgotten_classes(model: nn.Module, x: torch.Tensor, y: torch.Tensor, k: int, *, zero_weights: bool,
                                lse_before: torch.Tensor | None) -> Calibration | None:
    """Calibrate the last layer for the forgotten classes of (x, y), every sample of which is one.

    1. `zero_weights`: each forgotten class's row is set to 0, so its logit is one constant.
    2. `lse_before` (the log-sum-exp of the logits on x before the run): the same multiple of the
       class's mean last-layer input is added to every other class's row, so that the others'
       log-sum-exp on its samples rises on average to `lse_before` there (never lowered). Adding
       one vector to all other rows shifts their logits equally on any input: their ranking and
       softmax among themselves stay as they were. Needs a linear last layer (2-D inputs).
    3. Each forgotten class's bias is lowered until its logit is 1 below the lowest other logit
       on every sample of it.

    Returns None when the last layer has no per-class bias and weight rows (nothing changed).
    """
    layer = last_layer(model, x[:2])
    bias, weight = getattr(layer, "bias", None), getattr(layer, "weight", None)
    if not isinstance(bias, torch.Tensor) or bias.shape != (k,) or not isinstance(weight, torch.Tensor) \
            or weight.shape[0] != k:
        return None
    classes = torch.unique(y).tolist()
    others = [j for j in range(k) if j not in classes]
    with torch.no_grad():
        if zero_weights:
            weight[classes] = 0.0
        other_shift: dict[int, float] | None = None
        if lse_before is not None and weight.dim() == 2:
            other_shift = {}
            for c in classes:
                logits, h = _logits_and_inputs(model, layer, x)
                if h is None:
                    other_shift = None
                    break
                mine = y == c
                mean = h[mine].mean(0)
                rise = float(lse_before[mine].mean() - torch.logsumexp(logits[mine][:, others], 1).mean())
                other_shift[c] = max(0.0, rise) if float(mean @ mean) > 0 else 0.0
                weight[others] += other_shift[c] * mean / max(float(mean @ mean), 1e-12)
        logits = torch.cat([model(x[i : i + 1024]) for i in range(0, len(x), 1024)])
        shift = {}
        for c in classes:
            z = logits[y == c]
            rest = z.clone()
            rest[:, c] = math.inf
            shift[c] = max(0.0, float((z[:, c] - rest.min(1).values).max()) + 1.0)
            bias[c] -= shift[c]
    return Calibration(shift, other_shift)

"""MU-Mis's calibration after a whole-class run (`MuMis._lower_forgotten_bias`, methods/mumis.py):
the forgotten classes' classifier rows zeroed and their biases lowered (docs/mumis-study.md §10g,
§10i). It changes no weight but those rows, so only predictions of a forgotten class can change.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..functional.batchnorm import last_layer
from ._mumis_monitor import _logits


def calibrate_forgotten_classes(model: nn.Module, x: torch.Tensor, y: torch.Tensor, k: int,
                                zero_weights: bool) -> dict[int, float] | None:
    """Zero each forgotten class's row of the last layer (if `zero_weights`), then lower its bias
    until its logit is 1 below the lowest other logit on every sample of it in (x, y).

    Returns the bias shift per class, or None when the last layer has no per-class bias and
    weight rows (nothing is changed then).
    """
    layer = last_layer(model, x[:2])
    bias, weight = getattr(layer, "bias", None), getattr(layer, "weight", None)
    if not isinstance(bias, torch.Tensor) or bias.shape != (k,) or not isinstance(weight, torch.Tensor) \
            or weight.shape[0] != k:
        return None
    classes = torch.unique(y).tolist()
    if zero_weights:
        with torch.no_grad():
            weight[classes] = 0.0
    logits = _logits(model, x)
    shift = {}
    with torch.no_grad():
        for c in classes:
            z = logits[y == c]
            others = z.clone()
            others[:, c] = math.inf
            shift[c] = max(0.0, float((z[:, c] - others.min(1).values).max()) + 1.0)
            bias[c] -= shift[c]
    return shift

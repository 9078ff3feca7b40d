"""Primitives: input gradients and input sensitivities (shared by MU-Mis and the metrics)."""

from .gradients import (
    input_gradients,
    input_sensitivity,
    norms,
    other_classes,
    selected_logit_gradients,
    sensitivity_profile,
)

__all__ = [
    "input_gradients", "input_sensitivity", "norms", "other_classes",
    "selected_logit_gradients", "sensitivity_profile",
]

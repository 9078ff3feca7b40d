"""Divergence between the output distributions of a model and the retrained reference.

Convention: `kl_to_retrain` = mean over forget samples of KL(reference || model)
= sum_k p_ref,k (log p_ref,k - log p_model,k), in nats. The retrained model is the target
distribution, so this is the usual "KL from the truth to the approximation": it is large when
the model puts little mass where the retrained model puts a lot (e.g. still confidently
predicting a forgotten class the retrained model rarely predicts). `js_to_retrain` is the
symmetric, bounded (<= ln 2) Jensen-Shannon divergence. Both are computed from `log_softmax`,
so very confident outputs (probabilities that underflow to 0) stay finite.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..exceptions import DataError


def _check(model_logits: torch.Tensor, reference_logits: torch.Tensor) -> None:
    if model_logits.shape != reference_logits.shape:
        raise DataError(
            f"model and reference logits differ in shape: {tuple(model_logits.shape)} vs "
            f"{tuple(reference_logits.shape)}; both must be evaluated on the same samples and "
            "have the same number of classes"
        )


def kl_per_sample(model_logits: torch.Tensor, reference_logits: torch.Tensor) -> torch.Tensor:
    """KL(reference || model) per sample, (N,) float64, in nats."""
    _check(model_logits, reference_logits)
    log_q = torch.log_softmax(model_logits.double(), dim=1)  # model, (N, K)
    log_p = torch.log_softmax(reference_logits.double(), dim=1)  # reference, (N, K)
    # kl_div(input=log q, target=log p, log_target) = p (log p - log q), 0 where p = 0.
    return F.kl_div(log_q, log_p, reduction="none", log_target=True).sum(dim=1)


def js_per_sample(model_logits: torch.Tensor, reference_logits: torch.Tensor) -> torch.Tensor:
    """Jensen-Shannon divergence per sample, (N,) float64, in nats (between 0 and ln 2)."""
    _check(model_logits, reference_logits)
    log_q = torch.log_softmax(model_logits.double(), dim=1)
    log_p = torch.log_softmax(reference_logits.double(), dim=1)
    log_m = torch.logsumexp(torch.stack([log_p, log_q]), dim=0) - math.log(2.0)  # log (p+q)/2
    kl_pm = F.kl_div(log_m, log_p, reduction="none", log_target=True).sum(dim=1)
    kl_qm = F.kl_div(log_m, log_q, reduction="none", log_target=True).sum(dim=1)
    return (0.5 * (kl_pm + kl_qm)).clamp_min(0.0)  # rounding can dip a hair below 0


def kl_to_retrain(model_logits: torch.Tensor, reference_logits: torch.Tensor) -> float:
    """Mean KL(reference || model) over the samples (the forget set); NaN if there are none."""
    if len(model_logits) == 0:
        return math.nan
    return float(kl_per_sample(model_logits, reference_logits).mean())


def js_to_retrain(model_logits: torch.Tensor, reference_logits: torch.Tensor) -> float:
    """Mean Jensen-Shannon divergence over the samples (the forget set); NaN if there are none."""
    if len(model_logits) == 0:
        return math.nan
    return float(js_per_sample(model_logits, reference_logits).mean())

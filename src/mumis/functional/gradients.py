"""Input gradients and input sensitivities: the one place mumis computes them.

`S_k(x) = || d f_k(x) / d x ||` (L2 / Frobenius norm of the flattened input gradient). In eval
mode the samples of a batch do not interact, so the per-sample input gradients of a whole batch
come from ONE `autograd.grad` of the summed selected logits `sum_i f_{k_i}(x_i)` with respect to
the batched input (each sample's logit depends on its own input only).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from ..exceptions import ModelError

NormType = Literal["squared", "l2"]


def _check_logits(logits: torch.Tensor, n: int) -> None:
    if not isinstance(logits, torch.Tensor):
        raise ModelError(
            f"the model returned a {type(logits).__name__}, not a logits tensor (N, K); wrap it as "
            "mumis.models.LogitsAdapter(model, key) with key the index, dict key or attribute of the logits"
        )
    if logits.dim() != 2 or logits.shape[0] != n:
        raise ModelError(
            f"the model must return logits of shape (N, K); for a batch of {n} it returned "
            f"{tuple(logits.shape)}"
        )


def selected_logit_gradients(
    logits: torch.Tensor,
    x: torch.Tensor,
    classes: torch.Tensor,
    *,
    create_graph: bool = False,
    retain_graph: bool | None = None,
) -> torch.Tensor:
    """Per-sample gradients d f_{k_i}(x_i) / d x_i from logits already computed on `x`.

    Args:
        logits: (N, K) model outputs on `x`, built with `x.requires_grad_(True)`.
        x: (N, ...) the batched input the logits were computed from.
        classes: (N,) class index k_i per sample.
        create_graph: keep the graph so the result can be differentiated w.r.t. the weights.
        retain_graph: keep the forward graph for a further call (default: `create_graph`).
    Returns:
        (N, ...) input gradients, same shape as `x`.
    """
    selected = logits.gather(1, classes.view(-1, 1)).sum()  # sum_i f_{k_i}(x_i)
    (grad,) = torch.autograd.grad(
        selected, x, create_graph=create_graph, retain_graph=retain_graph, allow_unused=True
    )
    if grad is None:
        raise ModelError("the model's output does not depend on its input; input gradients are undefined")
    return grad


def norms(grad: torch.Tensor, norm: NormType = "l2") -> torch.Tensor:
    """(N, ...) gradients -> (N,) L2 norms ('l2') or squared L2 norms ('squared')."""
    sq = grad.flatten(1).pow(2).sum(dim=1)  # (N,)
    return sq if norm == "squared" else sq.sqrt()


def input_gradients(
    model: nn.Module, x: torch.Tensor, classes: torch.Tensor, *, create_graph: bool = False
) -> torch.Tensor:
    """Per-sample input gradients of the selected logits, (N, ...), in one backward call.

    The model is used in whatever mode it is in; call `model.eval()` first for per-sample
    gradients that do not depend on the batch (BatchNorm with running statistics).
    """
    x = x.detach().requires_grad_(True)
    logits = model(x)
    _check_logits(logits, x.shape[0])
    return selected_logit_gradients(logits, x, classes, create_graph=create_graph)


def input_sensitivity(
    model: nn.Module,
    x: torch.Tensor,
    classes: torch.Tensor,
    *,
    norm: NormType = "l2",
    create_graph: bool = False,
) -> torch.Tensor:
    """Input sensitivity S_{k_i}(x_i) per sample, (N,); squared when `norm='squared'`."""
    return norms(input_gradients(model, x, classes, create_graph=create_graph), norm)


def other_classes(classes: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(N,) labels -> (N, K-1) the other classes of each sample, in order c+1, c+2, ... mod K."""
    offsets = torch.arange(1, num_classes, device=classes.device)  # (K-1,)
    return (classes.view(-1, 1) + offsets.view(1, -1)) % num_classes




def sensitivity_profile(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    batch_size: int = 256,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Target-class sensitivity and mean irrelevant-class sensitivity per sample (no graph).

    For each sample: `S_y(x)` and the mean of `S_k(x)` over the K-1 other classes k != y.
    One forward per batch, then K gradient calls sharing it (the last one frees the graph).

    Returns:
        (target, irrelevant_mean), each (N,) float on CPU.
    """
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    targets, irrelevant = [], []
    for start in range(0, len(x), batch_size):
        xb = x[start : start + batch_size].to(device).detach().requires_grad_(True)
        yb = y[start : start + batch_size].to(device)
        logits = model(xb)  # (B, K)
        _check_logits(logits, xb.shape[0])
        k = logits.shape[1]
        t = norms(selected_logit_gradients(logits, xb, yb, retain_graph=True))
        others = other_classes(yb, k)  # (B, K-1)
        acc = torch.zeros_like(t)
        for j in range(k - 1):
            g = selected_logit_gradients(logits, xb, others[:, j], retain_graph=j < k - 2)
            acc += norms(g)
        targets.append(t.detach().cpu())
        irrelevant.append((acc / max(k - 1, 1)).detach().cpu())
    return torch.cat(targets), torch.cat(irrelevant)

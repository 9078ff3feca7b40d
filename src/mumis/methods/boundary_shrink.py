"""Boundary Shrink (BS): relabel each forget sample with its FGSM neighbour's class, then fine-tune.

Paper: M. Chen, W. Gao, G. Liu, K. Peng, C. Wang, "Boundary Unlearning: Rapid Forgetting of Deep
Networks via Shifting the Decision Space", CVPR 2023.
https://openaccess.thecvf.com/content/CVPR2023/html/Chen_Boundary_Unlearning_Rapid_Forgetting_of_Deep_Networks_via_Shifting_the_CVPR_2023_paper.html

For each forget sample (x, y), one untargeted FGSM step on the *original* model,
    x_adv = clip(x + bound * sign(d CE(f(x), y) / dx), 0, 1),
finds the class across the nearest decision boundary: the neighbour label
    y_nbi = argmax_k f_orig(x_adv)_k.
The model is then fine-tuned with cross-entropy on the clean forget samples labelled y_nbi, which
shrinks the forget class's region into its neighbours'. Forget data only.

Follows: TY-LEE-KR/Boundary-Unlearning-Code, `boundary_unlearning.py::boundary_shrink` with
`adv_generator.py::FGSM` (the same loop as SalUn's `Classification/unlearn/boundary_sh.py`):
FGSM on a frozen copy of the original, the adversarial image clipped to [0, 1] and rounded to
1/255 (`discretize`), the label the plain argmax on it, SGD with momentum 0.9 at lr 1e-5,
`bound` 0.1, 10 epochs (`poison_epoch`); these are the defaults. When the step crosses no
boundary the argmax is the true label and the official code keeps it (36-53 % of the digits
forget samples): those samples are fine-tuned towards their own label. `exclude_true_label`
(off by default) takes the best wrong class instead, the reading the paper's text suggests.
Departures: batches of 64; we fine-tune in eval mode, the official code in train mode
(BatchNorm statistics of a one-class forget set would overwrite the running averages; dropout
would use the global RNG). The official lr barely moves an MLP on a ~140-image digits class;
the digits-adapted preset `configs/methods/adapted/boundary_shrink.yaml` (lr 1e-3,
exclude_true_label) forgets class:3.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..config import setting
from ._loop import Batch, LoopState, LossMethod, percent_correct
from .base import RunContext, register_method


@dataclass
class BoundaryShrinkConfig:
    bound: float = setting("FGSM step size (L-inf, in input units; inputs are in [0, 1])", default=0.1, gt=0)
    clamp: bool = setting("clip adversarial inputs to [0, 1] (images); turn off for unbounded features", default=True)
    lr: float = setting("SGD learning rate of the fine-tuning on neighbour labels (official 1e-5)", default=1e-5, gt=0)
    exclude_true_label: bool = setting(
        "label a sample whose FGSM step crosses no boundary with its best wrong class (official: keeps the true label)",
        default=False)
    momentum: float = setting("SGD momentum (official code: 0.9)", default=0.9, ge=0, lt=1)
    epochs: int = setting("passes over the forget set", default=10, ge=1)
    batch_size: int = setting("forget samples per step (0 = whole forget set)", default=64, ge=0,
                              note="0 = full batch")
    max_steps: int = setting("step budget across epochs (0 = no limit beyond epochs)", default=0, ge=0,
                             note="0 = no limit")


def neighbour_labels(model: nn.Module, x: torch.Tensor, y: torch.Tensor, bound: float,
                     clamp: bool = True, batch_size: int = 256, exclude_true: bool = False) -> torch.Tensor:
    """The argmax of the model on each sample's FGSM example (official); with `exclude_true`, the
    argmax over k != y. With `clamp` the example is an image: clipped to [0, 1], rounded to 1/255."""
    out = []
    for i in range(0, len(y), batch_size):
        xb, yb = x[i:i + batch_size].detach().clone().requires_grad_(True), y[i:i + batch_size]
        loss = nn.functional.cross_entropy(model(xb), yb)
        (grad,) = torch.autograd.grad(loss, xb)
        x_adv = xb.detach() + bound * grad.sign()  # (B, ...) one untargeted FGSM step
        if clamp:
            x_adv = torch.round(x_adv.clamp(0.0, 1.0) * 255) / 255  # official `discretize`
        with torch.no_grad():
            logits = model(x_adv)  # (B, K)
        if exclude_true:
            logits[torch.arange(len(yb)), yb] = float("-inf")
        out.append(logits.argmax(1))
    return torch.cat(out) if out else y.clone()


@register_method
class BoundaryShrink(LossMethod):
    """Boundary Shrink (Chen et al., CVPR 2023); see the module docstring."""

    name = "boundary_shrink"
    paper = "Chen et al., CVPR 2023, Boundary Unlearning (Boundary Shrink)"
    summary = "fine-tune the forget set on the labels of its FGSM neighbours; forget data only"
    Config = BoundaryShrinkConfig
    # Eval mode throughout: dropout would draw from the global RNG and BatchNorm statistics
    # of a one-class forget set would corrupt the running averages kept for the other classes.
    batchnorm_mode = "eval"
    batchnorm_note = "fine-tunes in eval mode so a one-class forget set does not overwrite the running statistics"

    def prepare(self, model: nn.Module, ctx: RunContext) -> dict[str, Any]:
        super().prepare(model, ctx)
        self.num_classes = ctx.num_classes
        # Labels come from the original model (the one we were handed), before any update.
        cfg = self.config
        self.y_nb = neighbour_labels(model, self.x, self.y, cfg.bound, cfg.clamp, exclude_true=cfg.exclude_true_label)
        return {"forget_acc": percent_correct(model, self.x, self.y)}

    def compute_loss(self, model: nn.Module, batch: Batch, ctx: RunContext) -> torch.Tensor:
        return nn.functional.cross_entropy(model(self.x[batch.idx]), self.y_nb[batch.idx])

    def epoch_row(self, model: nn.Module, state: LoopState) -> dict[str, Any] | None:
        return {"loss": state.stats["loss"].last, "forget_acc": percent_correct(model, self.x, self.y)}

    def result_extra(self, model: nn.Module, stop_reason: str) -> dict[str, Any]:
        return {"neighbour_label_counts": torch.bincount(self.y_nb, minlength=self.num_classes).tolist(),
                "kept_true_label": int((self.y_nb == self.y).sum())}

"""BatchNorm helpers for input-sensitivity unlearning.

With BatchNorm in eval mode (running statistics), scaling down the output filter of a conv that
feeds a BatchNorm shrinks that channel and every input gradient through it, so it lowers input
sensitivities at once. It is also invisible to anyone who re-estimates the statistics on a few
ordinary images (BatchNorm with batch statistics is invariant to a per-channel scale of the
layer before it), so a model "forgotten" that way comes back. `FilterNorms` removes that
direction: it keeps the norm of every such output filter fixed while the weights move.

`batchnorm_as_affine` gives a copy of a model whose eval-mode BatchNorm layers are plain
per-channel affine maps: the same function, whose double backward is cheaper (MU-Mis with
`update=last` runs on such a copy; BENCHMARKS.md, step cost).
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

_LINEAR = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def _eval_forward(model: nn.Module, x: torch.Tensor, handles: list[torch.utils.hooks.RemovableHandle]) -> None:
    """One no-grad eval-mode forward of `x` with `handles` registered; removes them and restores
    every module's mode afterwards."""
    modes = {m: m.training for m in model.modules()}
    try:
        model.eval()
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
        for m, t in modes.items():
            m.training = t


def layers_feeding_batchnorm(model: nn.Module, x: torch.Tensor) -> list[nn.Module]:
    """Conv / linear layers whose output goes straight into a BatchNorm, found on one forward.

    Pairs are matched on the tensor itself (the conv's output object is the BatchNorm's input),
    so any architecture works, whatever its module order. A layer whose output also goes
    elsewhere is listed too (its scale is then visible on the other path: an approximation).

    Args:
        model: any module.
        x: a small batch the model accepts (one or two samples).
    """
    outputs: dict[int, nn.Module] = {}
    keep: list[torch.Tensor] = []  # holds the outputs alive so their ids stay unique
    found: list[nn.Module] = []

    def after_layer(mod: nn.Module, _inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        if isinstance(out, torch.Tensor):
            outputs[id(out)] = mod
            keep.append(out)

    def before_bn(_mod: nn.Module, inp: tuple[torch.Tensor, ...]) -> None:
        src = outputs.get(id(inp[0])) if inp else None
        if src is not None and src not in found:
            found.append(src)

    handles = [m.register_forward_hook(after_layer) for m in model.modules() if isinstance(m, _LINEAR)]
    handles += [m.register_forward_pre_hook(before_bn) for m in model.modules() if isinstance(m, _BatchNorm)]
    _eval_forward(model, x, handles)
    return found


class FilterNorms:
    """Keep the norm of every output filter (row of the weight) of some layers fixed.

    `project` removes from a gradient its component along each filter (the direction that only
    rescales the filter); `retract` puts each filter back on its sphere after an optimiser step
    (the projected step still changes the norm to second order, and Adam rescales per element).
    A bias of such a layer only shifts what the BatchNorm subtracts again, so it is frozen too.
    """

    def __init__(self, layers: list[nn.Module]) -> None:
        self.weights: list[nn.Parameter] = []
        self.norms: list[torch.Tensor] = []
        self.frozen: list[nn.Parameter] = []
        for layer in layers:
            w = getattr(layer, "weight", None)
            if isinstance(w, nn.Parameter) and w.requires_grad:
                self.weights.append(w)
                self.norms.append(_row_norms(w.detach()).clone())
            b = getattr(layer, "bias", None)
            if isinstance(b, nn.Parameter) and b.requires_grad:
                self.frozen.append(b)

    def __len__(self) -> int:
        return len(self.weights)

    def project(self, grads: dict[nn.Parameter, torch.Tensor | None]) -> None:
        """Replace the constrained weights' gradients by their projections; zero the frozen biases'."""
        for w in self.weights:
            gw = grads.get(w)
            if gw is None:
                continue
            u = w.detach().flatten(1)
            u = u / u.norm(dim=1, keepdim=True).clamp_min(1e-12)  # (O, fan_in) unit filters
            g2 = gw.reshape(gw.shape[0], -1)
            grads[w] = (g2 - (g2 * u).sum(1, keepdim=True) * u).view_as(w)
        for b in self.frozen:
            if grads.get(b) is not None:
                grads[b] = torch.zeros_like(b)

    @torch.no_grad()
    def retract(self) -> None:
        for w, n in zip(self.weights, self.norms, strict=True):
            shape = (-1,) + (1,) * (w.dim() - 1)
            w.mul_((n / _row_norms(w).clamp_min(1e-12)).view(shape))


def _row_norms(w: torch.Tensor) -> torch.Tensor:
    return w.flatten(1).norm(dim=1)  # (O,)


def _forward_order(model: nn.Module, x: torch.Tensor) -> list[nn.Module]:
    """Submodules in the order their forward passes finish, on one eval-mode forward of `x`."""
    order: list[nn.Module] = []

    def seen(mod: nn.Module, _inp: tuple[torch.Tensor, ...], _out: torch.Tensor) -> None:
        order.append(mod)

    handles = [m.register_forward_hook(seen) for m in model.modules() if m is not model]
    _eval_forward(model, x, handles)
    return order


def _own_parameters(modules: list[nn.Module]) -> list[nn.Parameter]:
    params: list[nn.Parameter] = []
    for m in modules:
        for p in m.parameters(recurse=False):
            if all(p is not q for q in params):
                params.append(p)
    return params


def last_layer(model: nn.Module, x: torch.Tensor) -> nn.Module:
    """The last module with weights of its own, in forward order: the classifier of most networks."""
    order = [m for m in _forward_order(model, x) if any(True for _ in m.parameters(recurse=False))]
    return order[-1] if order else model  # no submodule with weights: the model itself (a bare nn.Linear)


def last_layer_parameters(model: nn.Module, x: torch.Tensor) -> list[nn.Parameter]:
    """The weights of `last_layer(model, x)`."""
    layer = last_layer(model, x)
    return list(layer.parameters()) if layer is model else _own_parameters([layer])


def parameters_after_batchnorm(model: nn.Module, x: torch.Tensor) -> list[nn.Parameter]:
    """The parameters of the layers that run after the network's last BatchNorm, found on one forward.

    No BatchNorm sees what these layers compute, so nothing a re-estimation of the running
    statistics does can undo a change of them (for a ResNet: the final linear layer). Empty if
    the model has no BatchNorm or nothing with parameters runs after its last one.

    Args:
        model: any module.
        x: a small batch the model accepts.
    """
    order = _forward_order(model, x)
    last = max((i for i, m in enumerate(order) if isinstance(m, _BatchNorm)), default=None)
    if last is None:
        return []
    before = set(order[: last + 1])
    # a container (a block) finishes after its own BatchNorms: only modules with none of their
    # submodules run before the last BatchNorm count
    after = [m for m in order[last + 1 :] if not any(sub in before for sub in m.modules())]
    return _own_parameters(after)


class ChannelAffine(nn.Module):
    """What an eval-mode BatchNorm computes, x * scale + shift per channel, as two plain ops."""

    scale: torch.Tensor
    shift: torch.Tensor

    def __init__(self, bn: _BatchNorm) -> None:
        super().__init__()
        if bn.running_mean is None or bn.running_var is None:
            raise ValueError("ChannelAffine needs a BatchNorm with running statistics")
        scale = (bn.running_var + bn.eps).rsqrt()
        shift = -bn.running_mean * scale
        if bn.affine:
            scale, shift = scale * bn.weight, shift * bn.weight + bn.bias
        self.register_buffer("scale", scale.detach().clone())
        self.register_buffer("shift", shift.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return x * self.scale.view(shape) + self.shift.view(shape)


def has_running_batchnorm(model: nn.Module) -> bool:
    """Whether any BatchNorm layer of `model` normalises with running statistics in eval mode."""
    return any(isinstance(m, _BatchNorm) and m.track_running_stats for m in model.modules())


@torch.no_grad()
def batchnorm_as_affine(model: nn.Module) -> nn.Module:
    """An eval-mode copy of `model` with every BatchNorm that has running statistics replaced by
    its `ChannelAffine` (exact in eval mode, any architecture; the original is not touched).

    Only valid while those layers stay fixed: their weights and statistics become buffers.
    """
    out = copy.deepcopy(model).eval()
    for parent in list(out.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, _BatchNorm) and child.track_running_stats:
                setattr(parent, name, ChannelAffine(child))
    return out

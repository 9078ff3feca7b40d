"""Checks that a model supports what MU-Mis needs: double backward through input gradients.

MU-Mis differentiates the norm of an input gradient with respect to the weights
(`autograd.grad(..., create_graph=True)`, then a second `autograd.grad`). In-place operations
(`nn.ReLU(inplace=True)`, `out += x`, `x.relu_()`) overwrite tensors autograd saved for that
second pass, so we look for them before any work and report which module is at fault.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from ..exceptions import ModelError

_FIX = ("construct activations with inplace=False (e.g. nn.ReLU() rather than nn.ReLU(inplace=True)) "
        "and write `out = out + x` rather than `out += x`")


def _label(name: str, module: nn.Module) -> str:
    return f"{name or '(root)'} ({type(module).__name__})"


def find_inplace_modules(model: nn.Module) -> list[str]:
    """Names of the submodules constructed with `inplace=True` (e.g. `features.1`).

    Args:
        model: any module.

    Returns:
        Qualified module names in registration order (`''` is the model itself).
    """
    return [name for name, m in model.named_modules() if getattr(m, "inplace", False) is True]


@contextlib.contextmanager
def _preserved(model: nn.Module) -> Iterator[None]:
    """Restore every module's train/eval mode and every parameter's requires_grad on exit."""
    modes = {m: m.training for m in model.modules()}
    flags = {p: p.requires_grad for p in model.parameters()}
    try:
        yield
    finally:
        for m, mode in modes.items():
            m.training = mode
        for p, flag in flags.items():
            p.requires_grad_(flag)


def check_double_backward(model: nn.Module, x: torch.Tensor) -> None:
    """Raise ModelError unless input gradients of `model` can be differentiated again.

    Runs the model in eval mode (as MU-Mis does) on the first 2 samples of `x`, computes
    `g = d logits[:, 0].sum() / d x` with `create_graph=True`, then `d (g**2).sum() / d params`.
    The model's modes, `requires_grad` flags, buffers and `.grad` fields are left as they were.

    Args:
        model: a classifier returning logits (N, K).
        x: a batch of inputs (N, ...), on the model's device or the CPU.

    Raises:
        ModelError: in-place modules were found (named), the output is not (N, K), the input
            gradient is missing or does not depend on the weights, or autograd failed (naming the
            module whose output was overwritten in place, when that can be told).
    """
    inplace = find_inplace_modules(model)
    if inplace:
        mods = dict(model.named_modules())
        names = ", ".join(_label(n, mods[n]) for n in inplace)
        raise ModelError(f"model has in-place modules that break double backward: {names}; {_FIX}")
    params = list(model.parameters())
    if not params:
        raise ModelError("model has no parameters; there is nothing to unlearn")
    device = params[0].device
    if x.ndim < 2 or x.shape[0] < 1:
        raise ModelError(f"check_double_backward needs a batch (N, ...), got shape {tuple(x.shape)}")
    xs = x[:2].detach().clone().to(device).requires_grad_(True)

    # Record each submodule's output version: if it changes after the module returns, a later
    # operation overwrote it in place, and autograd may need the old value.
    outputs: list[tuple[str, torch.Tensor, int]] = []
    named = [(n, m) for n, m in model.named_modules() if n]

    def recorder(name: str):  # noqa: ANN202
        def hook(_m: nn.Module, _inp: object, out: object) -> None:
            if isinstance(out, torch.Tensor):
                outputs.append((name, out, out._version))
        return hook

    def overwritten() -> str:
        mods = dict(model.named_modules())
        bad = [n for n, t, v in outputs if t._version != v]
        return ", ".join(_label(n, mods[n]) for n in dict.fromkeys(bad))

    with _preserved(model):
        model.eval()
        for p in params:
            p.requires_grad_(True)
        handles = [m.register_forward_hook(recorder(n)) for n, m in named]
        try:
            with torch.enable_grad():
                logits = model(xs)
                if not isinstance(logits, torch.Tensor) or logits.ndim != 2 or logits.shape[0] != xs.shape[0]:
                    shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
                    raise ModelError(
                        f"model output must be logits of shape (N, K) = ({xs.shape[0]}, K), got "
                        f"{shape}; return a tensor of class scores from forward()"
                    )
                (g,) = torch.autograd.grad(logits[:, 0].sum(), xs, create_graph=True, allow_unused=True)
                if g is None:
                    raise ModelError(
                        "the model's output does not depend on its input (input gradient is None); "
                        "check that forward() uses x and does not detach it"
                    )
                if not g.requires_grad:
                    raise ModelError(
                        "the input gradient does not depend on the weights, so it cannot be "
                        "differentiated again; check that forward() does not detach tensors"
                    )
                grads = torch.autograd.grad(g.pow(2).sum(), params, allow_unused=True)
        except RuntimeError as e:
            culprit = overwritten()
            where = f" (output of {culprit} was modified in place afterwards)" if culprit else ""
            msg = str(e).splitlines()[0].split(" Hint:")[0].rstrip(".")
            raise ModelError(f"double backward through the model failed{where}: {msg}; {_FIX}") from None
        finally:
            for h in handles:
                h.remove()
    if all(gr is None for gr in grads):
        raise ModelError("second-order gradients reach no parameter; check that forward() does not "
                         "detach tensors")

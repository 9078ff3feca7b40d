"""One helper that gives a caller's model back as it was handed over: `preserved_state`.

What the library may change on a model while it works with it, and must restore: each
module's train/eval mode (restored per module, so a deliberately mixed state such as a frozen
BatchNorm inside a model in training mode survives), each parameter's `requires_grad`, the
forward / backward hooks (any added inside the block are removed), and optionally the device.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn

_HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")


@contextlib.contextmanager
def preserved_state(model: nn.Module, *, eval_mode: bool = False, device: bool = False) -> Iterator[nn.Module]:
    """Restore the model's modes, requires_grad flags and hooks on exit, also on error.

    Args:
        eval_mode: put every module in eval mode for the block.
        device: also move the model back to the device of its first parameter.
    """
    modes = {m: m.training for m in model.modules()}
    # lazy parameters (nn.LazyLinear before its first call) refuse requires_grad_
    flags = {p: p.requires_grad for p in model.parameters()
             if not isinstance(p, nn.parameter.UninitializedParameter)}
    hooks = {(m, name): set(getattr(m, name, {})) for m in model.modules() for name in _HOOK_DICTS}
    where = next((p.device for p in model.parameters()), None) if device else None
    if eval_mode:
        model.eval()
    try:
        yield model
    finally:
        if where is not None:
            model.to(where)
        for m, mode in modes.items():
            m.training = mode
        for p, flag in flags.items():
            p.requires_grad_(flag)
        for (m, name), before in hooks.items():
            table = getattr(m, name, {})
            for key in [k for k in table if k not in before]:
                del table[key]

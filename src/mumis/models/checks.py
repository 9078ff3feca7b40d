"""Checks that a model fits what mumis needs, run before any work.

- `probe_model`: one forward on two samples: the inputs fit the model (a failure names the
  module and both shapes), the output is (or holds, via `output_key`) logits (N, K), and K fits
  the labels.
- `check_double_backward`: MU-Mis differentiates the norm of an input gradient with respect to
  the weights (`autograd.grad(..., create_graph=True)`, then a second `autograd.grad`).
  In-place operations (`nn.ReLU(inplace=True)`, `out += x`, `x.relu_()`) can overwrite tensors
  autograd saved for that second pass, so we look for them and report which module is at fault.
- `out_of_place_activations`: switches modules built with `inplace=True` (every torchvision
  ResNet's ReLU) to out-of-place for a block. It changes no value, only whether the activation
  writes into its input, so `mumis.unlearn` applies it to its working copy. In-place operations
  written inside forward() cannot be switched from outside: they get an error with the rewrite.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Iterator

import torch
from torch import nn

from ..caller_state import preserved_state
from ..exceptions import ConfigError, DataError, ModelError, MumisError
from ..utils import model_device
from .adapters import OutputKey, auto_key, describe_key, no_key_error, select_logits, wrap

_FIX = "construct activations with inplace=False (e.g. nn.ReLU() rather than nn.ReLU(inplace=True))"
_FIX_FORWARD = ("rewrite the in-place operations in forward(): `out = out + x` for `out += x`, "
                "`F.relu(x)` for `F.relu(x, inplace=True)`, `x.relu()` for `x.relu_()` "
                "(activation modules built with inplace=True need no change: mumis.unlearn "
                "switches them off on its working copy)")


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
def out_of_place_activations(model: nn.Module) -> Iterator[list[str]]:
    """Set `inplace=False` on every submodule built with `inplace=True`; restore them on exit.

    Covers every module with an `inplace` flag (ReLU, ReLU6, LeakyReLU, Hardtanh, ELU, SELU,
    CELU, SiLU, Hardswish, Hardsigmoid, Mish, Threshold, Dropout, ...): the flag only decides
    whether the result overwrites the input, never the value computed.

    Yields:
        The qualified names of the switched modules (`find_inplace_modules` order).
    """
    names = find_inplace_modules(model)
    mods = dict(model.named_modules())
    switched = [mods[n] for n in names]
    for m in switched:
        m.inplace = False
    try:
        yield names
    finally:
        for m in switched:
            m.inplace = True


def check_double_backward(model: nn.Module, x: torch.Tensor, *, output_key: OutputKey | None = None) -> None:
    """Raise ModelError unless input gradients of `model` can be differentiated again.

    Runs the model in eval mode (as MU-Mis does) on the first 2 samples of `x`, computes
    `g = d logits[:, 0].sum() / d x` with `create_graph=True`, then `d (g**2).sum() / d params`.
    The model's modes, `requires_grad` flags, buffers and `.grad` fields are left as they were.

    Args:
        model: a classifier returning logits (N, K).
        x: a batch of inputs (N, ...), on the model's device or the CPU.
        output_key: how to find the logits in a non-tensor output (see `models.adapters`).

    Raises:
        ModelError: in-place modules were found (named), the output is not (N, K), the input
            gradient is missing or does not depend on the weights, or autograd failed (naming the
            module whose output was overwritten in place, when that can be told).
    """
    inplace = find_inplace_modules(model)
    if inplace:
        mods = dict(model.named_modules())
        names = ", ".join(_label(n, mods[n]) for n in inplace)
        raise ModelError(f"model has in-place modules, which can break double backward: {names}; {_FIX} "
                         "(mumis.unlearn does this on its working copy; to check a model yourself, "
                         "call this inside `with out_of_place_activations(model):`)")
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

    with preserved_state(model):
        model.eval()
        for p in params:
            p.requires_grad_(True)
        handles = [m.register_forward_hook(recorder(n)) for n, m in named]
        try:
            grads = _second_order_grads(model, xs, params, output_key)
        except RuntimeError as e:
            msg = str(e).splitlines()[0].split(" Hint:")[0].rstrip(".")
            missing = re.search(r"derivative for aten::(\w+?)_backward is not implemented", msg)
            if missing:  # e.g. Hardsigmoid: torch has no second derivative for it
                raise ModelError(_no_second_derivative(model, missing.group(1), msg)) from None
            culprit = overwritten()
            where = f" (output of {culprit} was modified in place afterwards)" if culprit else ""
            raise ModelError(f"double backward through the model failed{where}: {msg}; {_FIX_FORWARD}") from None
        finally:
            for h in handles:
                h.remove()
    if all(gr is None for gr in grads):
        raise ModelError("second-order gradients reach no parameter; check that forward() does not "
                         "detach tensors")


def _second_order_grads(model: nn.Module, xs: torch.Tensor, params: list[nn.Parameter],
                        output_key: OutputKey | None) -> tuple[torch.Tensor | None, ...]:
    """d (g**2).sum() / d params for g = d logits[:, 0].sum() / d xs; ModelError on a bad output."""
    with torch.enable_grad():
        logits = _logits_of(model(xs), output_key, xs.shape[0])
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
        return torch.autograd.grad(g.pow(2).sum(), params, allow_unused=True)


def _no_second_derivative(model: nn.Module, op: str, msg: str) -> str:
    """The message for an operation torch cannot differentiate twice, naming its modules."""
    mods = [_label(n, m) for n, m in model.named_modules() if type(m).__name__.lower() == op.replace("_", "")]
    where = f" at {', '.join(mods)}" if mods else ""
    return (f"double backward through the model failed{where}: torch has no second derivative of "
            f"{op} ({msg}); replace it with a twice-differentiable operation (e.g. nn.Hardsigmoid "
            "by nn.Sigmoid), or choose a method that does not need double backward (`mumis methods`)")


def _logits_of(out: object, key: OutputKey | None, n: int) -> torch.Tensor:
    """The logits in a forward's output: `out` itself, the entry `key` selects, or `.logits`."""
    if key is not None:
        if isinstance(out, torch.Tensor):
            raise ModelError(f"output_key={describe_key(key)} was given but the model returns a "
                             f"tensor {tuple(out.shape)}; drop output_key")
        return select_logits(out, key)
    if isinstance(out, torch.Tensor):
        return out
    auto = auto_key(out)
    if auto is None:
        raise no_key_error(out, n)
    return select_logits(out, auto)


def _expects(m: nn.Module) -> str:
    """The input shape a standard layer expects, in words ('' when we cannot tell)."""
    if isinstance(m, nn.Linear):
        return f"(N, {m.in_features})"
    if isinstance(m, nn.modules.conv._ConvNd):
        dims = {1: "L", 2: "H, W", 3: "D, H, W"}.get(len(m.kernel_size), "...")
        return f"(N, {m.in_channels}, {dims})"
    if isinstance(m, nn.modules.batchnorm._BatchNorm):
        return f"{m.num_features} channels"
    return ""


def _shapes(args: tuple[object, ...]) -> str:
    shapes = [str(tuple(a.shape)) for a in args if isinstance(a, torch.Tensor)]
    return ", ".join(shapes) or "no tensor"


def _hint(m: nn.Module | None, x: torch.Tensor) -> str:
    per_sample = math.prod(x.shape[1:])
    if isinstance(m, nn.Linear) and x.dim() > 2:
        fits = f" (X has {per_sample} values per sample"
        fits += ", exactly what the layer takes)" if per_sample == m.in_features else ")"
        return (f"if the model takes flat vectors, pass X.flatten(1){fits} or start the model "
                "with nn.Flatten()")
    if isinstance(m, nn.modules.conv._ConvNd) and x.dim() == 2:
        return "the model takes images: reshape X to (N, C, H, W)"
    return "give inputs of the shape the model was built for"


def _forward_naming_failure(model: nn.Module, x: torch.Tensor, what: str) -> object:
    """`model(x)`; a failure inside becomes one ModelError naming the module and the shapes."""
    stack: list[tuple[str, nn.Module, str]] = []  # modules entered and not yet left

    def enter(name: str):  # noqa: ANN202
        def hook(m: nn.Module, args: tuple[object, ...]) -> None:
            stack.append((name, m, _shapes(args)))
        return hook

    def leave(_m: nn.Module, _args: object, _out: object) -> None:
        stack.pop()

    handles = []
    with contextlib.suppress(RuntimeError):  # e.g. ScriptModules take no Python hooks
        for name, m in model.named_modules():
            handles.append(m.register_forward_pre_hook(enter(name)))
            handles.append(m.register_forward_hook(leave))
    try:
        return model(x)
    except MumisError:
        raise
    except (RuntimeError, ValueError, TypeError, IndexError) as e:
        err = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        where, culprit = "", None
        if stack:
            name, culprit, got = stack[-1]
            exp = _expects(culprit)
            where = (f"{_label(name, culprit)} expects {exp} but got {got}: " if exp
                     else f"in {_label(name, culprit)}: ")
        raise ModelError(f"the model fails on the {what} inputs of shape {tuple(x.shape)}: "
                         f"{where}{err}; {_hint(culprit, x)}") from None
    finally:
        for h in handles:
            h.remove()


def probe_model(
    model: nn.Module,
    x: torch.Tensor,
    *,
    output_key: OutputKey | None = None,
    what: str = "forget",
    num_classes: int | None = None,
    labels: torch.Tensor | None = None,
) -> tuple[torch.Tensor, OutputKey | None]:
    """Run `model` once on the first 2 samples of `x` and check the logits, before any work.

    Runs in eval mode under `no_grad`, on the model's device; every submodule's mode is restored.

    Args:
        model: the classifier.
        x: (N, ...) inputs (N >= 1).
        output_key: how to find the logits in a non-tensor output (see `models.adapters`).
        what: the data's name in messages ('forget', 'test', ...).
        num_classes: K the logits must have (e.g. the splits' classes), if known.
        labels: labels the logits must cover (0..max), if known.
    Returns:
        (logits (n, K), the key to wrap the model with: `output_key`, 'logits' for an output
        object with a `.logits` tensor (Hugging Face style), or None for a tensor output).
    Raises:
        ConfigError: `model` is not an nn.Module.
        ModelError: the forward fails (naming the module and shapes), a non-tensor output
            without a key, logits not (n, K), or K differs from `num_classes`.
        DataError: `labels` go beyond the K logits.
    """
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    xs = x[:2].to(model_device(model))
    # fork_rng: a model drawing random numbers in forward leaves the caller's RNG as it was
    with preserved_state(model), torch.no_grad(), torch.random.fork_rng(devices=[]):
        model.eval()
        out = _forward_naming_failure(model, xs, what)
    key = output_key if output_key is not None or isinstance(out, torch.Tensor) else auto_key(out)
    logits = _logits_of(out, key, len(xs))
    if logits.dim() != 2 or logits.shape[0] != len(xs):
        raise ModelError(f"the model must return logits of shape (N, K); for {what} inputs of "
                         f"shape {tuple(xs.shape)} it returned {tuple(logits.shape)}")
    k = int(logits.shape[1])
    if num_classes is not None and k != num_classes:
        raise ModelError(f"the model returns logits of shape {tuple(logits.shape)} ({k} classes) but "
                         f"the data has {num_classes} classes; use a model built for {num_classes} classes")
    if labels is not None and labels.numel() and int(labels.max()) >= k:
        top = int(labels.max())
        raise DataError(f"{what} labels must be in 0..{k - 1}: the model returns logits of shape "
                        f"{tuple(logits.shape)} ({k} classes) but the labels go up to {top} (at least "
                        f"{top + 1} classes); use a model with one output per class")
    return logits, key


def logits_model(
    model: nn.Module,
    x: torch.Tensor,
    *,
    output_key: OutputKey | None = None,
    what: str = "forget",
    num_classes: int | None = None,
    name: str = "model",
) -> nn.Module:
    """`probe_model`, then `model` wrapped so its forward returns the logits (itself for a
    tensor output). `name` prefixes errors about a second model ('reference: ...')."""
    try:
        _, key = probe_model(model, x, output_key=output_key, what=what, num_classes=num_classes)
    except ModelError as e:
        if name == "model":
            raise
        raise ModelError(f"{name}: {e}") from None
    return wrap(model, key)

"""Output adapters: models whose forward returns a tuple, a dict or an object holding the logits.

Every method and metric of mumis works on plain logits `(N, K)`. A model that returns more
(`(logits, features)`, `{"logits": ..., "aux": ...}`, a Hugging Face `ModelOutput`) is wrapped
in `LogitsAdapter(model, key)` for the run, so its callers see only the logits; the wrapper has
no parameters of its own and `unwrap` gives back the user's model (its own class, same weights).

`key` (the `output_key=` argument of `mumis.unlearn` and `mumis.evaluate`) is one of:
- an int: an index into a tuple or list output (`output_key=0`);
- a str: a dict key, or else an attribute name (`output_key="logits"`);
- a callable `fn(output) -> logits` for anything else (`output_key=lambda out: out["a"][0]`).

Without a key, only an output object with a `.logits` tensor attribute (Hugging Face style) is
accepted automatically; anything else that is not a tensor is an error that says what came
back and how to pass the key. Nothing is guessed silently.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ..exceptions import ConfigError, ModelError

OutputKey = int | str | Callable[[Any], torch.Tensor]

_HOW = ("pass output_key= to mumis.unlearn / mumis.evaluate (an int index for a tuple, a dict key "
        "or attribute name, or a function output -> logits), or wrap the model (e.g. in a CLI model "
        "factory) as mumis.models.LogitsAdapter(model, key)")


def check_output_key(key: object) -> None:
    """Raise ConfigError unless `key` is None, an int, a str or a callable."""
    if key is None or callable(key) or (isinstance(key, (int, str)) and not isinstance(key, bool)):
        return
    raise ConfigError(f"output_key must be an int index, a dict key or attribute name (str), or a "
                      f"function output -> logits; got {type(key).__name__} {key!r}")


def describe_key(key: OutputKey | None) -> str | None:
    """A JSON-friendly name of `key` for results: `0`, `'logits'`, `fn <lambda>`."""
    if key is None:
        return None
    if callable(key):
        return f"fn {getattr(key, '__qualname__', type(key).__name__)}"
    return repr(key)


def _brief(value: object) -> str:
    if isinstance(value, torch.Tensor):
        return f"Tensor{tuple(value.shape)}"
    return type(value).__name__


def _public_attrs(out: object) -> list[str]:
    names = [n for n in vars(out) if not n.startswith("_")] if hasattr(out, "__dict__") else []
    return names[:8]


def describe_output(out: object) -> str:
    """What a forward returned, in a few words: `a tuple of 2 (Tensor(2, 10), Tensor(2, 64))`."""
    name = type(out).__name__
    if isinstance(out, Mapping):
        items = ", ".join(f"{k!r}: {_brief(v)}" for k, v in list(out.items())[:8])
        return f"a {name} with keys {{{items}}}"
    if isinstance(out, (tuple, list)):
        return f"a {name} of {len(out)} ({', '.join(_brief(v) for v in out[:8])})"
    attrs = _public_attrs(out)
    if attrs:
        return f"a {name} with attributes {', '.join(attrs)}"
    return f"a {name}"


def _suggestion(out: object, n: int) -> str:
    """`output_key=...` naming the first entry that looks like (n, K) logits, or ''."""
    def fits(v: object) -> bool:
        return isinstance(v, torch.Tensor) and v.dim() == 2 and v.shape[0] == n

    entries: Sequence[tuple[object, object]]
    if isinstance(out, Mapping):
        entries = list(out.items())
    elif isinstance(out, (tuple, list)):
        entries = list(enumerate(out))
    else:
        entries = [(a, getattr(out, a)) for a in _public_attrs(out)]
    for k, v in entries:
        if fits(v):
            return f", e.g. output_key={k!r} if that entry holds the logits"
    return ""


def no_key_error(out: object, n: int) -> ModelError:
    """The one-line error for a non-tensor output when no output_key was given."""
    return ModelError(f"the model returned {describe_output(out)} instead of a logits tensor "
                      f"(N, K); {_HOW}{_suggestion(out, n)}")


def auto_key(out: object) -> str | None:
    """'logits' for an output object with a `.logits` tensor attribute (HF style), else None."""
    if not isinstance(out, torch.Tensor) and isinstance(getattr(out, "logits", None), torch.Tensor):
        return "logits"
    return None


def select_logits(out: object, key: OutputKey) -> torch.Tensor:
    """The logits tensor inside a model's output `out`, chosen by `key`.

    Raises:
        ModelError: the key does not fit the output (naming what the output holds), or what it
            selects is not a tensor.
    """
    try:
        if callable(key):
            value = key(out)
        elif isinstance(key, int):
            if not isinstance(out, Sequence) or isinstance(out, str):
                raise ModelError(f"output_key={key!r} is an index but the model returned "
                                 f"{describe_output(out)}; give a key or attribute name")
            value = out[key]
        elif isinstance(out, Mapping) and key in out:
            value = out[key]
        elif hasattr(out, key):
            value = getattr(out, key)
        else:
            raise ModelError(f"output_key={key!r} is not in the model's output: it returned "
                             f"{describe_output(out)}")
    except ModelError:
        raise
    except (IndexError, KeyError, AttributeError, TypeError) as e:
        raise ModelError(f"output_key={describe_key(key)} failed on the model's output "
                         f"({describe_output(out)}): {type(e).__name__}: {e}") from None
    if not isinstance(value, torch.Tensor):
        raise ModelError(f"output_key={describe_key(key)} selects {describe_output(value)}, not a "
                         f"logits tensor (N, K); choose the entry that holds the logits")
    return value


class LogitsAdapter(nn.Module):
    """Wraps `model` so that its forward returns only the logits chosen by `key`.

    The wrapped model is the submodule `model`; the adapter adds no parameters or buffers, but
    its `state_dict()` keys carry the prefix `model.` (save `adapter.model.state_dict()` for the
    bare model's keys).

    Args:
        model: any module whose output holds the logits.
        key: an int index, a dict key / attribute name, or a callable `fn(output) -> logits`.
    """

    def __init__(self, model: nn.Module, key: OutputKey) -> None:
        super().__init__()
        check_output_key(key)
        self.model = model
        self.key = key

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return select_logits(self.model(*args, **kwargs), self.key)


def wrap(model: nn.Module, key: OutputKey | None) -> nn.Module:
    """`LogitsAdapter(model, key)`, or `model` itself when `key` is None."""
    return model if key is None else LogitsAdapter(model, key)


def unwrap(model: nn.Module) -> nn.Module:
    """The user's model inside (possibly nested) adapters."""
    while isinstance(model, LogitsAdapter):
        model = model.model
    return model

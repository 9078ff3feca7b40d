"""Built-in models (`mlp`, `cnn`, `resnet18`), user factories (`package.module:function`) and
model checks.

Every built-in model starts with a `Normalize` layer, so it takes [0, 1] inputs of shape
(N, *input_shape) and returns logits (N, K). None uses in-place operations, so double backward
through input gradients (what MU-Mis needs) works; `check_double_backward` verifies any model.
Models that return a tuple, a dict or an object holding the logits run through `LogitsAdapter`
(`output_key=` of `mumis.unlearn` / `mumis.evaluate`).
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ..exceptions import ModelError
from ..registry import Registry
from ..utils import to_jsonable
from .adapters import LogitsAdapter, OutputKey
from .checks import check_double_backward, find_inplace_modules, out_of_place_activations, probe_model
from .cnn import CNN
from .layers import Normalize
from .mlp import MLP
from .resnet import ResNet18

ModelFactory = Callable[..., nn.Module]

#: Built-in architectures; each is called as cls(input_shape=, num_classes=, mean=, std=, **kw).
MODELS: Registry[ModelFactory] = Registry("model")
MODELS.register("mlp", MLP)
MODELS.register("cnn", CNN)
MODELS.register("resnet18", ResNet18)

__all__ = [
    "CNN", "MLP", "MODELS", "LogitsAdapter", "Normalize", "OutputKey", "ResNet18", "build_model",
    "check_double_backward", "find_inplace_modules", "is_user_factory", "model_options",
    "model_spec", "out_of_place_activations", "probe_model", "resolve_model_kwargs",
]


def is_user_factory(name: str) -> bool:
    """True for `package.module:function` names (user factories), False for built-in names."""
    return ":" in name


@contextlib.contextmanager
def _cwd_on_path() -> Iterator[None]:
    # The `mumis` console script does not put the working directory on sys.path (python -m
    # does); users expect `mymodels:net` next to them to import either way.
    cwd = os.getcwd()
    added = cwd not in sys.path and "" not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        yield
    finally:
        if added:
            with contextlib.suppress(ValueError):
                sys.path.remove(cwd)


def _import_factory(spec: str) -> ModelFactory:
    module_name, _, attr = spec.partition(":")
    parts = [*module_name.split("."), *attr.split(".")]
    if not module_name or not attr or not all(p.isidentifier() for p in parts):
        raise ModelError(f"model {spec!r}: a user factory is written package.module:function "
                         "(absolute module path, Python identifiers)")
    try:
        with _cwd_on_path():
            obj: Any = importlib.import_module(module_name)
    except ImportError as e:
        raise ModelError(
            f"model {spec!r}: cannot import module {module_name!r} ({e}); make sure it is "
            "installed or on PYTHONPATH"
        ) from None
    except Exception as e:  # noqa: BLE001  the user's module failed while it ran: name it
        msg = str(e).splitlines()[0] if str(e) else ""
        raise ModelError(f"model {spec!r}: importing module {module_name!r} failed "
                         f"({type(e).__name__}: {msg}); fix that module") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ModelError(f"model {spec!r}: module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ModelError(f"model {spec!r}: {attr!r} is not callable; give a function returning an nn.Module")
    return obj


def model_options(name: str) -> dict[str, Any]:
    """The keyword options of a built-in model and their defaults (e.g. {'hidden': (256, 256)})."""
    cls = MODELS.get(name)
    fixed = {"input_shape", "num_classes", "mean", "std"}
    return {
        p.name: p.default
        for p in inspect.signature(cls).parameters.values()
        if p.name not in fixed and p.kind is p.KEYWORD_ONLY
    }


def _coerce_option(model: str, key: str, value: Any, default: Any) -> Any:
    """Convert a --set value to the option's type (`hidden=512,256` -> (512, 256))."""
    if isinstance(default, (tuple, list)):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        elif not isinstance(value, (tuple, list)):
            value = [value]
        try:
            return tuple(int(v) for v in value)
        except (TypeError, ValueError):
            raise ModelError(f"model {model!r}: option {key!r} expects integers like 256,128, "
                             f"got {value!r}") from None
    if isinstance(default, int) and not isinstance(default, bool):
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ModelError(f"model {model!r}: option {key!r} expects an integer, got {value!r}") from None
    return value


def resolve_model_kwargs(name: str, kwargs: dict[str, Any] | None) -> dict[str, Any]:
    """Check and convert model options (`{'hidden': '512,256'}` -> `{'hidden': (512, 256)}`).

    User factories' options are passed through as given (their signature is checked when built).

    Raises:
        ConfigError: unknown built-in model name.
        ModelError: an unknown option or a value of the wrong type.
    """
    kwargs = dict(kwargs or {})
    if is_user_factory(name):
        return kwargs
    options = model_options(name)
    unknown = [k for k in kwargs if k not in options]
    if unknown:
        from ..registry import did_you_mean

        valid = ", ".join(options) or "none"
        raise ModelError(
            f"unknown option {unknown[0]!r} for model {name!r}.{did_you_mean(unknown[0], list(options))} "
            f"Valid options: {valid}"
        )
    return {k: _coerce_option(name, k, v, options[k]) for k, v in kwargs.items()}


def _build_builtin(name: str, kwargs: dict[str, Any], **fixed: Any) -> nn.Module:
    cls = MODELS.get(name)
    kw = resolve_model_kwargs(name, kwargs)
    try:
        return cls(**fixed, **kw)
    except ModelError:
        raise
    except (TypeError, ValueError) as e:
        raise ModelError(f"cannot build model {name!r} with options {kw}: {e}") from None


def _build_user(spec: str, kwargs: dict[str, Any], *, mean: Sequence[float],
                std: Sequence[float], **fixed: Any) -> nn.Module:
    fn = _import_factory(spec)
    call = dict(fixed, **kwargs)
    try:
        params: Mapping[str, inspect.Parameter] = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        params = {}
    # Pass normalisation only to factories that ask for it by name; others get [0, 1] inputs.
    if "mean" in params and "std" in params:
        call.update(mean=list(mean), std=list(std))
    if params:
        try:
            inspect.signature(fn).bind(**call)
        except TypeError as e:
            raise ModelError(
                f"model {spec!r} cannot be called as {spec.partition(':')[2]}(input_shape=..., "
                f"num_classes=..., **options): {e}"
            ) from None
    model = fn(**call)
    if not isinstance(model, nn.Module):
        raise ModelError(f"model {spec!r} returned {type(model).__name__}, not a torch.nn.Module")
    return model


def build_model(
    name: str,
    *,
    input_shape: Sequence[int],
    num_classes: int,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    seed: int | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a model by registry name or from a user factory `package.module:function`.

    Args:
        name: `mlp`, `cnn`, `resnet18` or `package.module:function`. A user factory is called
            as `fn(input_shape=..., num_classes=..., **kwargs)` (plus `mean=`, `std=` when its
            signature names both) and must return an `nn.Module` taking [0, 1] inputs.
        input_shape: shape of one sample, e.g. (1, 28, 28).
        num_classes: number of logits K.
        mean, std: per-channel normalisation (default: none, i.e. 0 and 1).
        seed: when given, weights are initialised under a forked, seeded global RNG, so the
            result depends only on `seed` and the caller's RNG state is untouched.
        **kwargs: model options (see `model_options(name)`), e.g. `hidden=(512,)`, `width=32`.

    Returns:
        The model (CPU, train mode).

    Raises:
        ConfigError: unknown built-in name (with did-you-mean).
        ModelError: bad options, a factory that cannot be imported or called, or that does not
            return an nn.Module.
    """
    shape = tuple(int(s) for s in input_shape)
    if not shape or min(shape) < 1 or int(num_classes) < 2:
        raise ModelError(f"model {name!r}: need a non-empty input shape and at least 2 classes, "
                         f"got input_shape={shape}, num_classes={num_classes}")
    channels = shape[0]
    mean = list(mean) if mean is not None else [0.0] * channels
    std = list(std) if std is not None else [1.0] * channels
    fixed = {"input_shape": shape, "num_classes": int(num_classes)}

    def make() -> nn.Module:
        if is_user_factory(name):
            return _build_user(name, kwargs, mean=mean, std=std, **fixed)
        return _build_builtin(name, kwargs, mean=mean, std=std, **fixed)

    if seed is None:
        return make()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return make()


def model_spec(
    name: str,
    *,
    input_shape: Sequence[int],
    num_classes: int,
    mean: Sequence[float],
    std: Sequence[float],
    kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The `model` entry of a run's meta.json: everything `build_model` needs to rebuild it."""
    return to_jsonable({
        "name": name,
        "kwargs": dict(kwargs or {}),
        "input_shape": [int(s) for s in input_shape],
        "num_classes": int(num_classes),
        "normalisation": {"mean": [float(m) for m in mean], "std": [float(s) for s in std]},
    })

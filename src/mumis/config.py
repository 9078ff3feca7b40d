"""Strict, typed configuration: dataclasses built from dicts, YAML files and `key=value` strings.

A setting is declared once, with its help text and its allowed range, by `setting(...)`:

    lr: float = setting("learning rate", default=0.01, gt=0)

`build_config` converts each value to the field's type (a `Literal` lists the options) and then
checks the declared range, so every config reports a bad value in the same words:
"method 'jit': lr must be > 0, got -1.0".
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import types
import typing
from dataclasses import MISSING, dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import yaml

from .exceptions import ConfigError
from .registry import did_you_mean

C = TypeVar("C")


@dataclass(frozen=True)
class Range:
    """The allowed interval of a numeric setting (None = unbounded on that side)."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    note: str = ""  # e.g. "0 = full batch", appended in parentheses

    def __contains__(self, v: object) -> bool:
        if not isinstance(v, (int, float)):
            return True  # None (an optional setting) or a list: nothing to bound
        return ((self.ge is None or v >= self.ge) and (self.gt is None or v > self.gt)
                and (self.le is None or v <= self.le) and (self.lt is None or v < self.lt))

    def text(self) -> str:
        """The rule in words: '> 0', '>= 1', 'in [0, 1)'."""
        low = (f"[{self.ge:g}" if self.ge is not None else f"({self.gt:g}") if (
            self.ge is not None or self.gt is not None) else None
        high = (f"{self.le:g}]" if self.le is not None else f"{self.lt:g})") if (
            self.le is not None or self.lt is not None) else None
        if low and high:
            rule = f"in {low}, {high}"
        elif low:
            rule = f">= {self.ge:g}" if self.ge is not None else f"> {self.gt:g}"
        else:
            rule = f"<= {self.le:g}" if self.le is not None else f"< {self.lt:g}"
        return f"{rule} ({self.note})" if self.note else rule

    def outside(self) -> float:
        """A value just outside the range (for tests that feed every setting a bad value)."""
        if self.ge is not None:
            return self.ge - 1
        if self.gt is not None:
            return self.gt
        return (self.le + 1) if self.le is not None else float(self.lt or 0.0)


def setting(help: str, default: Any = MISSING, *, default_factory: Any = MISSING,  # noqa: A002
            ge: float | None = None, gt: float | None = None, le: float | None = None,
            lt: float | None = None, note: str = "") -> Any:
    """A dataclass field with its help text (shown by `mumis methods NAME`) and allowed range."""
    meta: dict[str, Any] = {"help": help}
    if (ge, gt, le, lt) != (None, None, None, None):
        meta["range"] = Range(ge=ge, gt=gt, le=le, lt=lt, note=note)
    if default_factory is not MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def redefault(parent: type, name: str, default: Any, *, help: str | None = None) -> Any:  # noqa: A002
    """A subclass config's field: the parent's setting `name` (help, range) with a new default."""
    f = {f.name: f for f in dataclasses.fields(parent)}[name]
    meta = {**f.metadata, **({"help": help} if help is not None else {})}
    return dataclasses.field(default=default, metadata=meta)


def field_range(f: dataclasses.Field[Any]) -> Range | None:
    """The declared range of a config field (None when it has none)."""
    r = f.metadata.get("range")
    return r if isinstance(r, Range) else None


def check_ranges(cfg: Any, what: str = "") -> None:
    """ConfigError for the first field of `cfg` outside its declared range, in one format."""
    for f in dataclasses.fields(cfg):
        r, value = field_range(f), getattr(cfg, f.name)
        if r is not None and value not in r:
            label = f"{what}: " if what else ""
            raise ConfigError(f"{label}{f.name} must be {r.text()}, got {value!r}")


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _coerce(name: str, value: Any, tp: Any) -> Any:
    """Convert `value` to type `tp` or raise ConfigError saying what was expected."""
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        if isinstance(value, str) and value.lower() in ("none", "null") and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(name, value, arg)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{name}: bad value {value!r}")
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices:
            raise ConfigError(
                f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}."
                f"{did_you_mean(str(value), [str(c) for c in choices])}"
            )
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"{name} must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{name} must be an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{name} must be a number, got {value!r}")
        out: float | None = None
        if isinstance(value, (int, float)):
            out = float(value)
        elif isinstance(value, str):
            with contextlib.suppress(ValueError):
                out = float(value)
        if out is None:
            raise ConfigError(f"{name} must be a number, got {value!r}")
        if not math.isfinite(out):  # inf / nan would only surface later as a diverged run
            raise ConfigError(f"{name} must be a finite number, got {value!r}; give a number such as 0.001")
        return out
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{name} must be a string, got {value!r}")
    if origin in (tuple, list):
        if isinstance(value, str):
            value = [v for v in value.split(",") if v]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{name} must be a list, got {value!r}")
        (arg, *_rest) = get_args(tp) or (Any,)
        items = [v if arg is Any else _coerce(name, v, arg) for v in value]
        return tuple(items) if origin is tuple else items
    return value


def build_config(cls: type[C], overrides: dict[str, Any] | None = None, *, what: str = "") -> C:
    """Build dataclass `cls` from its defaults and `overrides`, strictly.

    Unknown keys are an error listing the valid ones; values are converted to the field types
    and checked against the ranges declared with `setting`; a `validate()` method, if the class
    has one, then checks rules that join several fields.
    """
    overrides = dict(overrides or {})
    types_ = _field_types(cls)
    unknown = [k for k in overrides if k not in types_]
    if unknown:
        k = unknown[0]
        label = f" for {what}" if what else ""
        raise ConfigError(
            f"unknown setting {k!r}{label}.{did_you_mean(k, list(types_))} "
            f"Valid settings: {', '.join(types_)}"
        )
    kwargs = {k: _coerce(k, v, types_[k]) for k, v in overrides.items()}
    cfg = cls(**kwargs)
    check_ranges(cfg, what)
    validate = getattr(cfg, "validate", None)
    if callable(validate):
        validate()
    return cfg


def parse_set_args(pairs: list[str] | None) -> dict[str, Any]:
    """Parse CLI `--set key=value` strings; values are YAML scalars (`1e-4`, `true`, `a,b`)."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise ConfigError(f"--set expects key=value, got {pair!r}; for example --set lr=1e-4")
        key, raw = pair.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError(f"--set expects key=value, got {pair!r}")
        try:
            out[key] = yaml.safe_load(raw) if raw.strip() else ""
        except (yaml.YAMLError, ValueError, RecursionError):  # not a YAML scalar: keep the text
            out[key] = raw
    return out


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping with safe_load; a clear ConfigError when missing or malformed."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"config file {str(p)!r} is a folder; give the path of a YAML file")
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} not found; give the path of a YAML file")
    try:
        text = p.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"config file {str(p)!r} is not a text file (not UTF-8); give a YAML file") from None
    except OSError as e:
        raise ConfigError(f"config file {str(p)!r} cannot be read ({e.strerror or e}); give a readable "
                          "YAML file") from None
    if "\x00" in text:
        raise ConfigError(f"config file {str(p)!r} is a binary file, not YAML; give a YAML file")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {str(p)!r} is not valid YAML: {e}".splitlines()[0]) from None
    except (ValueError, TypeError, RecursionError) as e:  # e.g. a malformed timestamp, deep nesting
        raise ConfigError(f"config file {str(p)!r} is not valid YAML ({type(e).__name__}: {e})".splitlines()[0]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(p)!r} must hold a mapping of key: value")
    return data


def check_seed(seed: Any, name: str = "seed") -> int:
    """`seed` as an int; ConfigError unless it is a non-negative integer (numpy refuses others)."""
    import numbers

    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or int(seed) < 0:
        raise ConfigError(f"{name} must be a non-negative integer, got {seed!r}; for example {name}=0")
    return int(seed)


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A dataclass config as plain YAML/JSON-safe data (tuples become lists)."""
    d = dataclasses.asdict(cfg)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

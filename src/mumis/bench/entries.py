"""The grid's method entries and row labels (`methods:` of a bench config)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..exceptions import ConfigError, MumisError
from ..registry import did_you_mean

SCENARIO_KINDS = ("class", "subclass", "random", "indices")
#: Labels of the retrained oracle's rows and of the original model's (before unlearning);
#: not usable as method labels.
REFERENCE_LABEL = "retrain"
ORIGINAL_LABEL = "original"
#: Role of the further retrained models' rows (`retrain_seeds`).
FLOOR_ROLE = "floor"


def floor_label(seed: int) -> str:
    """The row of the model retrained with `seed` beside the oracle: "retrain (seed 1)"."""
    return f"{REFERENCE_LABEL} (seed {int(seed)})"


_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


@dataclass(frozen=True)
class MethodEntry:
    """One method of the grid: its label (row name), registered name and resolved settings."""

    label: str
    method: str
    settings: dict[str, Any]
    by_kind: dict[str, dict[str, Any]] = field(default_factory=dict)
    use_holdout: bool = True  # False (`holdout: false`): this row gets no holdout even if the bench has one

    def settings_for(self, kind: str) -> dict[str, Any]:
        """The settings of this method in a scenario of `kind` (class, subclass, random, indices)."""
        return {**self.settings, **self.by_kind.get(kind, {})}


def slug(text: str) -> str:
    """A file-name-safe form of a forget spec or label: `class:3,5` -> `class-3_5`."""
    s = text.replace(":", "-").replace(",", "_")
    return re.sub(r"[^A-Za-z0-9._+-]+", "-", s).strip("-") or "x"


def _err(path: str, msg: str) -> ConfigError:
    return ConfigError(f"bench config {path}: {msg}")


def _find_file(name: str, base: Path) -> Path:
    p = Path(name)
    if p.is_absolute() or not (base / p).is_file():
        return p  # absolute, or relative to the working directory
    return base / p


def _methods(v: Any, base: Path, path: str) -> list[MethodEntry]:
    """The `methods:` mapping (or list of names) as entries; ConfigError naming what is wrong."""
    if isinstance(v, list):
        if not all(isinstance(x, str) for x in v):
            raise _err(path, f"`methods` as a list must hold method names, got {v!r}")
        if len(set(v)) != len(v):
            raise _err(path, f"`methods` lists a method twice: {v!r}")
        v = {x: {} for x in v}
    if not isinstance(v, dict) or not v:
        raise _err(path, "`methods` must be a mapping of label -> settings (or a list of names)")
    out = []
    for label, entry in v.items():
        label = _check_label(str(label), path)
        if entry is None:
            entry = {}
        if not isinstance(entry, dict):
            raise _err(path, f"method {label!r}: settings must be a mapping, got {entry!r}")
        out.append(_entry(label, dict(entry), base, path))
    return out


def _check_label(label: str, path: str) -> str:
    if not _LABEL.match(label):
        raise _err(path, f"method label {label!r} must be letters, digits, '_', '-', '.' or '+'")
    if label == ORIGINAL_LABEL:
        raise _err(path, f"the label {ORIGINAL_LABEL!r} is the original model's row (no "
                         "unlearning); give the method another label")
    if label == REFERENCE_LABEL:
        raise _err(path, f"the label {REFERENCE_LABEL!r} is the retrained oracle's row; to run the "
                         f"`retrain` method give it another label, e.g. `retrain_method: {{method: retrain}}`")
    if slug(label).startswith(slug(floor_label(0)).rsplit("-", 1)[0]):
        raise _err(path, f"the label {label!r} looks like a further retrained model's row "
                         "(`retrain_seeds`); give the method another label")
    return label


def _entry(label: str, entry: dict[str, Any], base: Path, path: str) -> MethodEntry:
    """One method entry, its preset and `by_kind` settings resolved and checked."""
    from ..runs import resolve_method_settings

    method = entry.pop("method", None)
    preset = entry.pop("config", None)
    by_kind = entry.pop("by_kind", None) or {}
    use_holdout = entry.pop("holdout", True)
    if not isinstance(use_holdout, bool):
        raise _err(path, f"method {label!r}: `holdout` must be true or false (false: this row reads no "
                         f"holdout), got {use_holdout!r}")
    if method is not None and not isinstance(method, str):
        raise _err(path, f"method {label!r}: `method` must be a method name, got {method!r}")
    if preset is not None and not isinstance(preset, str):
        raise _err(path, f"method {label!r}: `config` must be a preset file path, got {preset!r}")
    if method is None and preset is None:
        method = label
    preset_path = _find_file(preset, base) if preset is not None else None
    try:
        name, settings = resolve_method_settings(method, preset_path, entry)
    except MumisError as e:
        raise _err(path, f"method {label!r}: {e}") from None
    if not isinstance(by_kind, dict):
        raise _err(path, f"method {label!r}: `by_kind` must map scenario kinds to settings, got {by_kind!r}")
    for kind, over in by_kind.items():
        if kind not in SCENARIO_KINDS:
            raise _err(path, f"method {label!r}: unknown scenario kind {kind!r} in `by_kind`."
                             f"{did_you_mean(str(kind), list(SCENARIO_KINDS))} Choose from: "
                             f"{', '.join(SCENARIO_KINDS)}")
        if not isinstance(over, dict):
            raise _err(path, f"method {label!r}: `by_kind: {kind}` must be a mapping of settings")
        try:
            resolve_method_settings(name, None, {**settings, **over})
        except MumisError as e:
            raise _err(path, f"method {label!r} (by_kind {kind}): {e}") from None
    return MethodEntry(label=label, method=name, settings=settings,
                       by_kind={str(k): dict(v) for k, v in by_kind.items()}, use_holdout=use_holdout)



"""Method name and settings of a run, from a preset file, a name and `--set` overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..exceptions import ConfigError


def load_method_file(path: str | Path) -> tuple[str | None, dict[str, Any]]:
    """Read a method settings file: a YAML mapping of settings, optionally with `method: NAME`.

    The presets in `configs/methods/` and the `config.yaml` of an unlearning run have this form.

    Returns:
        (method name or None, settings).
    Raises:
        ConfigError: missing or malformed file, or a `method` entry that is not a name.
    """
    from ..config import load_yaml

    data = load_yaml(path)
    method = data.pop("method", None)
    if method is not None and not isinstance(method, str):
        raise ConfigError(f"config file {str(path)!r}: `method` must be a method name, got {method!r}")
    return method, data


def resolve_method_settings(
    method: str | None, config_file: str | Path | None, overrides: dict[str, Any] | None
) -> tuple[str, dict[str, Any]]:
    """Method name and settings from --method, --config and --set (later wins), checked strictly.

    Raises:
        ConfigError: no method, a preset for another method, unknown settings or bad values.
    """
    from ..api import get_method
    from ..config import build_config

    settings: dict[str, Any] = {}
    if config_file is not None:
        file_method, settings = load_method_file(config_file)
        if method is None:
            method = file_method
        elif file_method is not None and file_method != method:
            raise ConfigError(
                f"config file {str(config_file)!r} is for method {file_method!r} but --method is "
                f"{method!r}; drop --method or use configs/methods/{method}.yaml"
            )
    if method is None:
        raise ConfigError("no method given; pass --method NAME (see `mumis methods`)")
    settings.update(overrides or {})
    cls = get_method(method)
    # Built here, before any data is loaded, so a bad key fails in a second.
    build_config(cls.Config, settings, what=f"method {method!r}")
    return method, settings

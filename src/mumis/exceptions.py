"""A small exception hierarchy. Each subclasses a builtin so callers can catch either.

`MumisError` subclasses that signal bad input (config, data, checkpoint, model) are turned
into one line and exit code 2 by the CLI; `UnlearningError` is a runtime failure (exit 1).
"""

from __future__ import annotations


class MumisError(Exception):
    """Base class of every error mumis raises on purpose."""


class ConfigError(MumisError, ValueError):
    """A setting is unknown, of the wrong type or out of range."""


class DataError(MumisError, ValueError):
    """A dataset, forget specification or manifest is missing, malformed or inconsistent."""


class CheckpointError(MumisError, ValueError):
    """A run directory is missing, incomplete, truncated or does not match what was asked."""


class ModelError(MumisError, ValueError):
    """A model cannot be built or does not support what a method needs (e.g. double backward)."""


class UnlearningError(MumisError, RuntimeError):
    """An unlearning run failed at run time."""


#: Errors caused by what the user gave us: the CLI reports them in one line with exit code 2.
USER_ERRORS = (ConfigError, DataError, CheckpointError, ModelError)

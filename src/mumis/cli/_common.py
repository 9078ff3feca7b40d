"""Flags shared by several verbs (each verb adds them with one line in its `add_parser`)."""

from __future__ import annotations

import argparse


def add_trust_model_code(p: argparse.ArgumentParser) -> None:
    """`--trust-model-code [FACTORY[,FACTORY]]`: the opt-in to import a run's user model code.

    Without it a run directory whose meta.json names `package.module:function` is refused, so
    that loading a checkpoint someone shared never runs code (see `checkpoint.load_checkpoint`).
    The value is True (any factory) or the trusted names as given.
    """
    p.add_argument(
        "--trust-model-code", nargs="?", const=True, default=False, metavar="FACTORY",
        help="allow importing the user model factory (package.module:function) that a run "
             "directory's meta.json names: runs that code, so only for checkpoints you trust; "
             "optionally only the named factory (default: refused)",
    )

"""Argument checks of the verbs. The output-path checks live in `mumis.runs.outputs` (the
library runs them too) and are re-exported here for the verbs."""

from __future__ import annotations

import argparse

from ..runs.outputs import check_output_dir, check_output_file

__all__ = ["check_output_dir", "check_output_file", "seed_type"]


def seed_type(text: str) -> int:
    """argparse `type=` for seeds: a non-negative integer (numpy's generators refuse others)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {value}")
    return value

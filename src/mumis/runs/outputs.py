"""Checks of output paths, made before any work so a bad `--out`, `--json` or `--plot` costs a
second, not a whole run, and fails with one line instead of an OSError after the work."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..exceptions import ConfigError

if TYPE_CHECKING:
    from ..utils import OutputKind


def _nearest_existing(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _probe_folder(folder: Path, flag: str, path: Path) -> None:
    """ConfigError unless a file can be created in `folder` (created and removed at once)."""
    if not folder.is_dir():
        raise ConfigError(f"{flag} {str(path)!r}: {str(folder)!r} is a file, not a folder; "
                          f"choose another {flag}")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise ConfigError(f"{flag} {str(path)!r} cannot be written ({e.strerror or type(e).__name__} "
                          f"in {str(folder)!r}); choose a writable {flag}") from None


def check_output_file(path: str | Path | None, flag: str) -> None:
    """Check that `path` can be written as a file (its missing parent folders are made later).

    Raises:
        ConfigError: `path` is a folder, lies under a file, or its folder is not writable.
    """
    if path is None:
        return
    p = Path(path)
    if str(path).strip() == "" or p.is_dir() or str(path).endswith(os.sep):
        example = "metrics.json" if flag == "--json" else "sensitivity.png" if flag == "--plot" else "FILE"
        raise ConfigError(f"{flag} {str(path)!r} is a folder (or empty); give a file name, "
                          f"e.g. {flag} {example}")
    if p.exists() and not os.access(p, os.W_OK):
        raise ConfigError(f"{flag} {str(path)!r} exists and is read-only; choose another {flag}")
    _probe_folder(_nearest_existing(p.parent), flag, p)


def check_output_dir(path: str | Path, flag: str = "--out") -> None:
    """Check that folder `path` could be created (or filled): not a file, under a writable folder.

    Whether an existing folder may be replaced is decided elsewhere (`--overwrite`).

    Raises:
        ConfigError: `path` is a file or lies under one, or cannot be created there.
    """
    p = Path(path)
    if str(path).strip() == "":
        raise ConfigError(f"{flag} is empty; give a folder name, e.g. {flag} runs/x")
    if p.exists() and not p.is_dir():
        raise ConfigError(f"{flag} {str(path)!r} is an existing file, not a folder; choose another "
                          f"{flag} (a new folder name)")
    _probe_folder(_nearest_existing(p.parent.resolve() if p.parent != p else p), flag, p)


def check_out(out: str | Path, overwrite: bool, *, protected: Sequence[str | Path | None] = (),
              kind: OutputKind = "run") -> None:
    """The output-folder check of every run: creatable here, and replaceable only with
    `overwrite` when it is a mumis output of `kind` and none of the `protected` paths it reads.

    Checked first so a taken `--out` fails at once; `staged_run_dir` checks again before writing.

    Raises:
        ConfigError: see `check_output_dir` and `utils.check_overwritable`.
    """
    from ..utils import check_overwritable

    check_output_dir(out)
    check_overwritable(out, overwrite=overwrite, protected=protected, kind=kind)

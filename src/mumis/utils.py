"""Small shared helpers: atomic file writes, run directories, devices, hashing, versions."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from .exceptions import ConfigError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write to a temp file in the same folder, then rename: readers never see half a file."""
    from . import staging

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging.remove_stale_tmp(path)  # left by a write killed before its rename
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=staging.tmp_prefix(path), suffix=".tmp")
    try:
        staging.lock_fd(fd)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file a normal mode
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def to_jsonable(obj: Any) -> Any:
    """Convert numpy / torch scalars and arrays, tuples and paths to JSON-safe values."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return to_jsonable(obj.detach().cpu().tolist())
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float) and not np.isfinite(obj):
        return None if np.isnan(obj) else (1e308 if obj > 0 else -1e308)
    return obj


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(to_jsonable(obj), indent=2, sort_keys=False) + "\n")


def read_json(path: str | Path) -> Any:
    from .exceptions import CheckpointError

    p = Path(path)
    try:
        return json.loads(p.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{str(p)!r} is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{str(p)!r} is not valid JSON ({e}); the run may be truncated") from None


#: What `--overwrite` may replace: an earlier output of the same verb (see `check_overwritable`).
OutputKind = Literal["run", "tune", "demo"]
_KIND_NAMES = {"run": "a run directory of `mumis train` or `mumis unlearn`",
               "tune": "a tuning folder of `mumis tune`", "demo": "a folder of `mumis demo`"}


def _is_tmp(name: str, files: Iterable[str]) -> bool:
    """A temp file of an atomic write of one of `files` (`.meta.json.<id>.tmp`), killed before its rename."""
    return name.endswith(".tmp") and any(name.startswith(f".{f}.") for f in files)


def _not_run_dir(path: Path) -> str | None:
    """None when `path` holds a mumis run and only the files mumis writes; else what is wrong."""
    from .checkpoint import META_FILE, READ_FORMATS, RUN_FILES

    meta = path / META_FILE
    if meta.is_symlink() or not meta.is_file():
        return f"has no {META_FILE}"
    try:
        fmt = json.loads(meta.read_text()).get("format")
    except (OSError, ValueError, AttributeError):
        fmt = None
    if fmt not in READ_FORMATS:
        return f"has a {META_FILE} that is not a mumis run description"
    for e in sorted(path.iterdir()):
        if e.is_symlink() or not e.is_file() or (e.name not in RUN_FILES and not _is_tmp(e.name, RUN_FILES)):
            return f"holds {e.name!r}, which mumis does not write into a run directory"
    return None


def _not_output(path: Path, kind: OutputKind) -> str | None:
    """None when `path` is an output of `kind` made entirely by mumis; else what is wrong."""
    if kind == "run":
        return _not_run_dir(path)
    marker, files = ("tuning.json", {"chosen.yaml"}) if kind == "tune" else ("demo.json", {"summary.txt"})
    if not (path / marker).is_file():
        return f"has no {marker}"
    for e in sorted(path.iterdir()):
        if e.is_symlink():
            return f"holds the symbolic link {e.name!r}"
        if e.is_file() and (e.name in files | {marker} or _is_tmp(e.name, files | {marker})):
            continue
        runs = sorted(e.iterdir()) if e.is_dir() and kind == "tune" and e.name == "points" else [e]
        for r in runs:  # a tuning folder's points/NNN and a demo's sub-folders are run directories
            why = _not_run_dir(r) if r.is_dir() and not r.is_symlink() else "is not a run directory"
            if why is not None:
                return f"holds {str(r.relative_to(path))!r}, which {why}"
    return None


def _real(path: str | Path) -> Path:
    return Path(os.path.realpath(path))  # no `~` expansion: a shell has done it, Path() does not


def check_overwritable(
    out: str | Path,
    *,
    overwrite: bool,
    protected: Iterable[str | Path | None] = (),
    kind: OutputKind = "run",
) -> None:
    """Refuse an `--out` that a run may not create or replace; call it before any work.

    A new or empty folder is always fine. `--overwrite` replaces only an earlier output of the
    same kind made entirely by mumis (`kind`): a run directory (meta.json of format mumis-run/1 or /2
    and only the files mumis writes), a tuning folder (tuning.json, chosen.yaml, points/ of run
    directories) or a demo folder (demo.json, summary.txt, run directories). Refused always: the
    working directory, home or any folder above them, a symbolic link, a file. Refused when it
    would be replaced: a folder that is, holds or lies inside a `protected` path (the checkpoint,
    reference or data being read). Paths are compared after resolving symbolic links.

    Raises:
        ConfigError: one line naming the folder and what to do instead.
    """
    out = Path(out)
    shown = str(out)
    if out.is_symlink():
        raise ConfigError(f"--out {shown!r} is a symbolic link; give the folder itself (or a new one)")
    real, cwd, home = _real(out), _real(os.getcwd()), _real(os.path.expanduser("~"))
    for place, what in ((cwd, "the working directory"), (home, "your home folder")):
        if real == place or real in place.parents:
            which = what if real == place else f"a folder above {what}"
            raise ConfigError(f"--out {shown!r} is {which}; mumis never writes a run there or replaces "
                              "it: give a new sub-folder, e.g. --out runs/NAME")
    if not out.exists():
        return
    if not out.is_dir():
        raise ConfigError(f"--out {shown!r} is a file, not a folder; choose another --out (mumis never "
                          "replaces a file)")
    if not any(out.iterdir()):
        return
    if not overwrite:
        raise ConfigError(f"output {shown!r} already exists and is not empty; choose another --out or "
                          "remove it (or pass --overwrite to replace an earlier run of this command)")
    for p in protected:
        if p is None or str(p) == "":
            continue
        rp = _real(p)
        if real == rp or real in rp.parents or rp in real.parents:
            rel = "is" if real == rp else ("holds" if real in rp.parents else "is inside")
            raise ConfigError(f"refusing to replace --out {shown!r}: it {rel} {str(p)!r}, which this run "
                              "reads; choose another --out")
    why = _not_output(out, kind)
    if why is not None:
        raise ConfigError(f"refusing to replace --out {shown!r}: it {why}, so it is not "
                          f"{_KIND_NAMES[kind]} (mumis replaces only its own earlier output); remove "
                          "it yourself or choose another --out")


def check_outside(path: str | Path | None, flag: str, protected: Iterable[str | Path | None]) -> None:
    """Refuse an output file (`--json`, `--plot`) that is, or lies inside, a path this run reads.

    Writing `--json runs/original/meta.json` would silently corrupt the checkpoint being read.

    Raises:
        ConfigError: one line naming the flag and the path it would write into.
    """
    if path is None:
        return
    real = _real(path)
    for p in protected:
        if p is None or str(p) == "":
            continue
        rp = _real(p)
        if real == rp or rp in real.parents:
            raise ConfigError(f"{flag} {str(path)!r} would write into {str(p)!r}, which this run reads; "
                              f"choose a {flag} path outside it")


@contextlib.contextmanager
def staged_run_dir(out: str | Path, *, overwrite: bool = False, kind: OutputKind = "run") -> Iterator[Path]:
    """Yield a staging folder that becomes `out` only if the block succeeds.

    On any error the staging folder is removed, so no half-written run directory is left that a
    later run could mistake for a good one; staging folders of runs killed outright are removed
    by the next run that writes beside them (`mumis.staging`). `overwrite` and `kind`: see `check_overwritable`.
    """
    out = Path(out)
    check_overwritable(out, overwrite=overwrite, kind=kind)
    out.parent.mkdir(parents=True, exist_ok=True)
    from . import staging

    staging.remove_stale_stages(out)  # debris of earlier runs killed with SIGKILL (see staging)
    with staging.new_stage(out, 0o777 & ~_umask()) as stage:
        try:
            yield stage
        except BaseException:
            staging.discard_stage(stage)
            raise
        try:  # again: `out` may have changed during a long run, and replacing it deletes it
            check_overwritable(out, overwrite=overwrite, kind=kind)
        except ConfigError:
            staging.discard_stage(stage)
            raise
        staging.commit_stage(stage, out)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """'auto' -> cuda if available else cpu; otherwise validate the name."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"unknown device {device!r}; use 'auto', 'cpu' or 'cuda[:N]'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} asked for but CUDA is not available; use 'cpu'")
    return dev


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a parameter-free model)."""
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def hash_arrays(*arrays: Any) -> str:
    """Content hash (sha256, hex) of a sequence of arrays / strings; stable across runs."""
    h = hashlib.sha256()
    for a in arrays:
        if isinstance(a, torch.Tensor):
            a = a.detach().cpu().numpy()
        if isinstance(a, np.ndarray):
            h.update(str(a.dtype).encode())
            h.update(str(a.shape).encode())
            h.update(np.ascontiguousarray(a).tobytes())
        else:
            h.update(repr(a).encode())
    return h.hexdigest()


def library_versions() -> dict[str, str]:
    import safetensors
    import sklearn

    from ._version import __version__

    return {
        "mumis": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
        "safetensors": getattr(safetensors, "__version__", "unknown"),
    }


def make_generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(int(seed))
    return g

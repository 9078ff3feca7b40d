"""Small shared helpers: atomic file writes, run directories, devices, hashing, versions."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .exceptions import ConfigError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write to a temp file in the same folder, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
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


@contextlib.contextmanager
def staged_run_dir(out: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a staging folder that becomes `out` only if the block succeeds.

    On any error the staging folder is removed, so no half-written run directory is left that a
    later run could mistake for a good one; staging folders of runs killed outright are removed
    by the next run towards the same `out` (`mumis.staging`).
    """
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not overwrite:
            raise ConfigError(
                f"output {str(out)!r} already exists and is not empty; "
                "choose another --out or remove it (or pass --overwrite)"
            )
    out.parent.mkdir(parents=True, exist_ok=True)
    from . import staging

    staging.remove_stale_stages(out)  # debris of earlier runs killed with SIGKILL (see staging)
    with staging.new_stage(out, 0o777 & ~_umask()) as stage:
        try:
            yield stage
        except BaseException:
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

    from . import __version__

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

"""A per-process cache of datasets and checkpoints, for the pipelines that read the same ones
many times (a bench grid, a tuning grid, the demo).

It is active only inside `caching()`: outside, every call loads afresh, so a single command never
sees data that changed on disk since an earlier call in the same process. A cached checkpoint is
keyed by its files' sizes and modification times (a model retrained in place is read again) and
handed out as a copy, so a caller that unlearns in place never changes the cached one. Datasets
are handed out as they are: callers treat a `DatasetBundle` as read-only.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn

    from ..checkpoint import TrustModelCode
    from ..data import DatasetBundle


@dataclass
class RunCache:
    """What one `caching()` block has loaded (and how often it loaded from disk)."""

    datasets: dict[tuple[str, str | None], DatasetBundle] = field(default_factory=dict)
    models: dict[tuple[Any, ...], tuple[nn.Module, dict[str, Any], bool]] = field(default_factory=dict)


_active: RunCache | None = None


@contextlib.contextmanager
def caching() -> Iterator[RunCache]:
    """Cache datasets and checkpoints until the block ends (nested blocks share the outer cache)."""
    global _active
    if _active is not None:
        yield _active
        return
    _active = RunCache()
    try:
        yield _active
    finally:
        _active = None


def load_dataset(name: str, data_dir: str | Path | None = None) -> DatasetBundle:
    """`mumis.data.load_dataset`, once per (name, folder) inside `caching()`."""
    from ..data import load_dataset as load

    if _active is None:
        return load(name, data_dir)
    key = (name, None if data_dir is None else str(Path(data_dir).resolve()))
    if key not in _active.datasets:
        _active.datasets[key] = load(name, data_dir)
    return _active.datasets[key]


def _files_key(run_dir: Path) -> tuple[Any, ...]:
    from ..checkpoint import META_FILE, WEIGHTS_FILE

    stamp = []
    for name in (META_FILE, WEIGHTS_FILE):
        st = (run_dir / name).stat()
        stamp += [st.st_size, st.st_mtime_ns]
    return (str(run_dir.resolve()), *stamp)


def load_checkpoint(
    run_dir: str | Path,
    device: str | torch.device = "cpu",
    *,
    trust_model_code: TrustModelCode = False,
    allow_nonfinite: bool = False,
) -> tuple[nn.Module, dict[str, Any]]:
    """`mumis.checkpoint.load_checkpoint`, read from disk once per run directory inside
    `caching()`; every call gets its own copy of the model and meta (same checks, same errors)."""
    import torch

    from ..checkpoint import check_model_code
    from ..checkpoint import load_checkpoint as load
    from ..utils import resolve_device

    path = Path(run_dir)
    if _active is None:
        return load(path, device, trust_model_code=trust_model_code, allow_nonfinite=allow_nonfinite)
    try:
        key = _files_key(path)
    except OSError:  # missing files: the loader says which, in its words
        return load(path, device, trust_model_code=trust_model_code, allow_nonfinite=allow_nonfinite)
    hit = _active.models.get(key)
    if hit is None:
        model, meta = load(path, "cpu", trust_model_code=trust_model_code, allow_nonfinite=allow_nonfinite)
        finite = all(bool(torch.isfinite(v).all()) for v in model.state_dict().values()
                     if v.is_floating_point())
        hit = _active.models[key] = (model, meta, finite)
    model, meta, finite = hit
    check_model_code(meta, str(path), trust_model_code)  # each caller's own opt-in counts
    if not finite and not allow_nonfinite:  # refused (or warned about) exactly as the loader does
        return load(path, device, trust_model_code=trust_model_code, allow_nonfinite=False)
    out = copy.deepcopy(model).to(resolve_device(device))
    out.eval()
    return out, copy.deepcopy(meta)

"""What a receipt describes, gathered from an unlearning run directory or from objects in memory.

`Sources` holds the models before and after, the forget samples and their indices, the unseen
samples the evidence compares them with, and the method's description. The same `Sources` feed
both writing a receipt and verifying one, so a verification recomputes exactly what was written.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..exceptions import CheckpointError, ConfigError, DataError
from .hashing import json_sha256, stable

Pair = tuple[torch.Tensor, torch.Tensor]
CONFIG_FILE = "config.yaml"
RESULT_FILE = "result.json"
#: Evaluations against a retrained model that a run directory may hold, in the order read.
EVALUATION_FILES = ("evaluation.json",)


class ChangedFile(CheckpointError):
    """A file the receipt describes can no longer be read: verification reports it as a mismatch
    (the file was changed), writing a receipt refuses it as bad input."""


@dataclass
class Sources:
    """Everything a receipt's payload is computed from."""

    before_state: dict[str, torch.Tensor]
    after_state: dict[str, torch.Tensor]
    before_model: nn.Module
    after_model: nn.Module
    forget: Pair
    forget_indices: np.ndarray | None  # training-set indices (None: the caller's own tensors)
    unseen: Pair
    unseen_source: str
    method: str
    settings: dict[str, Any]
    seed: int
    uses_retain: bool
    n_retain: int | None
    forget_info: dict[str, Any] = field(default_factory=dict)  # spec, manifest hash, classes
    dataset: dict[str, Any] | None = None
    run: dict[str, Any] | None = None  # meta hash and result fields (run directories only)
    versions: dict[str, Any] = field(default_factory=dict)
    reference: dict[str, Any] | None = None
    previous: dict[str, Any] | None = None  # the original checkpoint's own receipt (a chain)
    index_file: Path | None = None  # the indices:FILE of the forget spec, re-read by verify
    locations: dict[str, str | None] = field(default_factory=dict)  # paths; never hashed


def requires_retain(method: str) -> bool | None:
    """The method's declared need for remaining data; None for a name mumis does not know."""
    from ..api import get_method

    try:
        return bool(get_method(method).requires_retain)
    except ConfigError:
        return None


def meta_digest_view(meta: dict[str, Any]) -> dict[str, Any]:
    """meta.json without its creation time: the part two identical runs share."""
    return {k: v for k, v in meta.items() if k != "created"}


def _read_state(run_dir: Path, changed: bool) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from ..checkpoint import WEIGHTS_FILE

    path = run_dir / WEIGHTS_FILE
    err = ChangedFile if changed else CheckpointError
    if not path.is_file():
        raise err(f"{str(path)!r} is missing")
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise err(f"{str(path)!r} cannot be read ({reason})") from None


def _load_model(run_dir: Path, trust_model_code: Any, changed: bool) -> nn.Module:
    from ..checkpoint import load_checkpoint

    try:
        with warnings.catch_warnings():  # non-finite weights are evidence too: measured, not refused
            warnings.simplefilter("ignore", RuntimeWarning)
            return load_checkpoint(run_dir, trust_model_code=trust_model_code, allow_nonfinite=True)[0]
    except CheckpointError as e:
        if changed and "--trust-model-code" not in str(e):
            raise ChangedFile(str(e)) from None
        raise


def choose_unseen(splits: Any, manifest: dict[str, Any]) -> tuple[Pair, str]:
    """Unseen samples of the forget set's classes: the run's holdout (training-distribution
    samples no model of the run trained on; `Splits.holdout`) where it holds samples of those
    classes, else the test split (class-wise forgetting: the forgotten classes' test samples; the
    holdout handed to methods leaves those classes out)."""
    classes = torch.unique(splits.forget[1])
    holdout = getattr(splits, "holdout", None) if manifest.get("holdout") else None
    if holdout is not None:
        hx, hy = holdout
        keep = torch.isin(hy, classes)
        if bool(keep.any()):
            return (hx[keep], hy[keep]), "holdout split, samples of the forget set's classes"
    x, y = splits.test
    keep = torch.isin(y, classes)
    return (x[keep], y[keep]), "test split, samples of the forget set's classes"


def _reference(run_dir: Path, result: dict[str, Any]) -> dict[str, Any] | None:
    """The run's evaluation against a retrained model (`result.json` `evaluation`, else
    evaluation.json), reduced to the distances a receipt states."""
    from ..utils import read_json

    found: tuple[str, Any] | None = None
    if isinstance(result.get("evaluation"), dict):
        found = (f"{RESULT_FILE} evaluation", result["evaluation"])
    for name in EVALUATION_FILES:
        if found is None and (run_dir / name).is_file():
            found = (name, read_json(run_dir / name))
    if found is None or not isinstance(found[1].get("reference"), dict):
        return None
    source, ev = found
    model = ev.get("model") or {}
    diff = ev.get("diff") or {}
    return stable({
        "source": source, "sha256": json_sha256(stable(ev)),
        "gap_paper": ev.get("gap_paper"), "gap_salun": ev.get("gap_salun"),
        "kl_to_retrain": model.get("kl_to_retrain"), "js_to_retrain": model.get("js_to_retrain"),
        "abs_diff": {k: v for k, v in sorted(diff.items())
                     if k.endswith("_acc") or k.startswith("mia_")},
        "floor": "not measured: needs retrained models of several seeds",
    })


def _parent_dir(run: Path, meta: dict[str, Any], original: str | Path | None, meta_changed: bool) -> Path:
    """The checkpoint the run unlearned from: `original`, else meta.json's `parent`."""
    from ..checkpoint import read_meta

    parent = original if original is not None else meta.get("parent")
    if parent is None:
        raise CheckpointError(f"{str(run)!r} does not record the checkpoint it came from; pass the original "
                              "run directory (--original DIR)")
    try:
        read_meta(parent)  # a clear line when it moved
    except CheckpointError as e:
        if meta_changed and original is None:  # meta.json's parent entry was edited
            raise ChangedFile(f"the original checkpoint named by the changed meta.json cannot be read ({e})") from None
        raise
    return Path(parent)


def _previous_receipt(parent: Path) -> dict[str, Any] | None:
    """The request id and payload hash of the original checkpoint's receipt, when it is itself
    an unlearning run with one: the link of a chain of requests."""
    from ..utils import read_json

    path = parent / "receipt.json"
    if not path.is_file():
        return None
    rec = read_json(path)
    payload = rec.get("payload") if isinstance(rec, dict) else None
    if not isinstance(payload, dict):
        raise CheckpointError(f"{str(path)!r} is not a mumis receipt; remove it or write it again with "
                              f"`mumis verify {parent} --write`")
    return {"request_id": payload.get("request_id"), "payload_sha256": rec.get("payload_sha256")}


def _index_file(spec_text: Any) -> Path | None:
    """The FILE of an `indices:FILE` forget spec (None for other specs)."""
    from ..data import parse_forget_spec

    if not isinstance(spec_text, str):
        return None
    try:
        spec = parse_forget_spec(spec_text)
    except DataError:
        return None
    return Path(spec.path) if spec.kind == "indices" else None


def run_sources(
    run_dir: str | Path, *, original: str | Path | None = None, data_dir: str | Path | None = None,
    trust_model_code: Any = False, meta_changed: bool = False,
) -> Sources:
    """Gather a receipt's sources from an unlearning run directory.

    Args:
        run_dir: the `mumis unlearn --out` folder.
        original: the checkpoint it unlearned from (default: meta.json's `parent`).
        data_dir: the data folder (default: the one meta.json records).
        trust_model_code: as for `checkpoint.load_checkpoint`.
        meta_changed: (verification) meta.json no longer matches the receipt, so unreadable data
            is a consequence of that change, raised as `ChangedFile`.
    Raises:
        CheckpointError: not an unlearning run directory, a missing original checkpoint or file;
            `ChangedFile` for the run's own weights that cannot be read.
        DataError: the data cannot be loaded or no longer fits the run's split.
    """
    from ..checkpoint import load_run_data, read_meta
    from ..config import load_yaml
    from ..data import make_splits
    from ..utils import read_json

    run = Path(run_dir)
    meta = read_meta(run)
    if meta.get("kind") != "unlearn":
        raise CheckpointError(f"{str(run)!r} is a {meta.get('kind')!r} run; a receipt describes an unlearning "
                              "run: give the --out folder of `mumis unlearn`")
    try:  # the run's own files: a verification reports them as changed
        result = read_json(run / RESULT_FILE)
        settings = load_yaml(run / CONFIG_FILE)
    except (CheckpointError, ConfigError) as e:
        raise ChangedFile(f"{str(run)!r}: {e}") from None
    if not isinstance(result, dict):
        raise ChangedFile(f"{str(run / RESULT_FILE)!r} does not hold a JSON object")
    settings.pop("method", None)
    parent = _parent_dir(run, meta, original, meta_changed)
    after_state = _read_state(run, changed=True)
    before_state = _read_state(parent, changed=False)
    try:
        bundle, manifest = load_run_data(meta, data_dir=data_dir)
        splits = make_splits(bundle, manifest)
    except (DataError, CheckpointError) as e:
        if meta_changed:
            raise ChangedFile(f"the run's data cannot be loaded from the changed meta.json ({e})") from None
        raise
    unseen, unseen_source = choose_unseen(splits, meta.get("manifest") or {})
    spec_text = meta.get("forget_spec")
    method = str(result.get("method"))
    uses_retain = bool(result.get("uses_retain"))
    return Sources(
        before_state=before_state, after_state=after_state,
        before_model=_load_model(parent, trust_model_code, changed=False),
        after_model=_load_model(run, trust_model_code, changed=True),
        forget=splits.forget, forget_indices=manifest.forget, unseen=unseen, unseen_source=unseen_source,
        method=method, settings=settings, seed=int(result.get("seed", meta.get("seed", 0))),
        uses_retain=uses_retain, n_retain=len(splits.retain[1]) if uses_retain else None,
        forget_info={"spec": spec_text, "kind": manifest.kind, "manifest_hash": manifest.hash,
                     "split_seed": manifest.seed, "forgotten_classes": list(manifest.forgotten_classes)},
        dataset={"name": bundle.name, "label_space": manifest.label_space,
                 "num_classes": manifest.num_classes, "n_train": len(bundle.y_train),
                 "n_test": len(bundle.y_test)},
        run={"meta_sha256": json_sha256(meta_digest_view(meta)), "kind": meta.get("kind"),
             "parent_kind": meta.get("parent_kind"),
             **{k: result.get(k) for k in ("steps", "stop_reason", "status", "weights_changed")}},
        versions=dict(meta.get("versions") or {}),
        reference=_reference(run, result),
        previous=_previous_receipt(parent),
        index_file=_index_file(spec_text),
        locations={"run_dir": str(run.resolve()), "original": str(parent.resolve()),
                   "data_dir": None if data_dir is None else str(Path(data_dir).resolve())},
    )


def memory_sources(
    result: Any, *, original: nn.Module, forget: Any, unseen: Any, seed: int = 0,
    forget_indices: Any = None, unseen_source: str = "caller's unseen samples",
) -> Sources:
    """Sources from `mumis.unlearn`'s result, the model it started from and the caller's data."""
    from ..api import UnlearnResult, to_tensors
    from ..utils import library_versions

    if not isinstance(result, UnlearnResult):
        raise ConfigError(f"result must be what mumis.unlearn returned (an UnlearnResult), got "
                          f"{type(result).__name__}; for a run directory pass its path")
    if not isinstance(original, nn.Module):
        raise ConfigError(f"original must be the model before unlearning (an nn.Module), got "
                          f"{type(original).__name__}")
    fx, fy = to_tensors(forget, "forget")
    ux, uy = to_tensors(unseen, "unseen")
    idx = None if forget_indices is None else np.asarray(forget_indices, dtype=np.int64).reshape(-1)
    if idx is not None and len(idx) != len(fy):
        raise DataError(f"forget_indices lists {len(idx)} indices for {len(fy)} forget samples; give one each")
    needs = requires_retain(result.method)

    def state(m: nn.Module) -> dict[str, torch.Tensor]:
        return {k: v.detach().to("cpu").contiguous() for k, v in m.state_dict().items()}

    return Sources(
        before_state=state(original), after_state=state(result.model), before_model=original,
        after_model=result.model, forget=(fx.cpu(), fy.cpu()), forget_indices=idx, unseen=(ux.cpu(), uy.cpu()),
        unseen_source=unseen_source, method=result.method, settings=dict(result.config), seed=int(seed),
        uses_retain=bool(needs), n_retain=None,
        forget_info={}, run={"steps": result.steps, "stop_reason": result.stop_reason},
        versions=library_versions(),
    )

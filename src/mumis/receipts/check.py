"""Verify a receipt: recompute every hash and the evidence from the files and the data, and name
each difference in one line."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ..exceptions import DataError
from .hashing import indices_sha256, json_sha256
from .payload import NOT_RECOMPUTED, build_payload
from .sources import ChangedFile, Sources, memory_sources, meta_digest_view, run_sources
from .store import read_receipt

#: Floats are recomputed to this relative tolerance (receipts round to 6 significant digits).
REL_TOL = 1e-4
#: What a difference in each payload section means.
_WHY = {
    "forgotten": "the forget set changed (the data files, the split in meta.json or the index file)",
    "dataset": "the dataset changed",
    "model_before": "the original checkpoint's weights changed",
    "model_after": "model.safetensors changed",
    "method": "the method, its settings or its seed changed (config.yaml, result.json)",
    "run": "meta.json or result.json changed",
    "versions": "the versions recorded in meta.json changed",
    "evidence": "the evidence recomputed from the models and the data differs",
    "reference": "the reference evaluation changed",
    "verdict": "the verdict recomputed from the evidence differs",
    "request_id": "the request id recomputed from the hashes differs",
    "previous_receipt": "the original checkpoint's receipt changed",
}
_LEAF_WHY = {"run.meta_sha256": "meta.json changed"}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, (int, float)) and not isinstance(b, bool) \
            or isinstance(b, float) and isinstance(a, (int, float)) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=REL_TOL, abs_tol=1e-9)
    return bool(a == b)


def _leaves(a: Any, b: Any, path: str, out: list[tuple[str, Any, Any]]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            _leaves(a.get(k), b.get(k), f"{path}.{k}" if path else k, out)
    elif not _same(a, b):
        out.append((path, a, b))


def _show(v: Any) -> str:
    if isinstance(v, str) and len(v) == 64 and all(c in "0123456789abcdef" for c in v):
        return v[:12] + "..."
    text = json.dumps(v, sort_keys=True)
    return text if len(text) <= 60 else text[:57] + "..."


def diff_payloads(recorded: dict[str, Any], fresh: dict[str, Any]) -> list[str]:
    """One line per differing value (the evidence's differences in one line)."""
    diffs: list[tuple[str, Any, Any]] = []
    for key in sorted(set(recorded) | set(fresh)):
        if key == "previous_receipt" and recorded.get(key) is None:
            continue  # the original got its receipt later: no link was recorded, none is checked
        if key not in NOT_RECOMPUTED:
            _leaves(recorded.get(key), fresh.get(key), key, diffs)
    lines: list[str] = []
    evidence = [d for d in diffs if d[0].startswith("evidence.")]
    for path, a, b in diffs:
        if path.startswith("evidence."):
            continue
        why = _LEAF_WHY.get(path, _WHY.get(path.split(".")[0], "a value differs"))
        lines.append(f"{path}: the receipt says {_show(a)}, recomputed {_show(b)} ({why})")
    if evidence:
        shown = "; ".join(f"{p.removeprefix('evidence.')} {_show(a)} -> {_show(b)}" for p, a, b in evidence[:3])
        more = f" and {len(evidence) - 3} more" if len(evidence) > 3 else ""
        lines.append(f"evidence: {len(evidence)} values differ from the receipt ({shown}{more}): {_WHY['evidence']}")
    return lines


def _index_file_lines(s: Sources, recorded: dict[str, Any]) -> list[str]:
    """The forget spec's `indices:FILE`, re-read: it must still list the forgotten indices."""
    from ..data.forget import read_index_file

    if s.index_file is None or not s.index_file.exists():
        return []
    want = (recorded.get("forgotten") or {}).get("indices_sha256")
    try:
        got = indices_sha256(read_index_file(s.index_file))
    except DataError as e:
        return [f"index file {str(s.index_file)!r} can no longer be read as the forget set ({e})"]
    if got != want:
        return [f"index file {str(s.index_file)!r} now lists other indices than the receipt's forget set "
                "(the index file changed)"]
    return []


def _recompute(s: Sources, payload: dict[str, Any]) -> list[str]:
    ev = payload.get("evidence") or {}
    fresh = build_payload(
        s, writer=payload.get("receipt_writer"), seed=int(ev.get("seed", 0)),
        sensitivity_samples=int((ev.get("sensitivity") or {}).get("n_per_split", 200)))
    return diff_payloads(payload, fresh) + _index_file_lines(s, payload)


def _hash_lines(receipt: dict[str, Any]) -> list[str]:
    if json_sha256(receipt["payload"]) != receipt.get("payload_sha256"):
        return ["receipt.json: the payload no longer matches its payload_sha256 (the receipt was edited)"]
    return []


def verify_receipt(
    run_dir: str | Path, *, original: str | Path | None = None, data_dir: str | Path | None = None,
    trust_model_code: Any = False,
) -> list[str]:
    """Check an unlearning run directory against its receipt.json.

    Recomputes the payload (hashes of the models before and after, of the forget indices and
    samples, of meta.json; the method's description; the evidence; the verdict) from the files and
    the data, and compares it with the receipt, floats to a relative 1e-4.

    Args:
        run_dir: the run directory holding receipt.json.
        original: the checkpoint it unlearned from (default: meta.json's `parent`).
        data_dir: the data folder (default: the one meta.json records).
        trust_model_code: as for `checkpoint.load_checkpoint`.
    Returns:
        One line per mismatch; empty when the receipt holds.
    Raises:
        CheckpointError: not a run directory, no (readable) receipt, the original checkpoint missing.
        DataError: the data cannot be loaded (while meta.json is unchanged: point data_dir at it).
    """
    from ..checkpoint import read_meta

    run = Path(run_dir)
    receipt = read_receipt(run)
    payload = receipt["payload"]
    lines = _hash_lines(receipt)
    meta_changed = json_sha256(meta_digest_view(read_meta(run))) != (payload.get("run") or {}).get("meta_sha256")
    try:
        s = run_sources(run, original=original, data_dir=data_dir, trust_model_code=trust_model_code,
                        meta_changed=meta_changed)
    except ChangedFile as e:
        return lines + (["run.meta_sha256: meta.json changed"] if meta_changed else []) + [
            f"{e} (changed since the receipt was written)"]
    return lines + _recompute(s, payload)


def verify_memory(receipt: dict[str, Any], *, result: Any, original: Any, forget: Any, unseen: Any,
                  forget_indices: Any = None) -> list[str]:
    """Check a receipt made by `mumis.receipt(result, ...)` against the objects in memory."""
    from ..exceptions import ConfigError

    if not isinstance(receipt, dict) or not isinstance(receipt.get("payload"), dict):
        raise ConfigError("receipt must be the dict mumis.receipt returned (with a payload)")
    payload = receipt["payload"]
    s = memory_sources(result, original=original, forget=forget, unseen=unseen,
                       seed=int((payload.get("method") or {}).get("seed", 0)), forget_indices=forget_indices,
                       unseen_source=str(((payload.get("evidence") or {}).get("unseen") or {}).get(
                           "source", "caller's unseen samples")))
    return _hash_lines(receipt) + _recompute(s, payload)

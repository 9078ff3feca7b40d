"""The hashed part of a receipt, computed from `Sources`.

The payload holds no time and no path, so two identical runs give identical payloads (and the
same request id); `receipt.json` keeps the creation time and the folders outside of it.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import torch

from ..utils import to_jsonable
from .evidence import compute_evidence, verdict
from .hashing import indices_sha256, json_sha256, samples_sha256, stable, state_sha256
from .sources import Sources, requires_retain

FORMAT = "mumis-receipt/1"
#: Payload sections verification takes from the receipt instead of recomputing (who wrote it).
NOT_RECOMPUTED = ("receipt_writer",)


def model_summary(state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Canonical hash of a state dict and its size."""
    return {"sha256": state_sha256(state), "tensors": len(state),
            "elements": int(sum(t.numel() for t in state.values()))}


def git_commit() -> str | None:
    """The commit of the mumis source tree when it is a git checkout (read from .git, no
    subprocess); None otherwise."""
    here = Path(__file__).resolve()
    for root in here.parents[:4]:
        git = root / ".git"
        if not git.is_dir():
            continue
        with contextlib.suppress(OSError, UnicodeDecodeError):
            head = (git / "HEAD").read_text().strip()
            if not head.startswith("ref: "):
                return head or None
            ref = head[5:]
            if (git / ref).is_file():
                return (git / ref).read_text().strip() or None
            for line in (git / "packed-refs").read_text().splitlines():
                if line.endswith(" " + ref):
                    return line.split()[0]
        return None
    return None


def receipt_writer() -> dict[str, Any]:
    from .._version import __version__

    out: dict[str, Any] = {"mumis": __version__}
    commit = git_commit()
    if commit is not None:
        out["git_commit"] = commit
    return out


def data_given(s: Sources) -> dict[str, Any]:
    """What the method was handed: the forget set only, or the retain set too."""
    n = len(s.forget[1])
    if s.uses_retain:
        retain = f" and the retain set ({s.n_retain} samples)" if s.n_retain is not None else " and remaining data"
        text = f"the forget set ({n} samples){retain}"
    else:
        text = f"the forget set only ({n} samples); no remaining data"
    return {"forget": True, "retain": s.uses_retain, "text": text}


def request_id(payload: dict[str, Any]) -> str:
    """Derived from the content hashes only: what was forgotten, from which model, into which
    model, how; identical requests on identical models give the same id."""
    key = {k: payload[k] for k in ("forgotten", "model_before", "model_after", "dataset")}
    key["method"] = {k: payload["method"][k] for k in ("name", "settings", "seed")}
    return "req-" + json_sha256(key)[:32]


def build_payload(s: Sources, *, writer: dict[str, Any] | None = None, seed: int = 0,
                  sensitivity_samples: int = 200) -> dict[str, Any]:
    """The receipt's payload (JSON-ready, floats rounded) for these sources.

    Args:
        s: the sources.
        writer: the `receipt_writer` section (default: this code's version and commit).
        seed: seed of the evidence's subsamples and folds.
        sensitivity_samples: samples per side for the sensitivity medians.
    """
    forgotten: dict[str, Any] = {
        **s.forget_info, "n": len(s.forget[1]),
        "content_sha256": samples_sha256(*s.forget),
        "indices_sha256": None if s.forget_indices is None else indices_sha256(s.forget_indices),
    }
    evidence = compute_evidence(s.before_model, s.after_model, s.forget, s.unseen,
                                unseen_source=s.unseen_source, seed=seed,
                                sensitivity_samples=sensitivity_samples)
    payload: dict[str, Any] = {
        "forgotten": forgotten,
        "dataset": s.dataset,
        "model_before": model_summary(s.before_state),
        "model_after": model_summary(s.after_state),
        "method": {"name": s.method, "settings": to_jsonable(s.settings), "seed": s.seed,
                   "requires_retain": requires_retain(s.method), "data_given": data_given(s)},
        "run": s.run,
        "versions": s.versions,
        "evidence": evidence,
        "reference": s.reference,
        "previous_receipt": s.previous,
        "verdict": verdict(evidence, s.method, class_forgetting=s.forget_info.get("kind") == "class"),
        "receipt_writer": writer if writer is not None else receipt_writer(),
    }
    payload = stable(payload)
    payload["request_id"] = request_id(payload)
    return payload

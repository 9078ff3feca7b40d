"""Deletion receipts: what one unlearning request forgot, from which model, how, with what evidence.

    mumis verify runs/mumis --write     # write receipt.json + receipt.html for a run
    mumis verify runs/mumis             # 0: the receipt holds; 1: one line per mismatch

A receipt's payload holds canonical hashes (the models' tensors, the forget indices and samples,
meta.json), the method, its settings and the data it was given, and evidence computed without a
retrained model; `payload_sha256` covers all of it. It is tamper-evident against the files, not
signed: publish or sign the payload hash to make it evidence for someone else. docs/receipts.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .check import verify_memory, verify_receipt
from .hashing import canonical_json, indices_sha256, json_sha256, samples_sha256, state_sha256
from .payload import FORMAT
from .sources import memory_sources
from .store import HTML_FILE, RECEIPT_FILE, assemble, make_receipt, read_receipt, receipt_text, write_receipt


def receipt(target: Any, **kwargs: Any) -> dict[str, Any]:
    """A deletion receipt, for a run directory or for your own unlearning loop.

    `receipt("runs/mumis", original=None, data_dir=None, ...)` writes receipt.json and receipt.html
    into the run directory (`write_receipt`). `receipt(result, original=model, forget=(x, y),
    unseen=(x, y), seed=0, forget_indices=None)` takes what `mumis.unlearn` returned, the model it
    started from, the forget samples, unseen samples of the same classes, the seed given to
    `mumis.unlearn` and optionally the forget samples' indices in your dataset, and returns the
    dict (write it with `receipt_text`). Either way the evidence needs no retrained model.
    """
    if isinstance(target, (str, Path)):
        return write_receipt(target, **kwargs)
    evidence = {k: kwargs.pop(k) for k in ("sensitivity_samples",) if k in kwargs}
    return assemble(memory_sources(target, **kwargs), **evidence)


def verify(target: Any, **kwargs: Any) -> list[str]:
    """Mismatches between a receipt and what it describes (empty = the receipt holds).

    `verify("runs/mumis")` checks a run directory (`verify_receipt`); `verify(receipt_dict,
    result=res, original=model, forget=(x, y), unseen=(x, y))` checks a receipt made in memory.
    """
    if isinstance(target, (str, Path)):
        return verify_receipt(target, **kwargs)
    return verify_memory(target, **kwargs)


__all__ = [
    "FORMAT", "HTML_FILE", "RECEIPT_FILE", "canonical_json", "indices_sha256", "json_sha256",
    "make_receipt", "read_receipt", "receipt", "receipt_text", "samples_sha256", "state_sha256", "verify",
    "verify_memory", "verify_receipt", "write_receipt",
]

"""Make, write and read `receipt.json` / `receipt.html` in an unlearning run directory."""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any

from ..exceptions import CheckpointError
from .hashing import json_sha256
from .payload import FORMAT, build_payload
from .sources import Sources, run_sources

RECEIPT_FILE = "receipt.json"
HTML_FILE = "receipt.html"
_UNHASHED = ("created and locations are outside the payload and not hashed; payload_sha256 is the "
             "sha256 of the payload as canonical JSON (sorted keys, no spaces, ASCII)")


def assemble(s: Sources, *, seed: int = 0, sensitivity_samples: int = 200) -> dict[str, Any]:
    """A complete receipt dict for these sources: payload, its hash, time and locations."""
    payload = build_payload(s, seed=seed, sensitivity_samples=sensitivity_samples)
    return {
        "format": FORMAT, "payload": payload, "payload_sha256": json_sha256(payload),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "locations": dict(s.locations), "note": _UNHASHED,
    }


def make_receipt(
    run_dir: str | Path, *, original: str | Path | None = None, data_dir: str | Path | None = None,
    trust_model_code: Any = False, seed: int = 0, sensitivity_samples: int = 200,
    final_dir: str | Path | None = None,
) -> dict[str, Any]:
    """The receipt of an unlearning run directory, as a dict (nothing is written).

    Args:
        run_dir: the `mumis unlearn --out` folder.
        original: the checkpoint the run unlearned from (default: the `parent` in meta.json).
        data_dir: the data folder (default: the one meta.json records).
        trust_model_code: may a user model factory be imported (see `checkpoint.load_checkpoint`).
        seed: seed of the evidence's attack folds and sensitivity subsample.
        sensitivity_samples: samples per side for the input-sensitivity medians.
        final_dir: the folder `run_dir` will be renamed to, when it is a staging folder (only
            the unhashed `locations` record it).
    Raises:
        CheckpointError: not an unlearning run, a missing original checkpoint or run file.
        DataError: the data cannot be loaded or does not fit the run's split.
    """
    s = run_sources(run_dir, original=original, data_dir=data_dir, trust_model_code=trust_model_code)
    if final_dir is not None:
        s.locations["run_dir"] = str(Path(final_dir).resolve())
    return assemble(s, seed=seed, sensitivity_samples=sensitivity_samples)


def receipt_text(receipt: dict[str, Any]) -> str:
    """receipt.json's content: sorted keys, two-space indent, one final newline."""
    return json.dumps(receipt, sort_keys=True, indent=2, ensure_ascii=True, allow_nan=False) + "\n"


def write_receipt(run_dir: str | Path, **kwargs: Any) -> dict[str, Any]:
    """Write `receipt.json` and `receipt.html` into an unlearning run directory; return the receipt.

    Takes the arguments of `make_receipt`. Both files are built before either is written, and each
    is written atomically, so a failure leaves the folder as it was. An existing receipt is replaced.
    """
    from ..utils import atomic_write_text
    from .page import render_html

    receipt = make_receipt(run_dir, **kwargs)
    text, page = receipt_text(receipt), render_html(receipt)
    run = Path(run_dir)
    atomic_write_text(run / HTML_FILE, page)
    atomic_write_text(run / RECEIPT_FILE, text)
    return receipt


def read_receipt(run_dir: str | Path) -> dict[str, Any]:
    """Read a run directory's receipt.json.

    Raises:
        CheckpointError: not a run directory, no receipt, or a file that is not a mumis receipt.
    """
    from ..checkpoint import read_meta
    from ..utils import read_json

    run = Path(run_dir)
    read_meta(run)
    path = run / RECEIPT_FILE
    if not path.is_file():
        raise CheckpointError(f"{str(run)!r} has no {RECEIPT_FILE}; write one with `mumis verify {run} --write`")
    receipt = read_json(path)
    if not isinstance(receipt, dict) or receipt.get("format") != FORMAT or not isinstance(
            receipt.get("payload"), dict):
        raise CheckpointError(f"{str(path)!r} is not a mumis receipt (format {FORMAT!r} with a payload); "
                              f"write one with `mumis verify {run} --write`")
    return receipt

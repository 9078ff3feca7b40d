"""`mumis verify`: check an unlearning run directory against its deletion receipt (or write one).

    mumis verify RUN [--original DIR] [--data-dir PATH]           # exit 0 holds, 1 mismatches
    mumis verify RUN --write [--original DIR] [--data-dir PATH]   # write receipt.json + .html

Verification recomputes every hash (the models before and after, the forget indices and samples,
meta.json) and the evidence from the files and the data, and prints one line per mismatch
(exit 1). Not a run directory, no receipt, or data that cannot be found: one line, exit 2.
"""

from __future__ import annotations

import argparse
import sys

from ._common import add_trust_model_code


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "verify", help="check an unlearning run against its deletion receipt (--write: make one)",
        description="Recompute a deletion receipt's hashes and evidence from an unlearning run "
                    "directory, its original checkpoint and the data; exit 0 when it holds, 1 with "
                    "one line per mismatch. --write writes receipt.json and receipt.html instead.",
    )
    p.add_argument("run", metavar="RUN", help="run directory of `mumis unlearn`")
    p.add_argument("--write", action="store_true",
                   help="write (or replace) the run's receipt.json and receipt.html instead of checking")
    p.add_argument("--original", metavar="DIR",
                   help="the checkpoint the run unlearned from (default: the parent in its meta.json)")
    p.add_argument("--data-dir", default=None, metavar="PATH",
                   help="data folder (default: the one recorded in the run)")
    add_trust_model_code(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..receipts import verify_receipt, write_receipt

    where = {"original": args.original, "data_dir": args.data_dir, "trust_model_code": args.trust_model_code}
    if args.write:
        receipt = write_receipt(args.run, **where)
        p = receipt["payload"]
        print(f"receipt {p['request_id']} -> {args.run}/receipt.json, receipt.html")
        print(p["verdict"])
        return 0
    problems = verify_receipt(args.run, **where)
    for line in problems:
        print(f"mismatch: {line}")
    if problems:
        print(f"mumis: the receipt of {args.run!r} does not hold ({len(problems)} mismatches)", file=sys.stderr)
        return 1
    from ..receipts import read_receipt

    print(f"receipt {read_receipt(args.run)['payload']['request_id']} holds for {args.run}")
    return 0

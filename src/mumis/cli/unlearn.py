"""`mumis unlearn`: apply an unlearning method to a trained model's run directory.

    mumis unlearn --checkpoint runs/original --forget class:3 --method mumis \\
        [--config configs/methods/mumis.yaml] [--set lr=1e-4 ...] [--seed 0] \\
        [--reference runs/retrained] --out runs/mumis

The forget spec is resolved on the checkpoint's dataset with the checkpoint's split seed, so a
`random:` spec selects the same samples as for the retrained model. Only the forget set is handed
to methods that do not declare `requires_retain`. The run directory holds `model.safetensors`,
`meta.json` (kind "unlearn"), `config.yaml` (method + resolved settings, usable again as
`--config`), `history.jsonl` and `result.json`; it appears only when the run is complete.

A checkpoint that is itself an unlearning run takes --forget as the next deletion request of its
chain (`mumis.runs.chain`): --reference must then be retrained without everything the chain
forgot (`mumis train --forget-chain CHECKPOINT --forget SPEC`).
"""

from __future__ import annotations

import argparse
import sys

# The pipeline is the library's (`mumis.runs`); these names stay importable from here.
from ..runs import UnlearnRun, load_method_file, resolve_method_settings, unlearn_run
from ._checks import seed_type
from ._common import add_trust_model_code

__all__ = ["UnlearnRun", "add_parser", "load_method_file", "resolve_method_settings", "run", "unlearn_run"]

_SET_HELP = "a method setting, e.g. --set lr=1e-4 (repeatable; see `mumis methods NAME`)"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "unlearn", help="unlearn a forget set from a trained model (writes a run directory)",
        description="Apply an unlearning method to the model of a `mumis train` run directory.",
    )
    p.add_argument("--checkpoint", required=True, metavar="DIR",
                   help="run directory of the original model, or of an unlearning run to continue its "
                        "chain of deletion requests with this one")
    p.add_argument("--forget", required=True, metavar="SPEC",
                   help="class:3, class:3,5, subclass:NAME_OR_ID, random:0.1, random:600 or indices:FILE")
    p.add_argument("--method", metavar="NAME",
                   help="unlearning method (see `mumis methods`); may come from --config instead")
    p.add_argument("--config", metavar="FILE.yaml",
                   help="YAML mapping of method settings, e.g. a preset from configs/methods/")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=_SET_HELP)
    p.add_argument("--seed", type=seed_type, default=0, help="seed of the method's random choices (default 0)")
    p.add_argument("--split-seed", type=seed_type, default=None, metavar="S",
                   help="seed for random: forget specs (default: the checkpoint's split seed)")
    p.add_argument("--data-dir", default=None, metavar="PATH",
                   help="data folder (default: the one recorded in the checkpoint)")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda[:N]")
    p.add_argument("--reference", metavar="DIR",
                   help="retrained model's run directory; its split must match this one (after a chain: "
                        "retrained without everything forgotten so far, see `mumis train --forget-chain`)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    p.add_argument("--out", required=True, metavar="DIR", help="run directory to create")
    p.add_argument("--no-holdout", action="store_true",
                   help="do not hand the checkpoint's holdout (`mumis train --holdout`) to the method: "
                        "forget data only, even for a method that can use a holdout (mumis)")
    p.add_argument("--no-receipt", action="store_true",
                   help="skip the deletion receipt (receipt.json / receipt.html, checked by `mumis verify`)")
    add_trust_model_code(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..config import parse_set_args

    done = unlearn_run(
        checkpoint=args.checkpoint, forget=args.forget, method=args.method, config_file=args.config,
        overrides=parse_set_args(args.set), seed=args.seed, split_seed=args.split_seed,
        data_dir=args.data_dir, device=args.device, reference=args.reference, out=args.out,
        overwrite=args.overwrite, progress=not getattr(args, "quiet", False) and sys.stderr.isatty(),
        trust_model_code=args.trust_model_code,
        fail_on_divergence=True, receipt=not args.no_receipt, use_holdout=not args.no_holdout,
    )
    from .. import distributed

    r = done.result
    if r["status"] == "diverged" and distributed.is_main():
        print(f"mumis: warning: {r['method']} diverged; {done.run_dir} holds the last finite weights "
              "(result.json status: diverged)", file=sys.stderr)
    if distributed.is_distributed():  # every rank says where it stopped (they must agree)
        print(f"mumis: rank {distributed.rank()} of {distributed.world()}: {r['steps']} steps, "
              f"stopped: {r['stop_reason']}", file=sys.stderr)
    if not distributed.is_main():
        return 0
    print(f"{r['method']}: {r['steps']} steps in {r['time_s']:.2f} s, stopped: {r['stop_reason']} "
          f"-> {done.run_dir}")
    return 0

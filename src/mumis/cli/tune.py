"""`mumis tune`: grid-search a method's settings on a *tuning* scenario, chosen by gap to retrain.

    mumis tune --checkpoint runs/tune/original --reference runs/tune/retrained --forget class:5 \\
        --method boundary_shrink --grid lr=1e-4,1e-3,1e-2 [--grid epochs=5,10] \\
        [--config FILE] [--set key=value ...] --out runs/tune/bs

Writes `tuning.json` (grid, every point's settings and gaps, the chosen settings, the scenario),
`chosen.yaml` (a preset: `mumis unlearn --config chosen.yaml`) and `points/NNN/` (one unlearning
run directory per grid point). See `mumis.tuning`.
"""

from __future__ import annotations

import argparse
import sys

from ._checks import seed_type
from ._common import add_trust_model_code

_TUNING_NOTE = (
    "The checkpoint, reference and forget spec form a TUNING scenario: use a different forget class "
    "or seed from the one you evaluate on, so that no reported number comes from settings picked on "
    "its own test (docs/evaluation.md: baselines are tuned by a recorded protocol, never hand-picked)."
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tune", help="grid-search a method's settings on a tuning scenario (smallest gap to retrain)",
        description="Run a method at every point of a settings grid on a tuning scenario, evaluate "
                    "each against the retrained model and keep the smallest gap. " + _TUNING_NOTE,
    )
    p.add_argument("--checkpoint", required=True, metavar="DIR",
                   help="run directory of the tuning scenario's original model (not the evaluation one)")
    p.add_argument("--reference", required=True, metavar="DIR",
                   help="run directory of the model retrained without the tuning forget set "
                        "(`mumis train --forget SPEC`)")
    p.add_argument("--forget", required=True, metavar="SPEC",
                   help="forget spec of the tuning scenario (another class or seed than the evaluation one)")
    p.add_argument("--method", metavar="NAME", help="unlearning method (or from --config)")
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                   help="a setting and its values, e.g. --grid lr=1e-4,1e-3 (repeatable; the grid "
                        "is the product of all of them)")
    p.add_argument("--config", metavar="FILE.yaml", help="base settings for every point (a preset)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a fixed setting for every point (repeatable)")
    p.add_argument("--criterion", default="gap_paper", choices=["gap_paper", "gap_salun"],
                   help="gap to minimise: gap_paper (MU-Mis Avg. Gap, default) or gap_salun")
    p.add_argument("--seed", type=seed_type, default=0, help="the method's seed at every point (default 0)")
    p.add_argument("--split-seed", type=seed_type, default=None, metavar="S",
                   help="seed for random: forget specs (default: the checkpoint's split seed)")
    p.add_argument("--data-dir", default=None, metavar="PATH",
                   help="data folder (default: the one recorded in the checkpoint)")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda[:N]")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="folder to create: tuning.json, chosen.yaml, points/")
    add_trust_model_code(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..config import parse_set_args
    from ..tuning import parse_grid, tune

    quiet = getattr(args, "quiet", False)
    res = tune(
        checkpoint=args.checkpoint, reference=args.reference, forget=args.forget, method=args.method,
        grid=parse_grid(args.grid), out=args.out, config_file=args.config,
        overrides=parse_set_args(args.set), criterion=args.criterion, seed=args.seed,
        split_seed=args.split_seed, data_dir=args.data_dir, device=args.device,
        overwrite=args.overwrite, progress=not quiet and sys.stderr.isatty(),
        log=None if quiet else (lambda line: print(line, file=sys.stderr)),
        trust_model_code=args.trust_model_code,
    )
    c = res.record["chosen"]
    print(f"{res.record['method']}: chose {c['settings']} ({res.record['criterion']} = "
          f"{c[res.record['criterion']]:.3f}) of {len(res.record['points'])} points -> "
          f"{res.out / 'chosen.yaml'}")
    return 0

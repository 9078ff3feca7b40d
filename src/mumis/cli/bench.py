"""`mumis bench`: run a grid of datasets x models x scenarios x methods x seeds from a YAML file.

    mumis bench --config configs/bench/smoke.yaml --out runs/bench/smoke [--resume]

Original and retrained models are trained once and cached under --out; each cell unlearns,
evaluates against the retrained model and writes `records/<cell-id>.json` when it finishes.
`--resume` continues an interrupted bench: finished cells and complete models are kept.
`--only PATTERN` runs the matching cells only (e.g. to recompute one number of BENCHMARKS.md).
Summarise with `mumis report DIR`. See `mumis.bench` for the YAML keys.
"""

from __future__ import annotations

import argparse
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench", help="run a benchmark grid from a YAML file (one record per cell, resumable)",
        description=__doc__.splitlines()[0],
    )
    p.add_argument("--config", required=True, metavar="FILE.yaml",
                   help="bench config, e.g. configs/bench/smoke.yaml")
    p.add_argument("--out", required=True, metavar="DIR", help="bench directory (models, runs, records)")
    p.add_argument("--resume", action="store_true",
                   help="continue the bench in a non-empty --out: skip finished cells, reuse models")
    p.add_argument("--only", action="append", metavar="PATTERN", default=None,
                   help="run only the cells whose id matches this shell pattern (repeatable), e.g. "
                        "'*__class-4__mumis__s0': recomputes one published number with the models "
                        "it needs")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..bench import load_bench_config, run_bench
    from ..runs import caching
    from ._checks import check_output_dir

    quiet = getattr(args, "quiet", False)
    check_output_dir(args.out)
    with caching():  # the datasets the check loads are the ones the bench uses
        cfg = load_bench_config(args.config)  # everything checked before any work
        res = run_bench(cfg, args.out, resume=args.resume, only=args.only, progress=not quiet,
                        log=None if quiet else (lambda line: print(line, file=sys.stderr)))
    print(f"bench: {res.ran} cells run, {res.skipped} already done, of {res.cells}; models: "
          f"{res.models_trained} trained, {res.models_reused} reused; {res.time_s:.1f} s -> "
          f"{res.out} (summarise with `mumis report {res.out}`)")
    return 0

"""`mumis evaluate`: every metric (docs/evaluation.md) of a run's model, against the retrained model.

    mumis evaluate --checkpoint runs/mumis --forget class:3 --reference runs/retrained \\
        [--reference runs/retrained-seed1 ...]
        [--json metrics.json] [--metrics accuracy,mia,divergence,sensitivity,recovery]
        [--recovery relearn_steps=50 ...] [--plot sens.png]

The forget spec is resolved on the checkpoint's dataset with the checkpoint's split seed (or
`--split-seed`); with `--reference` the retrained model must have been trained on exactly that
split (same manifest hash). Prints a table (metric, model, reference, |diff|, meaning);
`--json FILE` writes `{"model": {...}, "reference": {...}, "diff": {...}, "gap_paper": x,
"gap_salun": y, ...}` (reference, diff and gaps only with a reference). `--reference` repeated
with retrained models of other seeds adds the retraining floor: each one's values, its distance
to the first reference and "within the floor" yes/no per distance (the `floor` block of --json).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..exceptions import ConfigError

# The pipeline is the library's (`mumis.runs`); the name stays importable from here.
from ..runs import evaluate_run
from ..utils import check_outside
from ._checks import check_output_file, seed_type
from ._common import add_trust_model_code

#: What `mumis evaluate` computes unless --metrics says otherwise (README: sensitivity is opt-in).
DEFAULT_CLI_METRICS = "accuracy,mia,divergence,recovery"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate", help="evaluate a model against the retrained one (accuracies, MIAs, gaps)",
        description="Evaluate the model of a run directory on a forget scenario: accuracies, "
                    "three membership-inference attacks, divergences and gaps to the retrained "
                    "model, input-sensitivity diagnostics, and recovery audits (accuracies after "
                    "re-estimating BatchNorm statistics and after a short relearning attack).",
    )
    p.add_argument("--checkpoint", required=True, metavar="DIR", help="run directory of the model")
    p.add_argument("--forget", required=True, metavar="SPEC",
                   help="class:3, class:3,5, subclass:NAME_OR_ID, random:0.1, random:600 or "
                        "indices:FILE")
    p.add_argument("--reference", metavar="DIR", action="append", default=None,
                   help="run directory of the retrained model (`mumis train --forget SPEC`); "
                        "repeat it with retrained models of other seeds for the retraining "
                        "floor (how far they are from the first, beside the model's distance)")
    p.add_argument("--json", metavar="FILE", help="also write the metrics to this JSON file")
    p.add_argument("--metrics", default=DEFAULT_CLI_METRICS, metavar="LIST",
                   help="comma-separated groups: accuracy, mia (or mia_efficacy, mia_entropy, "
                        "mia_loss), loss_rank, divergence, sensitivity, recovery, or all (default: "
                        f"{DEFAULT_CLI_METRICS}; add sensitivity for the MU-Mis paper's input-"
                        "sensitivity diagnostics, which --plot implies)")
    p.add_argument("--recovery", action="append", default=[], metavar="KEY=VALUE",
                   help="a recovery audit setting (repeatable): bn_samples, bn_batch_size, "
                        "relearn_samples, relearn_steps, relearn_lr, relearn_momentum, "
                        "relearn_batch_size (defaults: 600, 200, 1000, 30, 0.01, 0.9, 64)")
    p.add_argument("--sensitivity-samples", type=int, default=500, metavar="N",
                   help="samples per split for the sensitivity diagnostics (default 500)")
    p.add_argument("--plot", metavar="FILE.png",
                   help="save histograms of the sensitivity diagnostics (needs matplotlib)")
    p.add_argument("--seed", type=seed_type, default=0,
                   help="seed of the attacks' subsampling and folds and of the sensitivity "
                        "subsample (default 0)")
    p.add_argument("--split-seed", type=seed_type, default=None, metavar="S",
                   help="seed for random: forget specs (default: the checkpoint's split seed)")
    p.add_argument("--data-dir", default=None, metavar="PATH",
                   help="data folder (default: the one recorded in the checkpoint)")
    p.add_argument("--batch-size", type=int, default=256,
                   help="samples per forward pass (default 256)")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda[:N]")
    add_trust_model_code(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..utils import atomic_write_json

    if args.sensitivity_samples < 1:
        raise ConfigError(f"--sensitivity-samples must be at least 1, got {args.sensitivity_samples}")
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {args.batch_size}")
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    if not metrics:
        raise ConfigError(f"--metrics {args.metrics!r} names no metric group; for example "
                          f"--metrics {DEFAULT_CLI_METRICS}")
    if args.plot and not {"sensitivity", "all"} & set(metrics):
        metrics.append("sensitivity")  # the plot draws the sensitivity diagnostics
    # Checked before the evaluation runs, so a bad path does not cost the whole evaluation.
    check_output_file(args.json, "--json")
    check_output_file(args.plot, "--plot")
    reads = [args.checkpoint, *(args.reference or []), args.data_dir, args.forget.partition("indices:")[2] or None]
    for flag in ("--json", "--plot"):  # never into the runs or data being read
        check_outside(getattr(args, flag[2:]), flag, reads)
    if args.plot and not str(args.plot).lower().endswith((".png", ".pdf", ".svg")):
        raise ConfigError(f"--plot {args.plot!r}: give an image file name ending in .png, .pdf or .svg")
    report, names = evaluate_run(
        checkpoint=args.checkpoint, forget=args.forget, reference=args.reference,
        metrics=metrics, seed=args.seed, split_seed=args.split_seed, data_dir=args.data_dir,
        batch_size=args.batch_size, sensitivity_samples=args.sensitivity_samples,
        device=args.device, trust_model_code=args.trust_model_code,
        recovery=parse_recovery(args.recovery),
    )
    print(report.to_markdown(model_name=names[0], reference_name=names[1]))
    if args.json:
        atomic_write_json(args.json, report.to_dict())
    if args.plot:
        _plot(report, args.plot)
    return 0


def parse_recovery(items: list[str]) -> dict[str, Any]:
    """`["relearn_steps=50", ...]` -> {setting: number}, checked by `RecoveryConfig`."""
    from ..metrics.recovery import RecoveryConfig

    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        try:
            value: Any = float(text) if key in ("relearn_lr", "relearn_momentum") else int(text)
        except ValueError:
            value = None
        if not sep or value is None:
            raise ConfigError(f"--recovery {item!r}: expected KEY=NUMBER, e.g. relearn_steps=50")
        out[key] = value
    RecoveryConfig.of(out)  # unknown keys and bad ranges: one line, exit 2
    return out


def _plot(report: Any, path: str) -> None:
    import sys

    from ..metrics.sensitivity_stats import plot_sensitivity_histograms

    diag = report.sensitivity_values.get("model")
    if diag is None:
        raise ConfigError("--plot needs the sensitivity diagnostics; add 'sensitivity' to --metrics")
    stem = Path(path)
    for who, d in report.sensitivity_values.items():
        out = stem if who == "model" else stem.with_name(f"{stem.stem}.{who}{stem.suffix}")
        if plot_sensitivity_histograms(d, out, title=f"input sensitivity ({who})") is None:
            print("mumis: note: matplotlib is not installed; no plot written "
                  "(pip install 'mumis[plot]')", file=sys.stderr)
            return

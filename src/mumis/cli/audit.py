"""`mumis audit`: membership audits against a distribution of retrained models.

    mumis audit digits --forget class:3 --method mumis[,finetune,...] --out runs/audit \\
        [--models 8] [--shadows 16] [--audits epsilon,lira] [--one-original] [--no-floor] \\
        [--model mlp] [--recipe quick] [--epochs E] [--set [METHOD.]KEY=VALUE ...] [--seed 0]
    mumis audit runs/original --forget class:3 --method mumis --out runs/audit   # its recipe

Trains N originals (unlearned with each method), N retrained models, N more retrained models
(the floor) and K shadow models, then prints the NeurIPS 2023 challenge's forgetting quality and
the LiRA TPRs per row and writes `--out` (meta.json, config.yaml, audit.json, audit.html: the
table, the ROC curves and the epsilon histograms on one self-contained page), atomically.
docs/membership-audits.md explains both audits and how to read them.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..exceptions import ConfigError
from ._checks import seed_type
from ._common import add_trust_model_code


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "audit", help="epsilon score and LiRA audit against many retrained models (trains them)",
        description="Train N originals, unlearn them with each method, train N retrained models (and "
                    "N more as the floor) and K shadow models; report the NeurIPS 2023 challenge's "
                    "forgetting quality and a per-example likelihood-ratio (LiRA) audit.",
    )
    p.add_argument("source", metavar="DATASET_OR_CHECKPOINT",
                   help="a dataset name (digits, fashion-mnist@6000/1000, ...) or a `mumis train` run "
                        "directory whose dataset, architecture and recipe the audit trains with")
    p.add_argument("--forget", required=True, metavar="SPEC",
                   help="class:3, class:3,5, subclass:NAME_OR_ID, random:0.1, random:600 or indices:FILE")
    p.add_argument("--method", required=True, metavar="NAME[,NAME...]",
                   help="unlearning method(s) to audit (see `mumis methods`); several share the models")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a method setting (repeatable); with several methods METHOD.KEY=VALUE, "
                        "e.g. --set mumis.target_forget_acc=98")
    p.add_argument("--models", type=_positive_int, default=8, metavar="N",
                   help="unlearned and retrained models per row (at least 3; default 8)")
    p.add_argument("--shadows", type=_positive_int, default=16, metavar="K",
                   help="shadow models of the LiRA audit (even, at least 4; default 16)")
    p.add_argument("--audits", default="epsilon,lira", metavar="LIST",
                   help="epsilon, lira or both (default epsilon,lira)")
    p.add_argument("--one-original", action="store_true",
                   help="unlearn one original N times with method seeds (the challenge's protocol) "
                        "instead of N originals")
    p.add_argument("--no-floor", action="store_true",
                   help="skip the N extra retrained models that give the retrain-vs-retrain floor")
    p.add_argument("--shadow-unit", default="auto", choices=["auto", "example", "set"],
                   help="LiRA membership unit: each forget example IN for half the shadows (example) or "
                        "the whole forget set in every other shadow (set); auto: set for class-wise")
    p.add_argument("--variance", default="auto", choices=["auto", "global", "per_example"],
                   help="LiRA Gaussians' variance: one per side (global) or per example; auto: global "
                        "below 64 shadows")
    p.add_argument("--model", default=None, metavar="NAME",
                   help="architecture with a dataset name (default mlp): mlp, cnn, resnet18 or "
                        "package.module:function")
    p.add_argument("--recipe", default=None, choices=["quick", "memorise"],
                   help="training recipe with a dataset name (default quick)")
    p.add_argument("--epochs", type=_positive_int, default=None, metavar="E",
                   help="training epochs of every model (default: the recipe's)")
    p.add_argument("--seed", type=seed_type, default=0,
                   help="first seed: model i trains with seed S+i (default 0)")
    p.add_argument("--split-seed", type=seed_type, default=None, metavar="S",
                   help="seed for random: forget specs (default: the checkpoint's, else 0)")
    p.add_argument("--data-dir", default=None, metavar="PATH", help="data folder")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda[:N]")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier run directory at --out")
    p.add_argument("--out", required=True, metavar="DIR", help="folder to create (audit.json, audit.html, meta.json, config.yaml)")
    add_trust_model_code(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..audits import AuditSettings, audit_run, format_table
    from ..config import parse_set_args

    methods = [m.strip() for m in args.method.split(",") if m.strip()]
    if not methods:
        raise ConfigError(f"--method {args.method!r} names no method; e.g. --method mumis")
    method_settings = split_method_settings(parse_set_args(args.set), methods)
    audits = tuple(a.strip() for a in args.audits.split(",") if a.strip())
    settings = AuditSettings(models=args.models, shadows=args.shadows, audits=audits,
                             one_original=args.one_original, floor=not args.no_floor,
                             shadow_unit=args.shadow_unit, variance=args.variance)
    split_seed = args.split_seed
    if split_seed is None:
        split_seed = _checkpoint_split_seed(args.source)
    out, result = audit_run(
        source=args.source, forget=args.forget, methods=methods, out=args.out,
        method_settings=method_settings, settings=settings,
        model=args.model, recipe=args.recipe, epochs=args.epochs, seed=args.seed, split_seed=split_seed,
        data_dir=args.data_dir, device=args.device, overwrite=args.overwrite,
        progress=not getattr(args, "quiet", False) and sys.stderr.isatty(), trust_model_code=args.trust_model_code,
    )
    print(format_table(result))
    print(f"audit: {result['time_s']['total']:.1f} s -> {out}", file=sys.stderr)
    return 0


def split_method_settings(overrides: dict[str, Any], methods: list[str]) -> dict[str, dict[str, Any]]:
    """`--set` values per method: `KEY=V` for the only method, `METHOD.KEY=V` with several.

    Raises:
        ConfigError: a plain key with several methods, or a prefix that is not one of them.
    """
    out: dict[str, dict[str, Any]] = {}
    for key, value in overrides.items():
        name, dot, rest = key.partition(".")
        if dot and name in methods:
            out.setdefault(name, {})[rest] = value
        elif len(methods) == 1:
            out.setdefault(methods[0], {})[key] = value
        else:
            raise ConfigError(f"--set {key}=...: with several methods name the method, e.g. --set "
                              f"{methods[0]}.{key}=... (methods: {', '.join(methods)})")
    return out


def _checkpoint_split_seed(source: str) -> int:
    from pathlib import Path

    from ..checkpoint import META_FILE, read_meta, split_seed_of

    p = Path(source)
    return split_seed_of(read_meta(p)) if (p / META_FILE).is_file() else 0

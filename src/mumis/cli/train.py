"""`mumis train`: train an original model, or with --forget the retrained oracle, into a run dir."""

from __future__ import annotations

import argparse

from ..config import parse_set_args
from ..training import RECIPES
from ._checks import seed_type


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train an original model (or, with --forget, the retrained oracle)",
        description=(
            "Train a model on a dataset and write a run directory (model.safetensors, meta.json, "
            "metrics.json, history.jsonl, config.yaml). With --forget SPEC the model is trained on "
            "the retain set only (the retrained oracle) with the same recipe and seed."
        ),
    )
    p.add_argument("--dataset", default="digits",
                   help="dataset name, or NAME@TRAIN[/TEST] for a fixed class-stratified subset "
                        "(default: digits)")
    p.add_argument("--model", default="mlp",
                   help="mlp, cnn, resnet18 or a factory package.module:function (default: mlp)")
    p.add_argument("--forget", metavar="SPEC", action="append", default=None,
                   help="train the retrained oracle without these samples: class:K[,K], "
                        "subclass:NAME, random:0.1 or random:600, indices:FILE; repeatable (without "
                        "the samples of every spec, as after a chain of these requests)")
    p.add_argument("--forget-chain", metavar="RUN", default=None,
                   help="also train without everything the chain of deletion requests recorded in "
                        "unlearning run RUN forgot (the reference of that chain; its split seed is used)")
    p.add_argument("--holdout", default="0", metavar="FRACTION|PERCENT|N",
                   help="hold a seeded, class-stratified validation split out of the training data of "
                        "this model (0.05, 5%% or 300 samples; default 0: none), recorded in the run; "
                        "give the original and the retrained model the same value. Unlearning methods "
                        "that use a holdout (mumis) read it; evaluation only for its loss rank test")
    p.add_argument("--label-space", choices=["fine", "coarse"], default=None,
                   help="train an original on superclass labels (coarse) for sub-class scenarios")
    p.add_argument("--recipe", default="quick", choices=sorted(RECIPES),
                   help="quick (default) or memorise (train accuracy ~100 %%, as in the paper)")
    p.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs")
    p.add_argument("--seed", type=seed_type, default=0, help="training seed (default: 0)")
    p.add_argument("--split-seed", type=seed_type, default=0,
                   help="seed of random forget sets (default: 0); must match the unlearning run")
    p.add_argument("--data-dir", default=None, help="folder with the dataset files")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="training setting (lr=0.1, weight_decay=0, augment=true, ...) or model "
                        "option (model.hidden=512,256, model.width=32); repeatable")
    p.add_argument("--device", default="auto", help="auto (default), cpu or cuda[:N]")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="CPU threads (default: 1 for small models such as digits, else torch's "
                        "default; on a busy machine try 1)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    p.add_argument("--out", required=True, help="run directory to create")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..runs import check_output_dir, train_run

    check_output_dir(args.out)  # a file, or an unwritable place: one line before any training
    res = train_run(
        out=args.out, dataset=args.dataset, model=args.model, forget=args.forget,
        forget_chain=args.forget_chain,
        recipe=args.recipe, seed=args.seed, split_seed=args.split_seed, data_dir=args.data_dir,
        label_space=args.label_space, holdout=args.holdout, epochs=args.epochs, overrides=parse_set_args(args.sets),
        device=args.device, threads=args.threads, overwrite=args.overwrite, progress=not args.quiet,
    )
    from .. import distributed

    if not distributed.is_main():
        return 0
    m = res.metrics
    spec = res.meta.get("forget_spec")
    what = f"oracle without {spec}" if spec else "original"
    extra = f", holdout {m['holdout_acc']:.2f} % of {m['num_holdout']}" if "holdout_acc" in m else ""
    if spec:
        extra += f", forget {m['forget_acc']:.2f} %"
    print(
        f"trained {args.model} on {args.dataset} ({what}, {m['num_train']} samples, "
        f"{m['epochs']} epochs, {m['train_time_s']:.1f} s): train {m['train_acc']:.2f} %, "
        f"test {m['test_acc']:.2f} %{extra} -> {res.run_dir}"
    )
    return 0

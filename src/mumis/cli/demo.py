"""`mumis demo`: the whole pipeline on one scenario, and the comparison table.

Trains the original model, the retrained oracle and a second retrained model (the next seed:
how far two retrained models differ, the retraining floor), forgets the class with MU-Mis (forget
data only), evaluates them against the oracle and prints accuracies, MIAs, gaps and times, the
method's gap beside the floor.
"""

from __future__ import annotations

import argparse
import shutil
import textwrap
import time
from pathlib import Path
from typing import Any

from ..exceptions import ConfigError
from ..utils import atomic_write_json, atomic_write_text, check_overwritable
from ._checks import seed_type

MARKER = "demo.json"
#: The two tables the demo prints (key, short header), each under 80 columns.
ACCURACY_COLUMNS = (("forget_acc", "forget"), ("retain_acc", "retain"), ("test_acc", "test"),
                    ("test_remaining_acc", "test_kept"), ("test_forgotten_acc", "test_forgot"))
OTHER_COLUMNS = (("mia_efficacy", "mia_eff"), ("mia_entropy", "mia_ent"), ("mia_loss_auc", "loss_auc"),
                 ("gap_paper", "gap_paper"), ("gap_salun", "gap_salun"), ("time_s", "time_s"))
COLUMNS = tuple(k for k, _ in ACCURACY_COLUMNS + OTHER_COLUMNS)
LEGEND = """\
Accuracies in %: forget / retain = training images forgotten / kept; test_kept
/ test_forgot = test images of the kept / forgotten classes. mia_eff: SalUn's
attack (higher = more forgotten); mia_ent: SSD's entropy attack (lower = more
forgotten); loss_auc: loss attack AUC (closer to retrain = better).
How to read the gaps: gap_paper is the mean distance, in percentage points,
of three accuracies from the retrained model's (forgetting classes: test_kept,
test_forgot, test; otherwise forget, retain, test); 0 = as if trained without
the forget set; the original row shows what doing nothing scores. gap_salun
averages over forget, retain, test accuracy (test_kept when forgetting classes)
and mia_eff. time_s: training time for retrain and original, unlearning time
for the method.
How to read this: retrain (seed N) is a second model trained without the
forget set, with another seed; its gaps are the retraining floor, how far two
retrained models differ by chance. A method whose gap is at or below the
floor is as close to retrain as retraining itself gets; above it, the gap is
real."""


def _gap_line(gap: float | None, floor: float | None = None, within: bool | None = None) -> list[str]:
    """The method's gap_paper read out in words, beside the floor (nothing when it is n/a)."""
    if gap is None:
        return []
    text = f"Here gap_paper {gap:.2f}"
    if floor is not None:
        text += f" (two retrained models differ by {floor:.2f})"
    text += f": its accuracies are on average {gap:.2f} points from the retrained model's"
    if within is not None:
        text += ", within the floor" if within else ", beyond the floor"
    return textwrap.wrap(text + ".", 78)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo", help="the main job: train, retrain, unlearn with MU-Mis, evaluate, print the table",
        description=__doc__.splitlines()[0],
    )
    p.add_argument("--dataset", default="digits", help="dataset (default: digits, embedded)")
    p.add_argument("--model", default="mlp", help="model (default: mlp)")
    p.add_argument("--forget", default="class:3", metavar="SPEC", help="forget spec (default: class:3)")
    p.add_argument("--method", default="mumis", help="unlearning method (default: mumis)")
    p.add_argument("--recipe", default="quick", help="training recipe (default: quick)")
    p.add_argument("--seed", type=seed_type, default=0, help="seed of training, split and method")
    p.add_argument("--data-dir", default=None, help="folder with the dataset files")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="method setting (repeatable), e.g. --set lr=1e-4")
    p.add_argument("--device", default="auto", help="auto (default), cpu or cuda[:N]")
    p.add_argument("--out", default="runs/demo", help="folder for the three run directories (default: runs/demo)")
    p.set_defaults(func=run)


def _validate(args: argparse.Namespace, overrides: dict[str, Any]) -> None:
    """Check every input before anything is written or trained (ConfigError / DataError)."""
    from ..data import parse_dataset_name, resolve_manifest
    from ..models import MODELS, is_user_factory
    from ..registry import did_you_mean
    from ..runs import check_output_dir, resolve_method_settings
    from ..runs.cache import load_dataset
    from ..training import RECIPES
    from ..utils import resolve_device

    check_output_dir(args.out)
    parse_dataset_name(args.dataset)
    if not is_user_factory(args.model) and args.model not in MODELS:
        raise ConfigError(f"unknown model {args.model!r}.{did_you_mean(args.model, MODELS.names())} "
                          f"Choose from: {', '.join(MODELS.names())} or package.module:function")
    if args.recipe not in RECIPES:
        raise ConfigError(f"unknown recipe {args.recipe!r}.{did_you_mean(args.recipe, sorted(RECIPES))} "
                          f"Choose from: {', '.join(sorted(RECIPES))}")
    resolve_device(args.device)
    resolve_method_settings(args.method, None, overrides)
    if args.data_dir is not None and not Path(args.data_dir).exists():
        raise ConfigError(f"--data-dir {args.data_dir!r} does not exist; give the folder (or file) "
                          "holding the dataset")
    bundle = load_dataset(args.dataset, args.data_dir)
    resolve_manifest(args.forget, bundle, seed=args.seed)


def _prepare_out(out: Path, data_dir: str | None) -> None:
    """The demo replaces its own earlier output, never a folder it did not make."""
    check_overwritable(out, overwrite=True, protected=[data_dir], kind="demo")
    if out.exists() and any(out.iterdir()):
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def run(args: argparse.Namespace) -> int:
    from ..config import parse_set_args
    from ..runs import caching

    out = Path(args.out)
    overrides = parse_set_args(args.sets)
    with caching():  # the dataset is read once, each model once
        _validate(args, overrides)
        _prepare_out(out, args.data_dir)
        try:
            return _pipeline(args, out, overrides)
        except BaseException:
            # `out` is the demo's own folder, made (or emptied) just now: without its demo.json a
            # half demo would be refused as foreign by the next run, so it goes, as a failed run
            # dir does
            shutil.rmtree(out, ignore_errors=True)
            raise


def _pipeline(args: argparse.Namespace, out: Path, overrides: dict[str, Any]) -> int:
    from ..api import get_method
    from ..runs import RunRecord, Scenario, evaluate_record, resolve_method_settings, train_run, unlearn_scenario

    say = (lambda *_a, **_k: None) if args.quiet else print
    common: dict[str, Any] = {"dataset": args.dataset, "model": args.model, "recipe": args.recipe,
                              "seed": args.seed, "split_seed": args.seed, "data_dir": args.data_dir,
                              "device": args.device, "progress": not args.quiet}
    t0 = time.perf_counter()
    say(f"[1/4] training the original {args.model} on {args.dataset} ...")
    original = train_run(out=out / "original", **common)
    second = args.seed + 1
    say(f"[2/4] retraining without {args.forget} (the oracle, and again with seed {second} for "
        "the floor) ...")
    retrained = train_run(out=out / "retrained", forget=args.forget, **common)
    # the same split, another training seed: how far two retrained models differ
    again = train_run(out=out / f"retrained-seed{second}", forget=args.forget, **{**common, "seed": second})
    # --model names the factory: the opt-in to import it again
    scenario = Scenario.load(out / "original", args.forget,
                             reference=[out / "retrained", out / f"retrained-seed{second}"],
                             data_dir=args.data_dir, device=args.device, trust_model_code=args.model)
    name, settings = resolve_method_settings(args.method, None, overrides)
    needs = "forget and retain data" if get_method(name).requires_retain else "forget data only"
    say(f"[3/4] unlearning {args.forget} with {name} ({needs}) ...")
    done = unlearn_scenario(scenario, name, settings, out=out / name, seed=args.seed, fail_on_divergence=True)
    say("[4/4] evaluating against the retrained model ...")
    ev = {"metrics": "all", "seed": args.seed}
    assert scenario.reference is not None  # given above
    reference = scenario.reference.report(scenario.splits, **ev)
    floor_ref = scenario.floor_references[0]
    records = {
        "retrain": RunRecord(method="retrain", config=None, time_s=retrained.metrics["train_time_s"],
                             evaluation=reference.to_dict()),
        floor_ref.name: evaluate_record(scenario, floor_ref.model(), RunRecord(
            method=floor_ref.name, config=None, time_s=again.metrics["train_time_s"]), **ev),
        "original": evaluate_record(scenario, scenario.model, RunRecord(
            method="original", config=None, time_s=original.metrics["train_time_s"]), **ev),
        name: evaluate_record(scenario, done.model, done.record, **ev),
    }
    for row, run_dir in (("original", out / "original"), (name, out / name)):
        atomic_write_json(run_dir / "evaluation.json", records[row].evaluation)
    flat = {row: {**(rec.evaluation or {})["model"], "gap_paper": rec.gap("gap_paper"),
                  "gap_salun": rec.gap("gap_salun"), "time_s": rec.time_s} for row, rec in records.items()}
    flat["retrain"].update(gap_paper=0.0, gap_salun=0.0)
    lines = [
        f"mumis demo: {args.dataset}, {args.model}, forget {args.forget}, {name}, seed {args.seed}",
        "", *_tables(flat), LEGEND,
        *textwrap.wrap(f"{name}: {done.record.steps} steps, stopped: {done.record.stop_reason}; "
                       f"{_data_used(done.record, scenario)}.", 78),
        *_gap_line(flat.get(name, {}).get("gap_paper"), flat[floor_ref.name].get("gap_paper"),
                   _within(records[name], "gap_paper")),
        *textwrap.wrap(f"Run directories in {out}/ (original, retrained, retrained-seed{second}, "
                       f"{name}); total "
                       f"{time.perf_counter() - t0:.1f} s.", 78),
    ]
    text = "\n".join(lines)
    print(text)
    atomic_write_text(out / "summary.txt", text + "\n")
    atomic_write_json(out / MARKER, {"args": {k: v for k, v in vars(args).items() if k != "func"},
                                     "table": flat, "reports": {k: r.evaluation for k, r in records.items()}})
    return 0


def _within(record: Any, key: str) -> bool | None:
    """Whether the record's `key` is within the retraining floor (None: not measured)."""
    floor = (record.evaluation or {}).get("floor") or {}
    return (floor.get("metrics") or {}).get(key, {}).get("within")


def _tables(flat: dict[str, dict[str, Any]]) -> list[str]:
    """The two tables (accuracies; attacks, gaps and times), each followed by a blank line."""
    from ..evaluation import comparison_table

    out = []
    for cols in (ACCURACY_COLUMNS, OTHER_COLUMNS):
        shown = [(k, h) for k, h in cols if any(flat[n].get(k) is not None for n in flat)]
        short = {n: {h: row.get(k) for k, h in shown} for n, row in flat.items()}
        table = comparison_table(short, [h for _, h in shown], fmt="plain")
        out += ["\n".join(line.rstrip() for line in table.splitlines()), ""]
    return out


def _data_used(record: Any, scenario: Any) -> str:
    """What the method was handed, as it declares it needs (`requires_retain`)."""
    n_forget = record.run["num_forget"]
    if record.uses_retain:
        return (f"used the {n_forget} forget samples and the {len(scenario.splits.retain[1])} "
                "remaining (retain) samples")
    return f"used the {n_forget} forget samples only, no remaining data"

"""The MU-Mis study behind the defaults (docs/mumis-study.md). Every number there comes from here.

Usage (each prints one table; cached original/retrained pairs live in runs/study-cache):
    python benchmarks/mumis_study.py variants --epochs 5      # tuning: Fashion-MNIST 12k subset, class 7, "low"
    python benchmarks/mumis_study.py variants --epochs 30     # tuning: same, memorised (train acc 99.9 %)
    python benchmarks/mumis_study.py digits --set irrelevant_cap=2   # confirmation: digits, 2 models x 2 seeds x 3 classes
    python benchmarks/mumis_study.py fmnist --classes 2,9 --seed 1   # confirmation: full Fashion-MNIST, quick recipe
    python benchmarks/mumis_study.py premise                  # sensitivities and the published rule's S' curve

Single-threaded (torch.set_num_threads(1)) so several can run side by side on 2 cores.
Every run starts from the defaults these sections were measured with (`study_lib.EARLIER_DEFAULTS`:
every weight, raw loss, SGD 1e-4); today's defaults come from section 7 (benchmarks/resnet_study.py).
Gap = mean |difference to retrain| over (test_remaining_acc, test_forgotten_acc, test_acc), in
points (the MU-Mis paper's Avg. Gap for class-wise forgetting).
"""

from __future__ import annotations

import argparse

import torch
from study_lib import accs, case, library_case, run_variant

import mumis
from mumis.config import parse_set_args
from mumis.functional import sensitivity_profile

VARIANTS = {
    "published loss, forget-acc stop": {"irrelevant_cap": None},
    "cap 1": {"irrelevant_cap": 1.0},
    "cap 1.5 (default)": {},
    "cap 2": {"irrelevant_cap": 2.0},
    "cap 4": {"irrelevant_cap": 4.0},
    "per-sample cap 0.75 x initial target term": {"cap_reference": "target", "irrelevant_cap": 0.75},
    "per-sample cap 1 x initial target term": {"cap_reference": "target", "irrelevant_cap": 1.0},
    "cap 2 + per-sample switch": {"irrelevant_cap": 2.0, "switch": "misclassified"},
    "normalised + Adam 1e-3": {"irrelevant_cap": None, "normalise": True, "optimizer": "adam", "lr": 1e-3},
    "normalised + Adam 1e-3 + cap 2": {"irrelevant_cap": 2.0, "normalise": True, "optimizer": "adam", "lr": 1e-3},
    "irrelevant averaged over all classes + cap 2": {"irrelevant_cap": 2.0, "irrelevant": "all"},
    "mumis_published (S' rule, delta 1)": {"method": "mumis_published", "max_steps": 300},
}


def _row(name: str, out: dict) -> str:
    a = out["acc"]
    return (f"| {name} | {out['gap']:.2f} | {a['test_rem']:.1f} | {a['test_fgt']:.1f} | {a['test']:.1f} | "
            f"{a['forget']:.1f} | {out['steps']} | {out['time_s']:.1f} | {out['stop']} |")


HEAD = ("| variant | gap | test_rem | test_fgt | test | forget | steps | time (s) | stop |\n"
        "|---|---|---|---|---|---|---|---|---|")


def variants(args: argparse.Namespace) -> None:
    o, r, s = case("fashion-mnist", "cnn", 7, epochs=args.epochs, lr=0.05, n_train=12000)
    ref = accs(r, s)
    print(f"Fashion-MNIST 12k subset, CNN, {args.epochs} epochs, forget class 7. Original: "
          f"{accs(o, s)}; retrained: {ref}\n")
    print(HEAD)
    names = args.only.split(";") if args.only else list(VARIANTS)
    for name in names:
        print(_row(name, run_variant(o, r, s, **dict(VARIANTS[name]))), flush=True)


def digits(args: argparse.Namespace) -> None:
    extra = parse_set_args(args.set)
    print(f"digits, quick recipe, settings {extra or 'defaults'}\n")
    print("| model | seed | class | gap | test_rem (retrain) | test_fgt | steps | stop |\n|---|---|---|---|---|---|---|---|")
    gaps = []
    for model in ("mlp", "cnn"):
        for seed in (1, 2):
            for cls in (1, 5, 8):
                o, r, s = library_case("digits", model, f"class:{cls}", seed=seed)
                out = run_variant(o, r, s, **dict(extra))
                a, ref = out["acc"], out["ref"]
                gaps.append(out["gap"])
                print(f"| {model} | {seed} | {cls} | {out['gap']:.2f} | {a['test_rem']:.1f} ({ref['test_rem']:.1f}) | "
                      f"{a['test_fgt']:.1f} | {out['steps']} | {out['stop']} |", flush=True)
    print(f"\nmean gap {sum(gaps) / len(gaps):.2f}, max {max(gaps):.2f}")


def fmnist(args: argparse.Namespace) -> None:
    extra = parse_set_args(args.set)
    print(HEAD)
    for cls in (int(c) for c in args.classes.split(",")):
        o, r, s = library_case("fashion-mnist", "cnn", f"class:{cls}", seed=args.seed, recipe=args.recipe)
        print(f"| class {cls}, seed {args.seed}, {args.recipe}: original {accs(o, s)} retrain {accs(r, s)} |")
        print(_row(f"class {cls} {extra or 'defaults'}", run_variant(o, r, s, **dict(extra))), flush=True)


def premise(args: argparse.Namespace) -> None:
    cases = [("digits mlp, class 3", library_case("digits", "mlp", "class:3", seed=0)),
             ("FMNIST 12k low, class 7", case("fashion-mnist", "cnn", 7, epochs=5, lr=0.05, n_train=12000)),
             ("FMNIST 12k memorised, class 7", case("fashion-mnist", "cnn", 7, epochs=30, lr=0.05, n_train=12000))]
    for name, (o, r, s) in cases:
        x, y = s.forget
        idx = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))[:500]
        to, io = sensitivity_profile(o, x[idx], y[idx])
        tr, ir = sensitivity_profile(r, x[idx], y[idx])
        print(f"{name}: forget-set S_c original {to.mean():.2f} -> retrained {tr.mean():.2f}; "
              f"S' original {io.mean():.2f} -> retrained {ir.mean():.2f}")
        res = mumis.unlearn(o, s.forget, method="mumis_published", device="cpu", stop="none",
                            max_steps=60, monitor_every=5)
        ratio = [round(h["s_irrelevant"] / res.history[0]["s_irrelevant"], 3) for h in res.history]
        print(f"  published objective, S'(t)/S'(0) every 5 steps: {ratio}")
        print(f"  forget accuracy: {[round(h['forget_acc']) for h in res.history]}; {res.stop_reason}")


def main() -> None:
    torch.set_num_threads(1)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("variants")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--only", default="", help="variant names separated by ';'")
    p = sub.add_parser("digits")
    p.add_argument("--set", action="append", default=[])
    p = sub.add_parser("fmnist")
    p.add_argument("--classes", default="2,9")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--recipe", default="quick")
    p.add_argument("--set", action="append", default=[])
    sub.add_parser("premise")
    args = ap.parse_args()
    {"variants": variants, "digits": digits, "fmnist": fmnist, "premise": premise}[args.cmd](args)


if __name__ == "__main__":
    main()

"""MU-Mis on ResNet-18 (BatchNorm, GroupNorm, LayerNorm): the study of docs/mumis-study.md, section 7.

Models come from the CLI, as a user would train them (one original and one retrained per norm
and seed; 10 epochs of the memorise recipe on a 6,000-image Fashion-MNIST subset):
    mumis train --dataset fashion-mnist@6000/1000 --model resnet18 --set model.width=16 \\
        --set model.norm=NORM --recipe memorise --epochs 10 --seed S [--forget class:C] --out runs/rstudy/...
(`python benchmarks/resnet_study.py train --norm batch --cls 4 --seed 0` does exactly that.)

Usage:
    python benchmarks/resnet_study.py variants --norm batch --cls 4 --seed 0 [--only "a;b"] [--set k=v]
    python benchmarks/resnet_study.py diagnose --norm batch --cls 4 --seed 0 [--set k=v]
    python benchmarks/resnet_study.py classwise --norm bench --cls 4 --seed 0 [--set k=v]
(`--norm bench`: the resnet-cpu bench's own models; `--epochs N`: models trained N epochs.)

`variants` prints, per MU-Mis setting, the accuracies before and after a BatchNorm
re-estimation on 600 unlabelled retain images (reset, momentum None, BatchNorm layers in train
mode, no gradient step), the steps and the time. `diagnose` follows one run: every few steps the
accuracies, and per BatchNorm layer how far the running statistics are from the statistics the
changed network really produces on retain images.
"""

from __future__ import annotations

import argparse
import copy
import math
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn

import mumis
from mumis.checkpoint import load_checkpoint, load_run_splits
from mumis.config import parse_set_args
from mumis.data import Splits
from mumis.methods import METHODS
from mumis.methods.base import RunContext
from mumis.metrics.recovery import batchnorm_layers, reestimate_batchnorm

ROOT = Path(__file__).resolve().parent.parent
RUNS = ROOT / "runs" / "rstudy"
DATASET = "fashion-mnist@6000/1000"
N_REEST = 600

VARIANTS: dict[str, dict] = {
    "defaults": {},
    "old defaults (all weights, SGD 1e-4)": {"update": "all", "batchnorm_filters": "free", "lr": 1e-4,
                                             "normalise": False},
    "all weights, filter norms fixed, Adam 3e-4": {"update": "all", "optimizer": "adam", "lr": 3e-4},
    "published": {"method": "mumis_published", "max_steps": 300},
}


def run_dir(norm: str, which: str, seed: int, epochs: int = 0) -> Path:
    """`norm` is the ResNet's norm option, or `cnn` for the small CNN (same data and recipe);
    `epochs` other than 0 (the default length) is part of the name."""
    name = f"{norm}-e{epochs}-{which}" if epochs else f"{norm}-{which}"
    return RUNS / name if seed == 0 else RUNS / f"{name}-s{seed}"


def train(norm: str, cls: int, seed: int, epochs: int = 0) -> None:
    """`norm`: batch, group, layer, none (ResNet), cnn (the small CNN, same data and recipe) or pcnn
    (the paper-cpu bench's CNN case: 12,000 images, 20 epochs). `epochs`: 0 = 10 (20 for pcnn)."""
    data, length = (("fashion-mnist@12000/2000", 20) if norm == "pcnn" else (DATASET, 10))
    epochs_arg = str(epochs or length)
    model = ["--model", "cnn"] if norm in ("cnn", "pcnn") else [
        "--model", "resnet18", "--set", "model.width=16", "--set", f"model.norm={norm}"]
    for which, forget in (("orig", None), (f"class{cls}", f"class:{cls}")):
        out = run_dir(norm, which, seed, epochs)
        if (out / "model.safetensors").exists():
            continue
        cmd = [str(ROOT / ".venv/bin/mumis"), "train", "--dataset", data, *model, "--recipe", "memorise",
               "--epochs", epochs_arg, "--seed", str(seed), "--threads", "1", "--out", str(out)]
        if forget:
            cmd += ["--forget", forget]
        subprocess.run(cmd, check=True)


#: `--norm bench`: the models the resnet-cpu bench trained (run it first), not the study's own
BENCH_MODELS = ROOT / "runs" / "bench" / "resnet-cpu" / "models" / "fashion-mnist-6000-1000" / "resnet18"


def load(norm: str, cls: int, seed: int, epochs: int = 0) -> tuple[nn.Module, nn.Module, Splits, float]:
    if norm == "bench":
        orig_dir, retr_dir = BENCH_MODELS / f"s{seed}" / "original-fine", BENCH_MODELS / f"s{seed}" / f"retrain-class-{cls}"
    else:
        train(norm, cls, seed, epochs)
        orig_dir, retr_dir = run_dir(norm, "orig", seed, epochs), run_dir(norm, f"class{cls}", seed, epochs)
    orig, _ = load_checkpoint(orig_dir)
    retr, _ = load_checkpoint(retr_dir)
    import json

    retrain_s = json.loads((retr_dir / "metrics.json").read_text())["train_time_s"]
    return orig, retr, load_run_splits(retr_dir), retrain_s


@torch.no_grad()
def acc(model: nn.Module, pair: tuple[torch.Tensor, torch.Tensor]) -> float:
    x, y = pair
    model.eval()
    pred = torch.cat([model(x[i:i + 1000]).argmax(1) for i in range(0, len(x), 1000)])
    return 100.0 * float((pred == y).float().mean())


def accs(model: nn.Module, s: Splits) -> dict[str, float]:
    assert s.test_remaining is not None and s.test_forgotten is not None
    return {"forget": acc(model, s.forget), "test_rem": acc(model, s.test_remaining),
            "test_fgt": acc(model, s.test_forgotten)}


def reest_images(s: Splits) -> torch.Tensor:
    idx = torch.randperm(len(s.retain[1]), generator=torch.Generator().manual_seed(123))[:N_REEST]
    return s.retain[0][idx]


def after_reestimation(model: nn.Module, s: Splits) -> dict[str, float] | None:
    reestimated = reestimate_batchnorm(model, reest_images(s))  # a copy; None without BatchNorm
    return None if reestimated is None else accs(reestimated, s)


HEAD = ("| variant | steps | time (s) | % of retrain | test_rem | test_fgt | forget | re-est. test_rem | "
        "re-est. test_fgt | stop |\n|---|---|---|---|---|---|---|---|---|---|")


def row(name: str, model: nn.Module, s: Splits, steps: int | str, t: float, retrain_s: float, stop: str) -> str:
    a, b = accs(model, s), after_reestimation(model, s)
    re = f"{b['test_rem']:.1f} | {b['test_fgt']:.1f}" if b else "- | -"
    return (f"| {name} | {steps} | {t:.1f} | {100 * t / retrain_s:.0f} | {a['test_rem']:.1f} | {a['test_fgt']:.1f} | "
            f"{a['forget']:.1f} | {re} | {stop} |")


def variants(args: argparse.Namespace) -> None:
    orig, retr, s, retrain_s = load(args.norm, args.cls, args.seed, args.epochs)
    extra = parse_set_args(args.set)
    print(f"{'CNN' if 'cnn' in args.norm else 'ResNet-18 w16 norm=' + args.norm}, class {args.cls}, seed {args.seed}; "
          f"retraining {retrain_s:.0f} s; extra settings {extra or 'none'}\n")
    print(HEAD)
    print(row("original", orig, s, "-", 0.0, retrain_s, ""))
    print(row("retrained", retr, s, "-", retrain_s, retrain_s, ""), flush=True)
    names = args.only.split(";") if args.only else list(VARIANTS)
    for name in names:
        cfg = {**VARIANTS[name], **extra} if name in VARIANTS else parse_set_args(name.split(","))
        cfg = dict(cfg)
        start = orig
        if args.trainable:  # only parameters whose names start with one of these prefixes move
            start = copy.deepcopy(orig)
            for pname, p in start.named_parameters():
                p.requires_grad_(any(pname.startswith(t) for t in args.trainable.split(",")))
        t = time.perf_counter()
        res = mumis.unlearn(start, s.forget, method=cfg.pop("method", "mumis"), device="cpu", seed=args.seed, **cfg)
        dt = time.perf_counter() - t
        print(row(name, res.model, s, res.steps, dt, retrain_s, res.stop_reason), flush=True)


@torch.no_grad()
def per_class(model: nn.Module, s: Splits, drop: int | None = None) -> tuple[list[float], float, list[int]]:
    """Test accuracy per class, on the remaining classes, and where the forgotten class's test
    images go; `drop`: that class's logit removed (what deleting its classifier row gives)."""
    assert s.test_remaining is not None and s.test_forgotten is not None
    x, y = torch.cat([s.test_remaining[0], s.test_forgotten[0]]), torch.cat([s.test_remaining[1], s.test_forgotten[1]])
    model.eval()
    logits = model(x)
    if drop is not None:
        logits[:, drop] = -math.inf
    pred = logits.argmax(1)
    fgt = int(s.test_forgotten[1][0])
    accs_k = [100.0 * float((pred[y == k] == k).float().mean()) for k in range(s.num_classes)]
    rem = 100.0 * float((pred[y != fgt] == y[y != fgt]).float().mean())
    return accs_k, rem, torch.bincount(pred[y == fgt], minlength=s.num_classes).tolist()


def classwise(args: argparse.Namespace) -> None:
    """Per-class test accuracy of the original (as is and with the forgotten class's logit
    removed), a default MU-Mis run (with `--set` on top) and the retrained model."""
    orig, retr, s, _ = load(args.norm, args.cls, args.seed, args.epochs)
    res = mumis.unlearn(orig, s.forget, method="mumis", device="cpu", seed=args.seed, **parse_set_args(args.set))
    print(f"norm={args.norm} class {args.cls} seed {args.seed}; MU-Mis: {res.steps} steps, {res.stop_reason}\n")
    print("| model | " + " | ".join(str(k) for k in range(s.num_classes)) + " | remaining | forgotten class's test "
          "images predicted as |\n|---|" + "---|" * (s.num_classes + 2))
    for name, model, drop in (("original", orig, None), (f"original, logit {args.cls} removed", orig, args.cls),
                              ("MU-Mis", res.model, None), ("retrained", retr, None)):
        a, rem, where = per_class(model, s, drop)
        print(f"| {name} | " + " | ".join(f"{v:.0f}" for v in a) + f" | {rem:.2f} | {where} |")


@torch.no_grad()
def stat_mismatch(model: nn.Module, x: torch.Tensor) -> list[tuple[float, float]]:
    """Per BatchNorm: (mean |batch mean - running mean| / running std, median batch var / running var)
    of the statistics the model really produces on `x` against the ones it normalises with."""
    found: list[tuple[float, float]] = []

    def hook(mod: nn.Module, inp: tuple[torch.Tensor, ...]) -> None:
        z = inp[0].transpose(0, 1).flatten(1)  # (C, N*H*W)
        rm, rv = mod.running_mean, mod.running_var  # type: ignore[attr-defined]
        found.append((float(((z.mean(1) - rm).abs() / rv.sqrt()).mean()), float((z.var(1) / rv).median())))

    layers = list(batchnorm_layers(model))
    handles = [m.register_forward_pre_hook(hook) for m in layers]
    model.eval()
    model(x)
    for h in handles:
        h.remove()
    return found


def diagnose(args: argparse.Namespace) -> None:
    orig, retr, s, retrain_s = load(args.norm, args.cls, args.seed, args.epochs)
    extra = dict(parse_set_args(args.set))
    every = int(extra.pop("every", 25))
    extra.setdefault("max_steps", 150)
    extra.setdefault("stop", "none")
    x = reest_images(s)
    print(f"norm={args.norm} class {args.cls} seed {args.seed}; settings {extra}; mismatch of BatchNorm "
          "statistics on 600 retain images, per layer: |mean shift| in running std, batch var / running var "
          "(first, middle and last BatchNorm)\n")
    print("| step | test_rem | test_fgt | re-est. test_rem | re-est. test_fgt | shift (bn first/mid/last) | "
          "var ratio (first/mid/last) | S_c | S' |\n|---|---|---|---|---|---|---|---|---|")
    model = copy.deepcopy(orig).eval()

    def show(r: dict) -> None:
        if r["step"] % every:
            return
        a, b = accs(model, s), after_reestimation(model, s)
        mm = stat_mismatch(model, x)
        pick = [mm[0], mm[len(mm) // 2], mm[-1]] if mm else []
        re = f"{b['test_rem']:.1f} | {b['test_fgt']:.1f}" if b else "- | -"
        print(f"| {r['step']} | {a['test_rem']:.1f} | {a['test_fgt']:.1f} | {re} | "
              f"{' / '.join(f'{p[0]:.2f}' for p in pick)} | {' / '.join(f'{p[1]:.2f}' for p in pick)} | "
              f"{r['s_target']:.3g} | {r['s_irrelevant']:.3g} |", flush=True)

    algo_name = extra.pop("method", "mumis")
    algo = METHODS.get(algo_name)(**extra)
    fx, fy = s.forget
    ctx = RunContext(forget=(fx, fy), retain=None, num_classes=s.num_classes,
                     generator=torch.Generator().manual_seed(args.seed), device=torch.device("cpu"), log=show)
    show({"step": 0, **{k: v for k, v in vars(_first_reading(model, fx, fy)).items()}})
    t = time.perf_counter()
    out = algo.run(model, ctx)
    print(f"\n{out.steps} steps in {time.perf_counter() - t:.1f} s; {out.stop_reason}")


def _first_reading(model: nn.Module, x: torch.Tensor, y: torch.Tensor):  # noqa: ANN202
    from mumis.methods.mumis import _monitor

    idx = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))[:256]
    return _monitor(model, x[idx], y[idx], None, "squared", 10)


def main() -> None:
    torch.set_num_threads(1)
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("variants", "diagnose", "train", "classwise"):
        p = sub.add_parser(name)
        p.add_argument("--norm", default="batch")
        p.add_argument("--cls", type=int, default=4)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--epochs", type=int, default=0, help="training epochs (0: 10; 20 for pcnn)")
        p.add_argument("--only", default="", help="variant names (or k=v,k=v settings) separated by ';'")
        p.add_argument("--set", action="append", default=[])
        p.add_argument("--trainable", default="", help="comma-separated parameter name prefixes (default: all)")
    args = ap.parse_args()
    if args.cmd == "train":
        train(args.norm, args.cls, args.seed, args.epochs)
        return
    {"variants": variants, "diagnose": diagnose, "classwise": classwise}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())

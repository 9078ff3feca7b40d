"""What a default MU-Mis run costs against retraining, in one run (issue 15, items 1 and 4).

Usage:
    python benchmarks/mumis_cost.py --preset paper-cpu-class [--seeds 0,1,2] [--json out.json]
    python benchmarks/mumis_cost.py --preset fmnist-full --device auto
    python benchmarks/mumis_cost.py --preset resnet32 --data-dir /path/to/cifar-10-batches-py
    python benchmarks/mumis_cost.py --preset resnet32-fmnist --device auto   # no CIFAR-10 needed

For one scenario (dataset, model, recipe, epochs, forget spec) and each seed it trains the
original on the whole training set and the retrained model on the remaining data (timed: the
retraining time), runs `mumis.unlearn` at the method's defaults (or the `--mumis` settings) on
the original (its own device-synchronised time and steps), and reports:
- MU-Mis time / retraining time;
- passes over the forget set: samples read / |D_f| (steps x batch / |D_f| when |D_f| is a
  multiple of the batch; the last batch of each pass over the forget set is smaller);
- CE-equivalent passes: passes x (MU-Mis step / cross-entropy step), the two steps timed side by
  side, interleaved, on the original model and a forget batch of the run's size (as in
  benchmarks/step_cost.py), with the thread count the run itself uses;
- forget / test accuracies of the original, the retrained model and MU-Mis (sanity);
- peak memory: MU-Mis's own (`UnlearnResult.peak_mem_mb`) and the whole process's
  (`torch.cuda.max_memory_allocated` on CUDA, max RSS from `resource.getrusage` on the CPU).

`--device auto` takes CUDA when available; CUDA regions are timed between
`torch.cuda.synchronize()` calls. Output: a markdown table on stdout, a JSON file with `--json`.
The `resnet32` preset (ResNet-18 on 32x32 colour images) needs CIFAR-10 (`--data-dir`); without
the data it says so in one line and exits 0. `resnet32-fmnist` is the same ResNet-18 at 32x32 on
data every machine with Fashion-MNIST has: the 28x28 images zero-padded by 2 pixels on each side
(the background is 0), one channel. It is meant for a GPU (full width, full dataset); on a CPU
give it `--dataset fashion-mnist@2000/500 --set epochs=1 --set model.width=16` for a smoke run.
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import resource
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mumis import unlearn
from mumis.config import parse_set_args
from mumis.data import DatasetBundle, load_dataset, make_splits, resolve_manifest
from mumis.exceptions import MumisError
from mumis.functional.batchnorm import batchnorm_as_affine, has_running_batchnorm
from mumis.methods.mumis import MuMis
from mumis.models import build_model, resolve_model_kwargs
from mumis.training import choose_threads, make_train_config, model_accuracy, recipe_model_options, train_model
from mumis.training.recipes import split_overrides
from mumis.training.threads import torch_threads
from mumis.utils import atomic_write_json, resolve_device


@dataclass(frozen=True)
class Preset:
    dataset: str
    model: str
    recipe: str
    forget: str
    epochs: int | None = None  # None: the recipe's
    model_options: dict[str, Any] = field(default_factory=dict)
    note: str = ""
    pad_to: int | None = None  # zero-pad the images to this height and width (None: as they are)


PRESETS = {
    "paper-cpu-class": Preset("fashion-mnist@12000/2000", "cnn", "memorise", "class:4", epochs=20,
                              note="configs/bench/paper-cpu.yaml, class scenario"),
    "fmnist-full": Preset("fashion-mnist", "cnn", "quick", "class:4", epochs=5,
                          note="full Fashion-MNIST, the 5-epoch quick recipe"),
    "resnet32": Preset("cifar10", "resnet18", "quick", "class:4", epochs=5,
                       note="ResNet-18 on 32x32 CIFAR-10 (needs --data-dir)"),
    "resnet32-fmnist": Preset("fashion-mnist", "resnet18", "quick", "class:4", epochs=5, pad_to=32,
                              note="ResNet-18 on Fashion-MNIST zero-padded to 32x32 (a GPU check without CIFAR-10)"),
    "digits-smoke": Preset("digits", "mlp", "quick", "class:3", epochs=5, note="seconds, a smoke run"),
}


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _stats(x: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of the data a model trains on (as the CLI normalises)."""
    flat = x.transpose(0, 1).reshape(x.shape[1], -1)
    return flat.mean(dim=1).tolist(), flat.std(dim=1).clamp_min(1e-6).tolist()


def _train(p: Preset, x: torch.Tensor, y: torch.Tensor, shape: tuple[int, ...], k: int, seed: int,
           dev: torch.device, overrides: dict[str, Any]) -> tuple[nn.Module, float]:
    """(a model trained by the preset's recipe on (x, y), its device-synchronised training time)."""
    over, model_over = split_overrides(overrides)  # `--set model.KEY=...` are model options
    if p.epochs is not None:
        over.setdefault("epochs", p.epochs)  # a user's --set epochs=N wins
    cfg = make_train_config(p.recipe, dataset=p.dataset, model=p.model, overrides=over)
    options = resolve_model_kwargs(p.model, {**recipe_model_options(p.recipe, dataset=p.dataset, model=p.model),
                                             **p.model_options, **model_over})
    mean, std = _stats(x)
    net = build_model(p.model, input_shape=shape, num_classes=k, mean=mean, std=std, seed=seed, **options)
    threads = choose_threads(net, x, cfg.batch_size, dev)  # what `mumis train` chooses
    _sync(dev)
    t0 = time.perf_counter()
    train_model(net, x, y, cfg, seed=seed, device=dev, progress=False, threads=threads)
    _sync(dev)
    return net.eval(), time.perf_counter() - t0


def step_ratio(model: nn.Module, x: torch.Tensor, y: torch.Tensor, k: int, dev: torch.device,
               repeats: int, mumis: dict[str, Any]) -> dict[str, float]:
    """Median MU-Mis step and CE step (ms) on the same model and batch, interleaved."""
    algo = MuMis(**mumis)
    upd = algo.config.update
    work = batchnorm_as_affine(model) if upd == "last" and has_running_batchnorm(model) else model
    moved = algo._trainable(work, x[:2])  # the weights a default run differentiates
    params = [q for q in model.parameters() if q.requires_grad]
    g = torch.Generator().manual_seed(0)
    x, y = x.to(dev), y.to(dev)

    def mumis_step() -> None:
        torch.autograd.grad(algo._loss(work, x, y, None, k, g), moved, allow_unused=True)
        _sync(dev)

    def ce_step() -> None:
        torch.autograd.grad(nn.functional.cross_entropy(model(x), y), params)
        _sync(dev)

    with torch_threads(choose_threads(model, x, len(x), dev)):
        for f in (mumis_step, ce_step):  # warm-up
            f()
        times: tuple[list[float], list[float]] = ([], [])
        for _ in range(repeats):  # interleaved: both see the same machine load
            for f, t in zip((mumis_step, ce_step), times, strict=True):
                t0 = time.perf_counter()
                f()
                t.append(time.perf_counter() - t0)
    m, c = (statistics.median(t) for t in times)
    return {"mumis_step_ms": 1e3 * m, "ce_step_ms": 1e3 * c, "step_ratio": m / c}


def samples_seen(steps: int, batch: int, n: int) -> int:
    """Forget samples the run's steps read: each pass over the forget set is n // batch full
    batches and one partial batch of n % batch (so steps x batch overcounts small sets)."""
    per_pass = -(-n // batch)
    full, rest = divmod(steps, per_pass)
    return full * n + rest * batch


def _acc(model: nn.Module, pair: tuple[torch.Tensor, torch.Tensor], dev: torch.device) -> float:
    return model_accuracy(model.to(dev), *pair, device=dev)


def padded(bundle: DatasetBundle, size: int | None) -> DatasetBundle:
    """The bundle with its images zero-padded (centred) to size x size; unchanged for None."""
    if size is None:
        return bundle
    h, w = bundle.input_shape[1:]
    if h > size or w > size:
        raise ValueError(f"cannot pad {h}x{w} images to {size}x{size}")
    top, left = (size - h) // 2, (size - w) // 2
    pad = (left, size - w - left, top, size - h - top)
    return dataclasses.replace(bundle, x_train=nn.functional.pad(bundle.x_train, pad),
                               x_test=nn.functional.pad(bundle.x_test, pad))


def run_seed(p: Preset, seed: int, dev: torch.device, data_dir: str | None, overrides: dict[str, Any],
             repeats: int, mumis: dict[str, Any]) -> dict[str, Any]:
    bundle = padded(load_dataset(p.dataset, data_dir), p.pad_to)
    splits = make_splits(bundle, resolve_manifest(p.forget, bundle, seed=seed))
    k, shape = splits.num_classes, bundle.input_shape
    original, train_s = _train(p, bundle.x_train, bundle.y_train, shape, k, seed, dev, overrides)
    retrained, retrain_s = _train(p, *splits.retain, shape, k, seed, dev, overrides)
    res = unlearn(original, splits.forget, seed=seed, device=dev, **mumis)
    n_forget = len(splits.forget[1])
    batch = min(res.config["batch_size"] or n_forget, n_forget)
    passes = samples_seen(res.steps, batch, n_forget) / n_forget
    fx, fy = splits.forget
    ratio = step_ratio(original, fx[:batch], fy[:batch], k, dev, repeats, mumis)
    return {
        "seed": seed, "n_train": int(len(bundle.y_train)), "n_forget": n_forget,
        "train_s": train_s, "retrain_s": retrain_s, "mumis_s": res.time_s, "steps": res.steps, "batch": batch,
        "stop_reason": res.stop_reason, "fraction": res.time_s / retrain_s, "passes": passes,
        **ratio, "ce_passes": passes * ratio["step_ratio"],
        "acc": {name: {"forget": _acc(m, splits.forget, dev), "test": _acc(m, splits.test, dev)}
                for name, m in (("original", original), ("retrained", retrained), ("mumis", res.model))},
        "mumis_peak_mb": res.peak_mem_mb,
    }


def process_peak_mb(dev: torch.device) -> float:
    if dev.type == "cuda":
        return torch.cuda.max_memory_allocated(dev) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def table(rows: list[dict[str, Any]]) -> str:
    head = ("| seed | D_f | retrain (s) | MU-Mis (s) | MU-Mis / retrain | steps x batch | passes | "
            "step ratio | CE-equiv. passes | forget acc orig / retr / MU-Mis | test acc orig / retr / MU-Mis "
            "| MU-Mis peak (MB) |")
    out = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for r in rows:
        a = r["acc"]
        acc = {s: " / ".join(f"{a[m][s]:.1f}" for m in ("original", "retrained", "mumis")) for s in ("forget", "test")}
        peak = "n/a" if r["mumis_peak_mb"] is None else f"{r['mumis_peak_mb']:.0f}"
        out.append(f"| {r['seed']} | {r['n_forget']} | {r['retrain_s']:.1f} | {r['mumis_s']:.2f} | "
                   f"{100 * r['fraction']:.1f} % | {r['steps']} x {r['batch']} | {r['passes']:.2f} | "
                   f"{r['step_ratio']:.2f}x | {r['ce_passes']:.2f} | {acc['forget']} | {acc['test']} | {peak} |")
    return "\n".join(out)


def _seeds(text: str) -> list[int]:
    try:
        return [int(s) for s in text.split(",")]
    except ValueError:
        raise ValueError(f"--seeds takes comma-separated integers such as 0,1,2; got {text!r}") from None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="presets: " + "; ".join(f"{n}: {p.note}" for n, p in PRESETS.items()))
    ap.add_argument("--preset", choices=sorted(PRESETS), default="paper-cpu-class")
    ap.add_argument("--seeds", default="0", help="comma-separated seeds, one row each (default 0)")
    ap.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda[:N]")
    ap.add_argument("--data-dir", default=None, help="dataset folder (default: the dataset's own)")
    ap.add_argument("--dataset", default=None,
                    help="another dataset than the preset's, e.g. fashion-mnist@6000/1000 for a quick run")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="training setting (or model.KEY option) of both trainings, e.g. --set epochs=3 (repeatable)")
    ap.add_argument("--mumis", action="append", default=[], metavar="KEY=VALUE",
                    help="a MU-Mis setting instead of its default, e.g. --mumis cap_reference=mean (repeatable)")
    ap.add_argument("--repeats", type=int, default=10, help="interleaved repetitions of the step timing")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows to this JSON file")
    args = ap.parse_args(argv)
    p = PRESETS[args.preset]
    if args.dataset:
        p = dataclasses.replace(p, dataset=args.dataset)
    try:
        seeds = _seeds(args.seeds)
        dev = resolve_device(args.device)
        overrides = parse_set_args(args.set)
        mumis = parse_set_args(args.mumis)
        MuMis(**mumis)  # an unknown or bad setting fails here, before any training
        if args.repeats < 1:
            raise ValueError("--repeats must be at least 1")
        if args.preset == "resnet32":  # the one preset whose data may be absent: skip, do not fail
            try:
                load_dataset(p.dataset, args.data_dir)
            except MumisError as e:
                print(f"resnet32: skipped, it needs CIFAR-10 (32x32): {e}", file=sys.stderr)
                return 0
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        rows = [run_seed(p, s, dev, args.data_dir, overrides, args.repeats, mumis) for s in seeds]
    except (MumisError, ValueError) as e:
        print(f"mumis_cost: {e}", file=sys.stderr)
        return 2
    peak = process_peak_mb(dev)
    print(f"# mumis_cost {args.preset}: {p.dataset}, {p.model}, recipe {p.recipe}"
          f"{'' if p.epochs is None else f' ({p.epochs} epochs)'}, forget {p.forget}; torch {torch.__version__}, "
          f"{platform.processor() or platform.machine()}, device {dev}"
          f"{f' ({torch.cuda.get_device_name(dev)})' if dev.type == 'cuda' else ''}\n")
    print(table(rows))
    print(f"\nprocess peak memory: {peak:.0f} MB ({'CUDA allocator' if dev.type == 'cuda' else 'max RSS'})")
    if args.json is not None:
        atomic_write_json(args.json, {"preset": args.preset, "scenario": asdict(p), "overrides": overrides, "mumis": mumis,
                                      "device": str(dev), "torch": torch.__version__, "rows": rows,
                                      "process_peak_mb": peak})
    return 0


if __name__ == "__main__":
    sys.exit(main())

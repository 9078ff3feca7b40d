"""Cost of one MU-Mis step against one cross-entropy step, and of a MU-Mis run against retraining.

Usage:
    python benchmarks/step_cost.py [--threads 2] [--repeats 20] [--models mlp,cnn,resnet18-w16] [--run]

The steps are timed side by side on the same model and batch, interleaved, so the ratios are
meaningful on a noisy shared machine. A MU-Mis step is the full update of `mumis.methods.MuMis`
(one forward shared by the two input-gradient terms, double backprop to the weights), timed
twice: with the gradient of every weight (`update=all`, as published) and of the last layer only
(`update=last`, the default: on a BatchNorm model the run works on `batchnorm_as_affine(model)`,
timed so; the same step with the BatchNorm layers kept is the `last, BN kept` column); a
cross-entropy step is forward + backward to every weight. `--run` also times a whole default
MU-Mis run against retraining on digits (class 3) from the same recipe.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from mumis.functional.batchnorm import batchnorm_as_affine, has_running_batchnorm, last_layer_parameters
from mumis.methods.mumis import MuMis
from mumis.models import build_model

SHAPES = {"mlp": (1, 8, 8), "cnn": (1, 28, 28), "resnet18": (3, 32, 32), "resnet18-w16": (1, 28, 28)}
#: name -> (built-in model, its options): the width-16 ResNet on 28x28 grey images of issue 12
BUILD = {"resnet18-w16": ("resnet18", {"width": 16})}


def _time(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def step_ratio(model_name: str, batch: int, repeats: int, device: str) -> dict[str, float]:
    shape = SHAPES[model_name]
    arch, options = BUILD.get(model_name, (model_name, {}))
    model = build_model(arch, input_shape=shape, num_classes=10, mean=[0.5] * shape[0],
                        std=[0.25] * shape[0], seed=0, **options).to(device).eval()
    x = torch.rand(batch, *shape, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    params = [p for p in model.parameters() if p.requires_grad]
    last = last_layer_parameters(model, x[:2])
    work = batchnorm_as_affine(model) if has_running_batchnorm(model) else model  # what the run uses
    work_last = last_layer_parameters(work, x[:2])
    algo = MuMis()
    g = torch.Generator().manual_seed(0)

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    def mumis_step() -> None:
        loss = algo._loss(model, x, y, None, 10, g)
        torch.autograd.grad(loss, params, allow_unused=True)
        sync()

    def mumis_last_step() -> None:  # what a default run does (update=last)
        torch.autograd.grad(algo._loss(work, x, y, None, 10, g), work_last, allow_unused=True)
        sync()

    def mumis_last_bn_step() -> None:  # the same with the BatchNorm layers kept
        torch.autograd.grad(algo._loss(model, x, y, None, 10, g), last, allow_unused=True)
        sync()

    def ce_step() -> None:
        loss = torch.nn.functional.cross_entropy(model(x), y)
        torch.autograd.grad(loss, params)
        sync()

    steps = (mumis_step, mumis_last_step, mumis_last_bn_step, ce_step)
    for f in steps:  # warm-up
        f()
    times: list[list[float]] = [[] for _ in steps]
    for _ in range(repeats):  # interleaved: all see the same machine load
        for f, t in zip(steps, times, strict=True):
            t += _time(f, 1)
    m, m_last, m_bn, c = (statistics.median(t) for t in times)
    return {"mumis_ms": 1e3 * m, "mumis_last_ms": 1e3 * m_last, "ce_ms": 1e3 * c, "ratio": m / c,
            "ratio_last": m_last / c, "ratio_last_bn": m_bn / c}


def run_vs_retrain() -> dict[str, float]:
    from mumis import unlearn
    from mumis.data import load_dataset, make_splits, resolve_manifest
    from mumis.training import make_train_config, train_model

    bundle = load_dataset("digits")
    splits = make_splits(bundle, resolve_manifest("class:3", bundle, seed=0))
    mean, std = bundle.channel_stats()
    cfg = make_train_config("quick", dataset="digits", model="mlp")

    def build():
        return build_model("mlp", input_shape=bundle.input_shape, num_classes=10, mean=mean, std=std, seed=0)

    original = build()
    train_model(original, bundle.x_train, bundle.y_train, cfg, seed=0, progress=False)
    t = time.perf_counter()
    train_model(build(), *splits.retain, cfg, seed=0, progress=False)
    retrain_s = time.perf_counter() - t
    res = unlearn(original, splits.forget, device="cpu")
    return {"retrain_s": retrain_s, "mumis_s": res.time_s, "fraction": res.time_s / retrain_s,
            "steps": res.steps}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--models", default="mlp,cnn")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--run", action="store_true", help="also time a whole MU-Mis run against retraining")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"# step_cost: torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{args.threads} threads, device {args.device}, batch {args.batch}\n")
    print("| model | input | MU-Mis step, all weights (ms) | MU-Mis step, last layer (ms) | CE step (ms) | "
          "ratio all | ratio last | ratio last, BN kept |")
    print("|---|---|---|---|---|---|---|---|")
    for name in args.models.split(","):
        r = step_ratio(name, args.batch, args.repeats, args.device)
        print(f"| {name} | {SHAPES[name]} | {r['mumis_ms']:.1f} | {r['mumis_last_ms']:.1f} | {r['ce_ms']:.1f} | "
              f"{r['ratio']:.2f}x | {r['ratio_last']:.2f}x | {r['ratio_last_bn']:.2f}x |")
    if args.run:
        r = run_vs_retrain()
        print(f"\nDigits class 3, mlp, quick recipe: retrain {r['retrain_s']:.2f} s, MU-Mis "
              f"{r['mumis_s']:.2f} s ({r['steps']} steps) = {100 * r['fraction']:.1f} % of retraining")


if __name__ == "__main__":
    main()

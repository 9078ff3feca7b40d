"""Wall time of `mumis.evaluate` on Fashion-MNIST (60k train, 10k test) with the small CNN.

Usage: python benchmarks/evaluate_cost.py [--threads 2] [--spec class:3]

Times (1) accuracy + the three MIAs for one model, (2) the same against a reference report
(plus divergences), (3) the sensitivity diagnostics on 500 samples per split, (4) the recovery
audits (`metrics="recovery"`, defaults). The model is
trained for one epoch first (the evaluation cost does not depend on its quality, except the
SVC of MIA-Efficacy, which is slower on a poorly separated model).
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from mumis.data import load_dataset, make_splits, resolve_manifest
from mumis.evaluation import evaluate
from mumis.models import build_model
from mumis.training import make_train_config, train_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--spec", default="class:3")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    bundle = load_dataset("fashion-mnist")
    splits = make_splits(bundle, resolve_manifest(args.spec, bundle, seed=0))
    mean, std = bundle.channel_stats()
    model = build_model("cnn", input_shape=bundle.input_shape, num_classes=10, mean=mean, std=std, seed=0)
    cfg = make_train_config("quick", dataset="fashion-mnist", model="cnn", overrides={"epochs": 1})
    train_model(model, bundle.x_train, bundle.y_train, cfg, seed=0, progress=False)
    print(f"# evaluate_cost: Fashion-MNIST {args.spec}, {args.threads} threads, load average "
          f"{os.getloadavg()[0]:.1f} at start\n")
    print("| what | seconds |\n|---|---|")
    t = time.perf_counter()
    ref = evaluate(model, splits, metrics=("accuracy", "mia"))
    print(f"| accuracy + MIAs, one model | {time.perf_counter() - t:.1f} |")
    t = time.perf_counter()
    evaluate(model, splits, reference=ref, metrics=("accuracy", "mia", "divergence"))
    print(f"| accuracy + MIAs + divergences against a reference report | {time.perf_counter() - t:.1f} |")
    t = time.perf_counter()
    evaluate(model, splits, metrics=("sensitivity",))
    print(f"| sensitivity diagnostics, 500 samples per split | {time.perf_counter() - t:.1f} |")
    t = time.perf_counter()
    rep = evaluate(model, splits, metrics=("recovery",))
    took = rep.recovery["model"] if rep.recovery else {}
    print(f"| recovery audits (BatchNorm re-estimation: n/a on the CNN; relearning attack, "
          f"{took.get('relearn_time_s', 0.0):.1f} s of it) | {time.perf_counter() - t:.1f} |")


if __name__ == "__main__":
    main()

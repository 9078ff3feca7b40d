"""The feature-probe audit (`mumis.metrics.recovery.feature_probe`) on saved run directories.

Usage:
    python benchmarks/feature_probe.py --splits RETRAINED_RUN NAME=RUN [NAME=RUN ...]

Every run is probed with the splits (forget and retain sets) of RETRAINED_RUN, which is also
probed itself as the yardstick. Prints one Markdown row per model: plain test accuracy on the
forgotten / remaining classes, then `probe_forget_acc` and `probe_retain_acc`.
"""

from __future__ import annotations

import argparse
import time

import torch

from mumis.checkpoint import load_checkpoint, load_run_splits
from mumis.metrics.recovery import feature_probe


@torch.no_grad()
def _acc(model: torch.nn.Module, pair: tuple[torch.Tensor, torch.Tensor] | None) -> float:
    if pair is None or len(pair[1]) == 0:
        return float("nan")
    x, y = pair
    pred = torch.cat([model(x[i:i + 1000]).argmax(1) for i in range(0, len(x), 1000)])
    return 100.0 * float((pred == y).float().mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--splits", required=True, help="the retrained model's run directory")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("runs", nargs="+", help="NAME=RUN_DIR")
    args = ap.parse_args()
    torch.set_num_threads(1)
    s = load_run_splits(args.splits)
    print("| model | test fgt | test rem | probe_forget_acc | probe_retain_acc | s |\n|---|---|---|---|---|---|")
    for name, path in [("retrained", args.splits)] + [tuple(r.split("=", 1)) for r in args.runs]:
        model, _ = load_checkpoint(path)
        model.eval()
        t = time.perf_counter()
        out = feature_probe(model, s.forget, s.retain, seed=args.seed)
        dt = time.perf_counter() - t
        print(f"| {name} | {_acc(model, s.test_forgotten):.1f} | {_acc(model, s.test_remaining):.1f} | "
              f"{out.forget_acc:.1f} | {out.retain_acc:.1f} | {dt:.1f} |", flush=True)


if __name__ == "__main__":
    main()

"""Does MU-Mis slow down more than training on a busy machine? (issue 15, item 1)

Usage:
    python benchmarks/mumis_under_load.py [--preset paper-cpu-class] [--busy 3] [--repeats 3]

Trains the preset's original (as `benchmarks/mumis_cost.py` does), then times, each the median
of `--repeats`:
- a default `mumis.unlearn` run on the preset's forget set;
- 60 cross-entropy steps of the same model on its remaining data, batch 128, with the thread
  count training would choose;
first on the machine as it is, then with `--busy` extra processes that loop on the CPU. It prints
both times, the load average and the slowdown of each. CPU only: the question is about threads
competing for cores.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mumis_cost import PRESETS, _train  # noqa: E402  (a sibling script)

from mumis import unlearn  # noqa: E402
from mumis.data import load_dataset, make_splits, resolve_manifest  # noqa: E402
from mumis.training import choose_threads, torch_threads  # noqa: E402

CE_STEPS = 60


def ce_time(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Seconds for CE_STEPS SGD steps of a copy of `model` (batch 128, training's thread choice)."""
    import copy

    net = copy.deepcopy(model).train()
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    with torch_threads(choose_threads(net, x, 128, torch.device("cpu"))):
        t0 = time.perf_counter()
        for i in range(CE_STEPS):
            j = (i * 128) % (len(y) - 128)
            opt.zero_grad()
            nn.functional.cross_entropy(net(x[j : j + 128]), y[j : j + 128]).backward()
            opt.step()
    return time.perf_counter() - t0


def measure(model: nn.Module, forget: tuple[torch.Tensor, torch.Tensor], retain: tuple[torch.Tensor, torch.Tensor],
            repeats: int) -> tuple[float, float, int]:
    """(median MU-Mis time, median CE time, MU-Mis steps)."""
    runs = [unlearn(model, forget, device="cpu", seed=0) for _ in range(repeats)]
    ce = [ce_time(model, *retain) for _ in range(repeats)]
    return statistics.median(r.time_s for r in runs), statistics.median(ce), runs[0].steps


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--preset", choices=sorted(k for k in PRESETS if k != "resnet32"), default="paper-cpu-class")
    ap.add_argument("--busy", type=int, default=3, help="busy-looping processes started for the loaded run")
    ap.add_argument("--repeats", type=int, default=3, help="repetitions per timing (the median is printed)")
    args = ap.parse_args(argv)
    if args.busy < 1 or args.repeats < 1:
        print("mumis_under_load: --busy and --repeats must be at least 1", file=sys.stderr)
        return 2
    p = PRESETS[args.preset]
    bundle = load_dataset(p.dataset)
    splits = make_splits(bundle, resolve_manifest(p.forget, bundle, seed=0))
    model, _ = _train(p, bundle.x_train, bundle.y_train, bundle.input_shape, splits.num_classes, 0,
                      torch.device("cpu"), {})
    unlearn(model, splits.forget, device="cpu", seed=0)  # warm-up
    ce_time(model, *splits.retain)
    quiet = measure(model, splits.forget, splits.retain, args.repeats)
    load_q = os.getloadavg()[0]
    spin = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    try:
        time.sleep(3)
        busy = measure(model, splits.forget, splits.retain, args.repeats)
        load_b = os.getloadavg()[0]
    finally:
        for proc in spin:
            proc.kill()
            proc.wait()
    print(f"# mumis_under_load {args.preset}: {p.dataset}, {p.model}, forget {p.forget}; torch {torch.__version__}\n")
    print(f"| machine | load (1 min) | MU-Mis ({quiet[2]} steps) | {CE_STEPS} CE steps |\n|---|---|---|---|")
    print(f"| as it is | {load_q:.2f} | {quiet[0]:.3f} s | {quiet[1]:.3f} s |")
    print(f"| + {args.busy} busy processes | {load_b:.2f} | {busy[0]:.3f} s | {busy[1]:.3f} s |")
    print(f"\nslowdown: MU-Mis {busy[0] / quiet[0]:.2f}x, cross-entropy training {busy[1] / quiet[1]:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

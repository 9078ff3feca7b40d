"""Speed-up of `mumis unlearn` under torchrun: 2 processes against 1, same global batches.

Usage:
    python benchmarks/distributed_speedup.py [--checkpoint runs/fm-orig] [--forget class:3]
        [--steps 100] [--batch-size 128] [--repeats 1] [--out /tmp/mumis-dist-bench]

Without --checkpoint (or if it does not exist) a Fashion-MNIST CNN is trained for one epoch
first (`--dataset digits` for a quick run on the embedded data). Every configuration runs the
same fixed number of MU-Mis steps (stop=none) on the same global batches:

- 1 process, torch's default thread count (all cores): the fair single-process baseline;
- 1 process, 1 thread;
- `torchrun --standalone --nproc_per_node=2`, 1 thread per process (torchrun's default).

Two times are reported per run: the method loop (`time_s` of result.json, rank 0) and the
whole command's wall time (process start, data loading, writing the run directory).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def _env(threads: int | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "OMP_NUM_THREADS")}
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def _run(launcher: list[str], threads: int | None, args: argparse.Namespace, out: Path) -> tuple[float, float, int]:
    shutil.rmtree(out, ignore_errors=True)
    cmd = [*launcher, "-m", "mumis", "-q", "unlearn", "--checkpoint", str(args.checkpoint),
           "--forget", args.forget, "--method", "mumis", "--device", "cpu",
           "--set", "stop=none", "--set", f"max_steps={args.steps}", "--set", f"batch_size={args.batch_size}",
           "--out", str(out)]
    t = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=_env(threads))
    wall = time.perf_counter() - t
    if done.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{done.stdout}{done.stderr}")
    res = json.loads((out / "result.json").read_text())
    return float(res["time_s"]), wall, int(res["steps"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", type=Path, default=Path("runs/fm-orig"))
    ap.add_argument("--dataset", default="fashion-mnist", help="dataset to train on when there is no checkpoint")
    ap.add_argument("--forget", default="class:3")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("/tmp/mumis-dist-bench"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if not (args.checkpoint / "meta.json").exists():
        args.checkpoint = args.out / "orig"
        model = "cnn" if args.dataset == "fashion-mnist" else "mlp"
        shutil.rmtree(args.checkpoint, ignore_errors=True)
        subprocess.run([str(BIN / "python"), "-m", "mumis", "-q", "train", "--dataset", args.dataset,
                        "--model", model, "--epochs", "1", "--out", str(args.checkpoint)], check=True)
    configs = {
        "1 process, default threads": ([str(BIN / "python")], None),
        "1 process, 1 thread": ([str(BIN / "python")], 1),
        "2 processes (torchrun), 1 thread each": (
            [str(BIN / "torchrun"), "--standalone", "--nproc_per_node=2"], 1),
    }
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.2f}; checkpoint {args.checkpoint}, forget {args.forget}, "
          f"{args.steps} steps of batch {args.batch_size}")
    best: dict[str, tuple[float, float]] = {}
    for rep in range(args.repeats):
        for name, (launcher, threads) in configs.items():
            loop, wall, steps = _run(launcher, threads, args, args.out / f"run-{len(best)}")
            if steps != args.steps:
                sys.exit(f"{name}: {steps} steps, expected {args.steps}")
            prev = best.get(name, (float("inf"), float("inf")))
            best[name] = (min(prev[0], loop), min(prev[1], wall))
            print(f"repeat {rep}: {name}: loop {loop:.2f} s, wall {wall:.2f} s", flush=True)
    print("\n| configuration | method loop (s) | whole command (s) |\n|---|---|---|")
    for name, (loop, wall) in best.items():
        print(f"| {name} | {loop:.2f} | {wall:.2f} |")
    base = best["1 process, default threads"]
    two = best["2 processes (torchrun), 1 thread each"]
    one1 = best["1 process, 1 thread"]
    print(f"\nspeed-up of 2 processes over 1 process (default threads): loop {base[0] / two[0]:.2f}x, "
          f"whole command {base[1] / two[1]:.2f}x; over 1 process with 1 thread: loop {one1[0] / two[0]:.2f}x")
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

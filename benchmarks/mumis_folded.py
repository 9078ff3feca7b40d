"""Prototype: MU-Mis's default run (update=last) on a BatchNorm-folded working copy.

With update=last only the classifier moves, so every eval-mode BatchNorm of the backbone stays
the same per-channel affine map for the whole run and can be folded into the conv before it
(`step_profile.fold_batchnorm`; exact up to float rounding). The run then works on the folded
copy, whose forward, input-gradient and double-backward passes have no BatchNorm in them, and
the classifier it learned is copied back into the caller's model: the backbone, its BatchNorm
layers and their statistics are returned untouched, as today.

Usage (the resnet-cpu bench's models; `--norm`/`--seed` as in resnet_study.py):
    python benchmarks/mumis_folded.py --norm bench --seed 0 [--repeats 2]

Prints, per repeat, both runs side by side (interleaved): steps, wall time, test accuracies
and the largest difference between the two returned classifiers.
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
from resnet_study import accs, load  # noqa: I001  (benchmarks/ is the script's own directory)
from step_profile import affine_batchnorm, fold_batchnorm
from torch import nn

from mumis.functional.batchnorm import last_layer
from mumis.methods.base import RunContext, RunOutput
from mumis.methods.mumis import MuMis


class MuMisFolded(MuMis):
    """`MuMis` whose update=last runs fold the backbone's BatchNorm layers first."""

    def run(self, model: nn.Module, ctx: RunContext) -> RunOutput:
        has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
        if self.config.update != "last" or not has_bn:
            return super().run(model, ctx)
        probe = ctx.forget[0][:2]
        work = fold_batchnorm(model, probe)  # a folded copy; `model` is not touched here
        check = ctx.forget[0][:64]
        with torch.no_grad():  # a conv whose output also goes elsewhere cannot be folded
            if not torch.allclose(work(check), model(check), rtol=1e-4, atol=1e-4):
                work = affine_batchnorm(model)  # always exact: every BatchNorm as its affine map
        out = super().run(work, ctx)
        with torch.no_grad():  # the learned classifier goes back into the caller's model
            for p, q in zip(last_layer(model, probe).parameters(recurse=False),
                            last_layer(work, probe).parameters(recurse=False), strict=True):
                p.copy_(q)
        return out


def _run(algo: MuMis, orig: nn.Module, forget: tuple[torch.Tensor, torch.Tensor], k: int,
         seed: int) -> tuple[nn.Module, RunOutput, float]:
    model = copy.deepcopy(orig).eval()
    ctx = RunContext(forget=forget, retain=None, num_classes=k, generator=torch.Generator().manual_seed(seed),
                     device=torch.device("cpu"))
    t = time.perf_counter()
    out = algo.run(model, ctx)
    return model, out, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--norm", default="bench")
    ap.add_argument("--cls", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(1)
    orig, retr, s, retrain_s = load(args.norm, args.cls, args.seed, args.epochs)
    print(f"norm={args.norm} class {args.cls} seed {args.seed}; retraining {retrain_s:.0f} s\n")
    print("| run | steps | time (s) | test_rem | test_fgt | forget | max |fc difference| |\n|---|---|---|---|---|---|---|")
    for _ in range(args.repeats):
        results = [(name, *_run(algo, orig, s.forget, s.num_classes, args.seed))
                   for name, algo in (("default", MuMis()), ("folded", MuMisFolded()))]
        fcs = [last_layer(m, s.forget[0][:2]).weight.detach() for _, m, _, _ in results]
        diff = float((fcs[0] - fcs[1]).abs().max())
        for name, model, out, dt in results:
            a = accs(model, s)
            print(f"| {name} | {out.steps} | {dt:.1f} | {a['test_rem']:.1f} | {a['test_fgt']:.1f} | "
                  f"{a['forget']:.1f} | {diff:.1e} |", flush=True)
        # the backbone and its statistics are returned as they were
        base = {k: v for k, v in orig.state_dict().items() if not k.startswith("fc.")}
        got = {k: v for k, v in results[1][1].state_dict().items() if not k.startswith("fc.")}
        assert all(torch.equal(base[k], got[k]) for k in base), "the folded run changed the backbone"


if __name__ == "__main__":
    main()

"""What a class-forgetting method's outputs are worth against simply removing the class's output.

Usage:
    python benchmarks/class_removal_reference.py BENCH_DIR [--method LABEL ...]

For every whole-class cell of a `mumis bench` directory that has a run of the given method rows
(default `mumis`), prints one Markdown row per model: the second retraining (the floor, when the
bench has `retrain_seeds`), the method's result, and the **class-removal reference**: the
original model with the forgotten class's classifier row set to 0 and its bias 1 below the lowest
other logit on every forget sample. The reference reads the forget set only and moves nothing
but that row, so it is a remaining-data-free lower bar for any class-forgetting method's outputs:
its distribution over the other classes is the original's own (docs/mumis-study.md §10a, §10i).

Columns, all against the retrained model of the cell:
- KL: mean KL(retrained || model) on the forget set (as `kl_to_retrain`), and its ratio to the floor
  (the mean KL of the cell's second retrainings);
- loss AUC: `mia_loss_auc` (forget vs the whole test set), and |AUC - the retrained model's|;
- within: the same AUC against the test images of the forgotten class only (50 = no membership
  signal left inside the class);
- test rem: test accuracy on the remaining classes.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from mumis.checkpoint import load_checkpoint, load_run_splits
from mumis.metrics.divergence import kl_to_retrain
from mumis.metrics.mia import loss_attack_auc


@torch.no_grad()
def _logits(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    return torch.cat([model(x[i:i + 1000]) for i in range(0, len(x), 1000)])


def _removed(forget: torch.Tensor, test: torch.Tensor, c: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The logits with class c's output replaced by one constant, 1 below the lowest other logit
    on every forget sample (a zero row and that bias)."""
    forget, test = forget.clone(), test.clone()
    others = torch.cat([forget[:, :c], forget[:, c + 1:]], 1)
    forget[:, c] = test[:, c] = float(others.min()) - 1.0
    return forget, test


def _row(name: str, z_forget: torch.Tensor, z_test: torch.Tensor, ref: dict[str, torch.Tensor],
         floor_kl: float | None) -> str:
    fy, ty, c = ref["fy"], ref["ty"], int(ref["c"])
    ce = torch.nn.functional.cross_entropy
    lf = ce(z_forget, fy, reduction="none").numpy()
    lt = ce(z_test, ty, reduction="none").numpy()
    same = (ty == c).numpy()
    kl = kl_to_retrain(z_forget, ref["zr_forget"])
    auc = loss_attack_auc(lf, lt).value
    within = loss_attack_auc(lf, lt[same]).value
    rem = 100.0 * float((z_test[~same].argmax(1) == ty[~same]).float().mean())
    ratio = f"{kl / floor_kl:.2f}x" if floor_kl else "-"
    return (f"| {ref['cell']} | {name} | {kl:.3f} | {ratio} | {auc:.2f} | {abs(auc - float(ref['auc_r'])):.2f} | "
            f"{within:.1f} | {rem:.2f} |")


def _records(bench: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((bench / "records").glob("*.json"))]


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("bench", type=Path, help="a `mumis bench` output directory")
    ap.add_argument("--method", action="append", help="method row label(s) (default: mumis)")
    args = ap.parse_args()
    labels = args.method or ["mumis"]
    torch.set_num_threads(1)
    records = _records(args.bench)
    by_role = {(r["dataset"], r["model"], r["scenario"], r["seed"], r["role"]): r for r in records
               if r["role"] in ("original", "reference")}
    floors: dict[tuple, list[dict]] = {}  # the second retrainings of each cell (a seed's may have two)
    for r in records:
        if r["role"] == "floor":
            floors.setdefault((r["dataset"], r["model"], r["scenario"], r["seed"]), []).append(r)
    print("| cell | model | KL | KL / floor | loss AUC | from retrained | within | test rem |\n"
          "|---|---|---|---|---|---|---|---|")
    cells: dict[tuple, list[dict]] = {}  # the method rows of each whole-class cell
    for r in records:
        if r["role"] == "method" and r["method"] in labels and r["scenario"].startswith("class:") \
                and "," not in r["scenario"]:
            cells.setdefault((r["dataset"], r["model"], r["scenario"], r["seed"]), []).append(r)
    for cell, rows in cells.items():
        oracle, original = by_role.get((*cell, "reference")), by_role.get((*cell, "original"))
        if oracle is None or original is None:
            continue
        splits = load_run_splits(args.bench / oracle["run_dir"])
        (fx, fy), (tx, ty) = splits.forget, splits.test
        load = lambda rec: load_checkpoint(args.bench / rec["run_dir"])[0].eval()  # noqa: E731
        retrained = load(oracle)
        zr_forget, zr_test = _logits(retrained, fx), _logits(retrained, tx)
        ce = torch.nn.functional.cross_entropy
        ref = {"fy": fy, "ty": ty, "c": int(cell[2].split(":")[1]), "zr_forget": zr_forget,
               "cell": f"{cell[2]} s{cell[3]}",
               "auc_r": loss_attack_auc(ce(zr_forget, fy, reduction="none").numpy(),
                                        ce(zr_test, ty, reduction="none").numpy()).value}
        seconds = [(_logits(m, fx), _logits(m, tx)) for m in map(load, floors.get(cell, []))]
        floor_kl = sum(kl_to_retrain(zf, zr_forget) for zf, _ in seconds) / len(seconds) if seconds else None
        for zf, zt in seconds:  # the ratio's denominator is their mean KL
            print(_row("second retraining (floor)", zf, zt, ref, floor_kl))
        base = load(original)
        print(_row("original, class output removed", *_removed(_logits(base, fx), _logits(base, tx), ref["c"]), ref,
                   floor_kl))
        for r in rows:
            method = load(r)
            print(_row(r["method"], _logits(method, fx), _logits(method, tx), ref, floor_kl))


if __name__ == "__main__":
    main()

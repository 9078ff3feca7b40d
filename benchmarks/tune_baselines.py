"""Tune the baselines on digits / mlp by the recorded protocol; evaluate the chosen settings held out.

Usage:
    OMP_NUM_THREADS=1 python benchmarks/tune_baselines.py                 # everything (~5 min, 2 cores)
    python benchmarks/tune_baselines.py --methods ssd,jit                   # some methods only
    python benchmarks/tune_baselines.py --skip-tune                         # re-evaluate configs/tuned/ only

Protocol (docs/evaluation.md, "Tuning baselines": "grid on a separate tuning forget set, chosen by gap to
retrain, never hand-picked per table"):
  1. `mumis train` (quick recipe, digits, mlp) the TUNING scenario (original seed 1, retrained
     without class 5 seed 1) and the EVALUATION scenario (original seed 0, retrained without
     class 3 seed 0: the demo's and the smoke benchmark's scenario).
  2. `mumis tune` every method over its grid in configs/tune/digits-mlp.yaml on the tuning
     scenario; the smallest gap_paper to the retrained model wins.
  3. Copy each chosen.yaml to configs/tuned/digits-mlp/METHOD.yaml with a header.
  4. `mumis unlearn --config configs/tuned/digits-mlp/METHOD.yaml` on the evaluation scenario
     (and, for comparison, the untuned preset configs/methods/METHOD.yaml), then `mumis evaluate
     --json`; write the table to docs/baselines.md (the hand-written reading between the
     `<!-- BEGIN reading -->` / `<!-- END reading -->` markers is kept) and runs/tune/summary.json.

Everything goes through the CLI (subprocess), single-threaded (OMP_NUM_THREADS=1). Scratch
outputs live under --work (default runs/tune, git-ignored); logs in --work/log/.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
MUMIS = [sys.executable, "-m", "mumis"]
BEGIN, END = "<!-- BEGIN reading -->", "<!-- END reading -->"


def sh(args: list[str], log: Path) -> str:
    """Run a mumis CLI command (cwd = repository root); append its output to `log`; fail loudly."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cmd = MUMIS + ["-q", *args]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as fh:
        fh.write(f"$ mumis -q {' '.join(args)}\n{proc.stdout}{proc.stderr}\n")
    if proc.returncode != 0:
        raise SystemExit(f"command failed ({proc.returncode}): mumis {' '.join(args)}\n{proc.stderr[-2000:]}")
    return proc.stdout


def train(out: Path, seed: int, forget: str | None, spec: dict[str, Any], log: Path, force: bool) -> None:
    if (out / "model.safetensors").is_file() and not force:
        print(f"  reuse {out}")
        return
    args = ["train", "--dataset", spec["dataset"], "--model", spec["model"], "--recipe", spec["recipe"],
            "--seed", str(seed), "--out", str(out), "--overwrite"]
    if "epochs" in spec:
        args += ["--epochs", str(spec["epochs"])]
    if forget:
        args += ["--forget", forget]
    print("  " + sh(args, log).strip())


def grid_args(grid: dict[str, list[Any]]) -> list[str]:
    out = []
    for key, values in grid.items():
        out += ["--grid", f"{key}=" + ",".join(_yaml_scalar(v) for v in values)]
    return out


def _yaml_scalar(v: Any) -> str:
    return yaml.safe_dump(v, default_flow_style=True).strip().removesuffix("...").strip()


def tuned_header(method: str, record: dict[str, Any], tun: dict[str, Any], today: str) -> str:
    c = record["chosen"]
    crit = record["criterion"]
    return (
        f"# {method}: tuned on digits/mlp (quick recipe), forget {tun['forget']}, seed {tun['seed']}, "
        f"by {crit} (chosen point: {crit} = {c[crit]:.3f})\n"
        f"# grid: {json.dumps(record['grid'])} ({len(record['points'])} points; other settings: the method's defaults)\n"
        f"# chosen: {json.dumps(c['settings'])}\n"
        f"# date: {today}; written by benchmarks/tune_baselines.py from `mumis tune` (configs/tune/digits-mlp.yaml).\n"
        f"# Evaluate on ANOTHER scenario (docs/baselines.md uses class:3 seed 0):\n"
        f"#   mumis unlearn --config configs/tuned/digits-mlp/{method}.yaml --checkpoint ORIGINAL --forget SPEC --out DIR\n"
    )


def strip_comments(text: str) -> str:
    return "".join(line for line in text.splitlines(keepends=True) if not line.startswith("#"))


def held_out(method: str, config: Path, work: Path, tag: str, ev: dict[str, Any], log: Path) -> dict[str, Any]:
    """Unlearn with `config` on the evaluation scenario and evaluate against its retrained model."""
    run = work / tag / method
    orig, ref = work / "eval-original", work / "eval-retrained"
    sh(["unlearn", "--config", str(config), "--checkpoint", str(orig), "--forget", ev["forget"],
        "--reference", str(ref), "--out", str(run), "--overwrite"], log)
    js = work / tag / f"{method}.json"
    sh(["evaluate", "--checkpoint", str(run), "--forget", ev["forget"], "--reference", str(ref),
        "--metrics", "accuracy,mia_efficacy", "--json", str(js)], log)
    rep = json.loads(js.read_text())
    res = json.loads((run / "result.json").read_text())
    return {"gap_paper": rep["gap_paper"], "gap_salun": rep["gap_salun"], "model": rep["model"],
            "reference": rep["reference"], "time_s": res["time_s"], "steps": res["steps"],
            "stop_reason": res["stop_reason"]}


def machine() -> str:
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    return (f"{cpu}, {os.cpu_count()} logical cores (shared VM), Python {platform.python_version()}, "
            f"torch {torch.__version__}, CPU only, OMP_NUM_THREADS=1")


def fmt_settings(s: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in s.items())


def write_docs(path: Path, rows: list[dict[str, Any]], cfg: dict[str, Any], info: dict[str, Any]) -> None:
    tun, ev = cfg["tuning"], cfg["evaluation"]
    ref = rows[0]["held_out"]["reference"] if rows else {}
    old = path.read_text() if path.is_file() else ""
    m = re.search(re.escape(BEGIN) + r".*?" + re.escape(END), old, flags=re.S)
    reading = m.group(0) if m else f"{BEGIN}\n(to be written after reading the table)\n{END}"
    lines = [
        "# Baselines on digits / MLP, tuned by the recorded protocol",
        "",
        "Every baseline's settings were chosen by `mumis tune` on a **tuning** scenario and then evaluated,",
        "unchanged, on a **held-out** scenario (docs/evaluation.md, \"Tuning baselines\": \"grid on a separate tuning forget",
        "set, chosen by gap to retrain, never hand-picked per table\").",
        "",
        f"- tuning scenario: digits, mlp, `{tun['recipe']}` recipe, forget `{tun['forget']}`, original and "
        f"retrained model trained with seed {tun['seed']}; criterion `{tun['criterion']}` (smallest wins).",
        f"- held-out scenario: forget `{ev['forget']}`, models trained with seed {ev['seed']} (the demo's and "
        "the smoke benchmark's scenario): another class *and* another seed.",
        "- grids: `configs/tune/digits-mlp.yaml` (2-6 points per method around its defaults); every "
        "point's settings and gaps: `runs/tune/grid/METHOD/tuning.json`.",
        "- chosen settings: `configs/tuned/digits-mlp/METHOD.yaml` (presets for `mumis unlearn --config`).",
        f"- date: {info['date']}; machine: {info['machine']}; whole script (training, "
        f"{info['points']} tuning points, {2 * len(rows)} held-out runs with evaluation): {info['total_s']:.0f} s.",
        "",
        "## Held-out results (forget `{}`, seed {})".format(ev["forget"], ev["seed"]),
        "",
        "Gaps in accuracy points (lower is better; 0 = the retrained model). *tuning gap* = the chosen",
        f"point's `{tun['criterion']}` on the tuning scenario; *default gap* = `gap_paper` of the untuned preset",
        "(`configs/methods/METHOD.yaml`) on the held-out scenario, for comparison. Accuracies in percent;",
        "*time* = wall time of the unlearning call only, in seconds on a shared 2-core VM (noisy).",
        "",
        "| method | chosen settings | tuning gap | held-out gap_paper | gap_salun | default gap | "
        "forget_acc | test_remaining_acc | test_forgotten_acc | test_acc | MIA-Eff. | time (s) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        "| **retrain** (reference) | - | 0 | 0 | 0 | 0 | {:.1f} | {:.1f} | {:.1f} | {:.1f} | {:.1f} | - |".format(
            ref.get("forget_acc", float("nan")), ref.get("test_remaining_acc", float("nan")),
            ref.get("test_forgotten_acc", float("nan")), ref.get("test_acc", float("nan")),
            ref.get("mia_efficacy", float("nan"))),
    ]
    for r in rows:
        h, mo = r["held_out"], r["held_out"]["model"]
        lines.append(
            f"| {r['method']} | {fmt_settings(r['chosen'])} | {r['tuning_gap']:.2f} | **{h['gap_paper']:.2f}** | "
            f"{h['gap_salun']:.2f} | {r['default']['gap_paper']:.2f} | {mo['forget_acc']:.1f} | "
            f"{mo['test_remaining_acc']:.1f} | {mo['test_forgotten_acc']:.1f} | {mo['test_acc']:.1f} | "
            f"{mo['mia_efficacy']:.1f} | {h['time_s']:.2f} |"
        )
    lines += [
        "",
        "`mumis` is this project's method, not a baseline; it is tuned the same way (lr only) for comparison.",
        "",
        "## Reading",
        "",
        reading,
        "",
        "## Reproduce",
        "",
        "```bash",
        "OMP_NUM_THREADS=1 python benchmarks/tune_baselines.py      # all of the below, then this page",
        "```",
        "",
        "which runs, per method (here `ssd`):",
        "",
        "```bash",
        f"mumis train --recipe {tun['recipe']} --seed {tun['seed']} --out runs/tune/tune-original",
        f"mumis train --recipe {tun['recipe']} --seed {tun['seed']} --forget {tun['forget']} --out runs/tune/tune-retrained",
        f"mumis train --recipe {tun['recipe']} --seed {ev['seed']} --out runs/tune/eval-original",
        f"mumis train --recipe {tun['recipe']} --seed {ev['seed']} --forget {ev['forget']} --out runs/tune/eval-retrained",
        f"mumis tune --checkpoint runs/tune/tune-original --reference runs/tune/tune-retrained --forget {tun['forget']} \\",
        f"    --method ssd {' '.join(grid_args(cfg['methods'].get('ssd', {})))} --out runs/tune/grid/ssd",
        "cp runs/tune/grid/ssd/chosen.yaml configs/tuned/digits-mlp/ssd.yaml   # plus a header",
        "mumis unlearn --config configs/tuned/digits-mlp/ssd.yaml --checkpoint runs/tune/eval-original \\",
        f"    --forget {ev['forget']} --reference runs/tune/eval-retrained --out runs/tune/held-out/ssd",
        f"mumis evaluate --checkpoint runs/tune/held-out/ssd --forget {ev['forget']} \\",
        "    --reference runs/tune/eval-retrained --metrics accuracy,mia_efficacy --json runs/tune/held-out/ssd.json",
        "```",
        "",
    ]
    path.write_text("\n".join(lines))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")


def tune_scenarios(cfg: dict[str, Any], methods: list[str], work: Path, tuned: Path, log: Path,
                   args: argparse.Namespace, today: str) -> list[dict[str, Any]]:
    """Several tuning scenarios (`tuning.scenarios`): every grid point on each; the smallest MEAN
    criterion wins. A method whose per-scenario winners differ is marked `knife_edge`. The held-out
    evaluation is the bench that uses the presets (no `evaluation` section here)."""
    tun = cfg["tuning"]
    crit = tun["criterion"]
    scen = []
    print("1. models")
    for sc in tun["scenarios"]:
        orig = work / f"tune-original-s{sc['seed']}"
        ref = work / f"tune-retrained-{_slug(sc['forget'])}-s{sc['seed']}"
        train(orig, sc["seed"], None, tun, log, args.retrain_models)
        train(ref, sc["seed"], sc["forget"], tun, log, args.retrain_models)
        scen.append((sc, orig, ref))
    rows = []
    for method in methods:
        grid, records = cfg["methods"][method], []
        for j, (sc, orig, ref) in enumerate(scen):
            gdir = work / "grid" / method / f"scenario-{j}"
            if not args.skip_tune:
                print(f"2. tune {method} on {sc['forget']} seed {sc['seed']}: {grid}")
                out = sh(["tune", "--checkpoint", str(orig), "--reference", str(ref), "--forget", sc["forget"],
                          "--method", method, "--criterion", crit, *grid_args(grid), "--out", str(gdir),
                          "--overwrite"], log)
                print("   " + out.strip())
            records.append(json.loads((gdir / "tuning.json").read_text()))
        points = [p["settings"] for p in records[0]["points"]]
        gaps = [[r["points"][i][crit] for r in records] for i in range(len(points))]
        means = [sum(g) / len(g) for g in gaps]
        best = min(range(len(points)), key=lambda i: (means[i], i))
        winners = [min(range(len(points)), key=lambda i, j=j: (gaps[i][j], i)) for j in range(len(scen))]
        config = records[0]["points"][best]["config"]
        header = (
            f"# {method}: tuned on {tun['dataset']}/{tun['model']} ({tun['recipe']} recipe), by the mean {crit} over "
            + ", ".join(f"forget {sc['forget']} seed {sc['seed']}" for sc, _, _ in scen)
            + f" (chosen point: {' / '.join(f'{g:.3f}' for g in gaps[best])}, mean {means[best]:.3f})\n"
            f"# grid: {json.dumps(records[0]['grid'])} ({len(points)} points; other settings: the method's defaults)\n"
            f"# chosen: {json.dumps(points[best])}"
            + ("" if len(set(winners)) == 1 else " (knife-edge: the scenarios alone would pick "
               + " / ".join(json.dumps(points[w]) for w in winners) + ")")
            + f"\n# date: {today}; written by benchmarks/tune_baselines.py --grid {args.grid}.\n"
        )
        (tuned / f"{method}.yaml").write_text(header + yaml.safe_dump(config, sort_keys=False))
        rows.append({"method": method, "chosen": points[best], "gaps": gaps[best], "mean": means[best],
                     "knife_edge": len(set(winners)) > 1, "winners": [points[w] for w in winners],
                     "points": [{"settings": p, crit: g} for p, g in zip(points, gaps, strict=True)]})
        print(f"   chosen {points[best]}: {crit} {gaps[best]} (knife-edge: {rows[-1]['knife_edge']})")
    return rows


def write_scenarios_docs(path: Path, rows: list[dict[str, Any]], cfg: dict[str, Any], info: dict[str, Any]) -> None:
    tun = cfg["tuning"]
    names = [f"{sc['forget']} s{sc['seed']}" for sc in tun["scenarios"]]
    lines = [
        f"# Baselines on {tun['dataset']} / {tun['model']}, tuned by the recorded protocol",
        "",
        f"Written by `benchmarks/tune_baselines.py --grid {info['grid']}` ({info['date']}; {info['machine']};"
        f" {info['points']} grid points on {len(names)} scenarios in {info['total_s']:.0f} s).",
        f"Each point ran on every tuning scenario ({', '.join(names)}); the smallest mean `{tun['criterion']}`"
        " wins. *knife-edge*: the scenarios alone would choose different points. The held-out evaluation of"
        " these presets is the bench that uses them (`*_tuned` rows), on scenarios and seeds no choice saw.",
        "",
        "| method | chosen settings | " + " | ".join(f"gap, {n}" for n in names) + " | mean | knife-edge |",
        "|---|---|" + "---:|" * (len(names) + 1) + "---|",
    ]
    for r in rows:
        edge = "yes: " + " / ".join(fmt_settings(w) for w in r["winners"]) if r["knife_edge"] else "no"
        lines.append(f"| {r['method']} | {fmt_settings(r['chosen'])} | "
                     + " | ".join(f"{g:.2f}" for g in r["gaps"]) + f" | **{r['mean']:.2f}** | {edge} |")
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grid", default="configs/tune/digits-mlp.yaml", help="tuning grids (YAML)")
    ap.add_argument("--work", default="runs/tune", help="scratch folder (git-ignored)")
    ap.add_argument("--tuned", default="configs/tuned/digits-mlp", help="where the chosen presets go")
    ap.add_argument("--docs", default="docs/baselines.md", help="Markdown report ('' = none)")
    ap.add_argument("--methods", default="", help="comma-separated subset (default: all in the grid file)")
    ap.add_argument("--retrain-models", action="store_true", help="retrain the four models even if present")
    ap.add_argument("--skip-tune", action="store_true",
                    help="do not tune; evaluate the presets already in --tuned (needs their tuning.json)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    cfg = yaml.safe_load((ROOT / args.grid).read_text())
    tun, ev = cfg["tuning"], cfg.get("evaluation")
    methods = [m for m in cfg["methods"] if not args.methods or m in args.methods.split(",")]
    unknown = set(filter(None, args.methods.split(","))) - set(cfg["methods"])
    if unknown:
        raise SystemExit(f"methods not in {args.grid}: {sorted(unknown)}")
    work, tuned = ROOT / args.work, ROOT / args.tuned
    log = work / "log" / "tune_baselines.log"
    tuned.mkdir(parents=True, exist_ok=True)
    today = _dt.datetime.now(_dt.timezone.utc).date().isoformat()
    if "scenarios" in tun:
        srows = tune_scenarios(cfg, methods, work, tuned, log, args, today)
        info = {"date": today, "machine": machine(), "total_s": time.perf_counter() - t0, "grid": args.grid,
                "points": sum(len(r["points"]) for r in srows) * len(tun["scenarios"]), "tuning": tun}
        (work / "summary.json").write_text(json.dumps({"info": info, "rows": srows}, indent=1))
        if args.docs:
            write_scenarios_docs(ROOT / args.docs, srows, cfg, info)
        print(f"done in {info['total_s']:.0f} s; summary: {work / 'summary.json'}")
        return

    print("1. models")
    train(work / "tune-original", tun["seed"], None, tun, log, args.retrain_models)
    train(work / "tune-retrained", tun["seed"], tun["forget"], tun, log, args.retrain_models)
    train(work / "eval-original", ev["seed"], None, tun, log, args.retrain_models)
    train(work / "eval-retrained", ev["seed"], ev["forget"], tun, log, args.retrain_models)

    rows, n_points = [], 0
    for method in methods:
        grid = cfg["methods"][method]
        gdir = work / "grid" / method
        if not args.skip_tune:
            print(f"2. tune {method}: {grid}")
            out = sh(["tune", "--checkpoint", str(work / "tune-original"), "--reference",
                      str(work / "tune-retrained"), "--forget", tun["forget"], "--method", method,
                      "--criterion", tun["criterion"], *grid_args(grid), "--out", str(gdir), "--overwrite"], log)
            print("   " + out.strip())
            record = json.loads((gdir / "tuning.json").read_text())
            body = strip_comments((gdir / "chosen.yaml").read_text())
            (tuned / f"{method}.yaml").write_text(tuned_header(method, record, tun, today) + body)
        record = json.loads((gdir / "tuning.json").read_text())
        n_points += len(record["points"])
        print(f"3. held-out {method}")
        row = {
            "method": method, "grid": record["grid"], "chosen": record["chosen"]["settings"],
            "tuning_gap": record["chosen"][tun["criterion"]],
            "tuning_points": [{"settings": p["settings"], "gap_paper": p["gap_paper"]} for p in record["points"]],
            "held_out": held_out(method, tuned / f"{method}.yaml", work, "held-out", ev, log),
            "default": held_out(method, ROOT / "configs" / "methods" / f"{method}.yaml", work, "default", ev, log),
        }
        print(f"   tuning gap {row['tuning_gap']:.2f}, held-out gap_paper {row['held_out']['gap_paper']:.2f} "
              f"(default preset {row['default']['gap_paper']:.2f})")
        rows.append(row)

    summary = work / "summary.json"
    if args.methods and summary.is_file():  # a subset: keep the other methods' rows of the last full run
        done = {r["method"] for r in rows}
        old = {r["method"]: r for r in json.loads(summary.read_text())["rows"] if r["method"] not in done}
        new = {r["method"]: r for r in rows}
        rows = [new.get(m) or old[m] for m in cfg["methods"] if m in new or m in old]
        n_points = sum(len(r["tuning_points"]) for r in rows)
    info = {"date": today, "machine": machine(), "total_s": time.perf_counter() - t0, "points": n_points,
            "tuning": tun, "evaluation": ev}
    summary.write_text(json.dumps({"info": info, "rows": rows}, indent=1))
    if args.docs:
        write_docs(ROOT / args.docs, rows, cfg, info)
        print(f"wrote {args.docs}")
    print(f"done in {info['total_s']:.0f} s; summary: {work / 'summary.json'}")


if __name__ == "__main__":
    main()

"""Hyper-parameter tuning by a recorded protocol (docs/evaluation.md, "Tuning baselines"): grid
search on a *tuning* scenario, chosen by the gap to the retrained model.

    from mumis.tuning import tune, parse_grid
    result = tune(checkpoint="runs/tune/original", reference="runs/tune/retrained",
                  forget="class:5", method="boundary_shrink",
                  grid=parse_grid(["lr=1e-4,1e-3,1e-2"]), out="runs/tune/bs")

The tuning scenario (checkpoint, retrained reference, forget spec) must differ from the one the
chosen settings are later evaluated on (another class or another seed), so that no table's
numbers come from settings picked on its own test. Every grid point is an ordinary unlearning run
(`mumis.runs.unlearn_scenario`: forget-only methods never see the retain data), evaluated with
`mumis.evaluate(..., reference=retrained)`. The point with the smallest gap wins (ties: the first
in grid order). `out` then holds `tuning.json` (grid, every point's settings, metrics and gaps,
the chosen point, the scenario), `chosen.yaml` (a preset for `mumis unlearn --config`) and
`points/NNN/` (the run directory of every point).
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml

from .exceptions import ConfigError
from .utils import atomic_write_json, atomic_write_text, to_jsonable

if TYPE_CHECKING:
    from .checkpoint import TrustModelCode

Criterion = Literal["gap_paper", "gap_salun"]
#: Metric groups each criterion needs (nothing more is computed per point).
_CRITERION_METRICS: dict[str, list[str]] = {
    "gap_paper": ["accuracy"],
    "gap_salun": ["accuracy", "mia_efficacy"],
}


def parse_grid(items: list[str] | None) -> dict[str, list[Any]]:
    """Parse `key=v1,v2,...` strings into {key: [values]}; values are YAML scalars.

    Raises:
        ConfigError: a malformed item, an empty value list or a key given twice.
    """
    grid: dict[str, list[Any]] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or not raw.strip():
            raise ConfigError(f"--grid expects key=v1,v2,..., got {item!r}; for example --grid lr=1e-4,1e-3")
        if key in grid:
            raise ConfigError(f"--grid key {key!r} given twice; list all its values in one --grid {key}=v1,v2")
        values = []
        for v in raw.split(","):
            try:
                values.append(yaml.safe_load(v) if v.strip() else "")
            except (yaml.YAMLError, ValueError, RecursionError):  # not a YAML scalar: keep the text
                values.append(v)
        grid[key] = values
    return grid


def grid_points(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """The cartesian product of the grid, in order (the last key varies fastest)."""
    keys = list(grid)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(grid[k] for k in keys))]


@dataclass
class TuningResult:
    """What `tune` wrote: `out`, the contents of tuning.json and the chosen preset."""

    out: Path
    record: dict[str, Any]
    chosen: dict[str, Any]  # method + resolved settings (the contents of chosen.yaml)


def tune(
    *,
    checkpoint: str | Path,
    reference: str | Path,
    forget: str,
    method: str | None,
    grid: dict[str, list[Any]],
    out: str | Path,
    config_file: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    criterion: Criterion = "gap_paper",
    seed: int = 0,
    split_seed: int | None = None,
    data_dir: str | Path | None = None,
    device: str = "auto",
    overwrite: bool = False,
    progress: bool = False,
    log: Any = None,
    trust_model_code: TrustModelCode = False,
) -> TuningResult:
    """Run every grid point on the tuning scenario, pick the smallest gap, write the record.

    Args:
        checkpoint: run directory of the tuning scenario's original model.
        reference: run directory of the model retrained without `forget` (same split).
        forget: forget spec of the tuning scenario.
        method: method name (or from `config_file`'s `method:` entry).
        grid: {setting: [values]} (see `parse_grid`); at least one point.
        out: directory to create (tuning.json, chosen.yaml, points/).
        config_file: base settings (a preset); `overrides` on top, then each grid point.
        overrides: fixed settings for every point (`--set`).
        criterion: gap_paper (MU-Mis Avg. Gap) or gap_salun (SalUn Avg. Gap).
        seed: the method's seed at every point.
        split_seed: seed of `random:` specs (default: the checkpoint's).
        data_dir: data folder (default: the checkpoint's).
        device: "auto", "cpu" or "cuda[:N]".
        overwrite: replace a non-empty `out`.
        progress: show progress while each point runs.
        log: optional callable(str) told about each finished point.
        trust_model_code: may the runs' user model factory be imported (see
            `checkpoint.load_checkpoint`); default: refused.
    Returns:
        TuningResult.
    Raises:
        ConfigError: empty grid, a grid key or value the method rejects, an unknown criterion,
            a taken `out` (before any work for these), no point with a finite gap, or every
            point leaving the model unchanged (nothing is written then).
        CheckpointError, DataError: unreadable run directories or mismatched splits.
    """
    from .checkpoint import check_model_code, read_meta
    from .runs import Scenario, caching, check_out
    from .utils import staged_run_dir

    if criterion not in _CRITERION_METRICS:
        raise ConfigError(f"criterion must be one of {', '.join(_CRITERION_METRICS)}; got {criterion!r}")
    points = grid_points(grid)
    if not grid or not points:
        raise ConfigError("the grid is empty; give at least one --grid key=v1,v2,...")
    out = Path(out)
    check_out(out, overwrite, protected=[checkpoint, reference, data_dir], kind="tune")
    name, base, typed = _typed_points(method, config_file, overrides, points)
    grid = {k: _unique([t[k] for t in typed]) for k in grid}
    for run in (checkpoint, reference):  # untrusted model code is refused before any work
        check_model_code(read_meta(run), str(run), trust_model_code)
    with caching():
        scenario = Scenario.load(checkpoint, forget, reference=reference, split_seed=split_seed,
                                 data_dir=data_dir, device=device, trust_model_code=trust_model_code)
        with staged_run_dir(out, overwrite=overwrite, kind="tune") as stage:
            record, chosen = _tune_in(stage, out, scenario, name, base, typed, grid, criterion=criterion,
                                      seed=seed, progress=progress, log=log)
    return TuningResult(out=out, record=to_jsonable(record), chosen=chosen)


def _tune_in(stage: Path, out: Path, scenario: Any, name: str, base: dict[str, Any], typed: list[dict[str, Any]],
             grid: dict[str, list[Any]], *, criterion: str, seed: int, progress: bool,
             log: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run the points into `stage` (which becomes `out`), choose, write tuning.json and
    chosen.yaml; (record, chosen)."""
    rows = _run_points(stage, scenario, name, base, typed, criterion=criterion, seed=seed,
                       progress=progress, log=log)
    best = _choose(rows, criterion, out)
    record = _tuning_record(scenario, name, criterion, grid, base, rows, best, seed=seed)
    atomic_write_json(stage / "tuning.json", to_jsonable(record))
    chosen = best["config"]
    header = (f"# {name}: settings chosen by `mumis tune` (smallest {criterion} = {_fmt(best[criterion])})\n"
              # JSON-quoted: a path or spec with a line break cannot end the comment and add keys
              f"# on the tuning scenario {json.dumps(scenario.forget_spec)} of "
              f"{json.dumps(str(record['scenario']['checkpoint']))}; grid: {json.dumps(to_jsonable(grid))}\n"
              f"# use with `mumis unlearn --config chosen.yaml` on another forget set or seed.\n")
    atomic_write_text(stage / "chosen.yaml", header + yaml.safe_dump(chosen, sort_keys=False))
    return record, chosen


def _typed_points(method: str | None, config_file: str | Path | None, overrides: dict[str, Any] | None,
                  points: list[dict[str, Any]]) -> tuple[str, dict[str, Any], list[dict[str, Any]]]:
    """Method name, base settings and each point's grid values as its Config coerced them
    ("1e-3" -> 0.001); every point is checked strictly before any work."""
    from .api import get_method
    from .config import build_config, config_to_dict
    from .runs import resolve_method_settings

    name, base = resolve_method_settings(method, config_file, overrides)
    cls = get_method(name)
    typed = []
    for p in points:
        resolved = config_to_dict(build_config(cls.Config, {**base, **p}, what=f"method {name!r}"))
        typed.append({k: resolved[k] for k in p})
    return name, base, typed


def _run_points(stage: Path, scenario: Any, name: str, base: dict[str, Any], typed: list[dict[str, Any]],
                *, criterion: str, seed: int, progress: bool, log: Any) -> list[dict[str, Any]]:
    """Every grid point as an unlearning run under `stage/points/NNN`, evaluated; the rows."""
    from .runs import evaluate_record, unlearn_scenario

    rows: list[dict[str, Any]] = []
    for i, p in enumerate(typed):
        run_dir = Path("points") / f"{i:03d}"
        done = unlearn_scenario(scenario, name, {**base, **p}, out=stage / run_dir, seed=seed,
                                progress=progress, receipt=False)
        # a point that diverged is a result of the grid, not bad input
        rec = evaluate_record(scenario, done.model, done.record, metrics=_CRITERION_METRICS[criterion])
        rows.append(rec.tuning_row(index=i, settings=to_jsonable(p), run_dir=str(run_dir)))
        if log is not None:
            log(f"[{i + 1}/{len(typed)}] {p}: {criterion} = {_fmt(rows[-1][criterion])}")
    return rows


def _choose(rows: list[dict[str, Any]], criterion: str, out: Path) -> dict[str, Any]:
    """The row with the smallest finite gap (the first of equal ones).

    Raises:
        ConfigError: every point left the model unchanged, or no point has a finite gap.
    """
    if not any(r["weights_changed"] for r in rows):
        # choosing among copies of the original would be a preset that does nothing
        raise ConfigError(f"every grid point left the model unchanged (first point: "
                          f"{rows[0]['stop_reason']}), so there is nothing to choose and nothing was "
                          f"written to {str(out)!r}; widen the grid (e.g. larger lr or max_steps)")
    finite = [r for r in rows if isinstance(r[criterion], float | int) and math.isfinite(r[criterion])]
    if not finite:
        raise ConfigError(f"no grid point gave a finite {criterion}; widen the grid")
    return min(finite, key=lambda r: r[criterion])  # min keeps the first of equal gaps


def _tuning_record(scenario: Any, name: str, criterion: str, grid: dict[str, list[Any]],
                   base: dict[str, Any], rows: list[dict[str, Any]], best: dict[str, Any], *,
                   seed: int) -> dict[str, Any]:
    """The contents of tuning.json."""
    ref = scenario.reference
    described = {
        "checkpoint": str(scenario.checkpoint.resolve()), "reference": str(ref.path.resolve()),
        "forget_spec": scenario.forget_spec, "manifest_hash": (ref.meta.get("manifest") or {}).get("hash"),
        "dataset": (ref.meta.get("dataset") or {}).get("name"), "seed": int(seed),
        "note": "tuning scenario: evaluate the chosen settings on another forget set or seed",
    }
    ref_report = ref.report(scenario.splits, metrics=_CRITERION_METRICS[criterion])
    return {
        "method": name, "criterion": criterion, "grid": to_jsonable(grid), "base_settings": to_jsonable(base),
        "scenario": described, "reference_metrics": ref_report.to_dict()["model"], "points": rows,
        "chosen": {"index": best["index"], "settings": best["settings"], criterion: best[criterion],
                   "config": best["config"]},
    }


def _unique(values: list[Any]) -> list[Any]:
    """Values in first-seen order without repeats (values may be unhashable lists)."""
    out: list[Any] = []
    for v in values:
        if v not in out:
            out.append(v)
    return out


def _fmt(v: Any) -> str:
    return f"{v:.3f}" if isinstance(v, float | int) else str(v)

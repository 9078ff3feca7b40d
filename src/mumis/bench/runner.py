"""Run a benchmark grid: train (or reuse) the models, unlearn, evaluate, write one record per cell.

Layout of a bench directory:
```
DIR/bench.json                                   the resolved grid (checked again on --resume)
DIR/models/<dataset>/<model>/s<seed>/original-<label space>/   run directory (`mumis train`)
DIR/models/<dataset>/<model>/s<seed>/retrain-<scenario>/       the retrained oracle
DIR/runs/<cell-id>/                              unlearning run directory (`mumis unlearn`)
DIR/records/<cell-id>.json                       one record per finished cell
DIR/records/<dataset>__<model>__<scenario>__retrain__s<seed>.json   the oracle's own record
DIR/records/<dataset>__<model>__<scenario>__original__s<seed>.json  the original, not unlearned
DIR/records/<dataset>__<model>__<scenario>__retrain-seed-<x>__s<seed>.json  `retrain_seeds`: a
                                                 further retrained model against the oracle
```
With `retrain_seeds`, each further retrained model is trained once (in the seed-x oracle's
directory when its split holds the same samples, else in `retrain-<scenario>-seed<x>` beside
the oracle),
every record's `evaluation` carries the `floor` block (`mumis.evaluation.floor`) and the floor
row is that model evaluated against the oracle, like a method.
Records carry per-sample losses and input sensitivities on a seeded subsample of each split
(`samples`), which the report's histograms read, and, with the `recovery` metric group (in
`metrics: all`), the recovery audits' accuracies in `evaluation` and `gap_recovery` (see
`mumis.metrics.recovery`); a method's record also names its declared `batchnorm_mode`.
Each record is written atomically when its cell finishes, so an interrupted bench loses at most
the cell it was running; `resume=True` skips cells whose record exists (and was made from the
same settings) and reuses every complete model directory (`meta.json` + `model.safetensors`).
The reference (retrained) model is evaluated once per scenario and seed, and every method of
that scenario is compared against that one report. Sequential scenarios (a chain of requests)
add their own cells, reference models and records: `mumis.bench.sequence`.
"""

from __future__ import annotations

import datetime as _dt
import fnmatch
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..exceptions import ConfigError
from ..runs import RunRecord, Scenario, caching, evaluate_record, unlearn_scenario
from ..utils import atomic_write_json, read_json
from .config import (
    FLOOR_ROLE,
    ORIGINAL_LABEL,
    REFERENCE_LABEL,
    BenchConfig,
    MethodEntry,
    cell_id,
    floor_label,
    key_hash,
    load_bench_config,
    slug,
)

RECORD_FORMAT = "mumis-bench-record/1"
BENCH_FILE = "bench.json"


@dataclass
class BenchResult:
    """What `run_bench` did."""

    out: Path
    cells: int  # cells in the grid (methods only)
    ran: int  # cells run now
    skipped: int  # cells whose record already existed
    models_trained: int
    models_reused: int
    time_s: float


@dataclass
class _Cell:
    dataset: str
    model: str
    scenario: str
    seed: int
    entry: MethodEntry

    @property
    def id(self) -> str:
        return cell_id(self.dataset, self.model, self.scenario, self.entry.label, self.seed)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _complete(run_dir: Path) -> bool:
    return (run_dir / "meta.json").is_file() and (run_dir / "model.safetensors").is_file()


def _record_path(out: Path, cell: str) -> Path:
    return out / "records" / f"{cell}.json"


def _kind(scenario: str) -> str:
    return scenario.split(":", 1)[0].strip()


def _label_space(scenario: str) -> str:
    return "coarse" if _kind(scenario) == "subclass" else "fine"


def _common_key(cfg: BenchConfig, dataset: str, model: str, scenario: str, seed: int) -> dict[str, Any]:
    key: dict[str, Any] = {
        "dataset": dataset, "data_dir": cfg.data_dirs.get(dataset), "model": model, "scenario": scenario,
        "seed": seed, "split_seed": cfg.split_seed_for(seed), "recipe": cfg.recipe, "train": cfg.train,
        "metrics": cfg.metrics}
    if cfg.floor_seeds(seed):  # records carry the floor; without one the keys stay as they were
        key["floor_seeds"] = cfg.floor_seeds(seed)
    if cfg.holdout:  # likewise: only a bench with a holdout has it in its keys
        key["holdout"] = cfg.holdout
    return key


def _read_record(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        rec = read_json(path)
    except ValueError:
        return None  # unreadable: redo the cell
    return rec if isinstance(rec, dict) and rec.get("format") == RECORD_FORMAT else None


def _check_record(path: Path, key: str) -> bool:
    """True when a valid record with this key exists; ConfigError when one with another key does."""
    rec = _read_record(path)
    if rec is None:
        return False
    if rec.get("key") != key:
        raise ConfigError(
            f"record {str(path)!r} was made with other settings than the bench config now gives "
            "for that cell; delete the record (and its run) to redo it, or use a new --out"
        )
    return True


def _prepare_out(out: Path, cfg: BenchConfig, resume: bool) -> dict[str, Any]:
    """Check `out` (and on resume that it was made with the same training settings); return
    the bench.json content to write once every existing record has been checked too."""
    state = {"format": "mumis-bench/1", "config": cfg.to_dict(), "models_key": key_hash(cfg.models_part())}
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not resume:
            raise ConfigError(f"output {str(out)!r} already exists and is not empty; pass --resume to "
                              "continue that bench, or choose another --out")
        bench = out / BENCH_FILE
        if not bench.is_file():
            raise ConfigError(f"{str(out)!r} is not a bench directory (no {BENCH_FILE}); choose another --out")
        old = read_json(bench)
        if old.get("models_key") != state["models_key"]:
            raise ConfigError(
                f"{str(out)!r} was made with other training settings (recipe, train, split_seed or "
                "data_dirs) than this config; a resumed bench must keep them: use a new --out"
            )
        # Debris of a killed run (staged run directories never became real ones); a concurrent
        # bench's (e.g. another --only) is still in use and stays.
        from ..staging import in_use

        for sub in ("models", "runs"):
            for stale in (out / sub).rglob(".*.partial-*") if (out / sub).is_dir() else []:
                if not in_use(stale):
                    shutil.rmtree(stale, ignore_errors=True)
    return state


def run_bench(
    config: BenchConfig | str | Path,
    out: str | Path,
    *,
    resume: bool = False,
    only: Sequence[str] | None = None,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> BenchResult:
    """Run every cell of a benchmark grid and write its record (see the module docstring).

    Args:
        config: a validated `BenchConfig` or the path of a bench YAML file.
        out: the bench directory.
        resume: continue an interrupted bench in `out`: skip finished cells and reuse models.
        only: run only the cells whose id matches one of these shell patterns (`fnmatch`,
            e.g. `*__class-4__mumis__s0`), and the models and reference rows they need; the
            way to recompute one published number.
        progress: show a progress bar of cells (only on a terminal).
        log: called with one line per finished cell / trained model (None: silent).
    Returns:
        BenchResult with counts and the wall time.
    Raises:
        ConfigError: a non-empty `out` without `resume`, a resumed `out` made with other
            settings, or an `only` pattern that matches no cell.
    """
    with caching():  # each dataset and each cached model is read once per process
        return _run_bench(config, Path(out), resume=resume, only=only, progress=progress, log=log)


def _run_bench(config: BenchConfig | str | Path, out: Path, *, resume: bool, only: Sequence[str] | None,
               progress: bool, log: Callable[[str], None] | None) -> BenchResult:
    cfg = config if isinstance(config, BenchConfig) else load_bench_config(config)
    cells = [_Cell(d, m, s, sd, e) for d in cfg.datasets for m in cfg.models for sd in cfg.seeds
             for s in cfg.scenarios for e in cfg.methods]
    from .sequence import cell_key, run_sequences, sequence_cells

    seq = sequence_cells(cfg)  # the sequential scenarios' request cells (`bench.sequence`)
    if only:
        ids = [c.id for c in cells] + [c.id for c in seq]
        for pat in only:
            if not any(fnmatch.fnmatchcase(i, pat) for i in ids):
                raise ConfigError(f"--only {pat!r} matches no cell of this bench; cell ids look like "
                                  f"{ids[0]!r} (dataset__model__scenario__label__s<seed>)")
        cells = [c for c in cells if any(fnmatch.fnmatchcase(c.id, pat) for pat in only)]
        seq = [c for c in seq if any(fnmatch.fnmatchcase(c.id, pat) for pat in only)]
    state = _prepare_out(out, cfg, resume)
    t0 = time.perf_counter()
    keys = {c.id: key_hash({**_common_key(cfg, c.dataset, c.model, c.scenario, c.seed),
                            "method": c.entry.method, "settings": c.entry.settings_for(_kind(c.scenario)),
                            **({} if c.entry.use_holdout else {"holdout": False})})
            for c in cells}
    keys.update({c.id: cell_key(cfg, c) for c in seq})
    done = {i for i in [c.id for c in cells] + [c.id for c in seq] if _check_record(_record_path(out, i), keys[i])}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / BENCH_FILE, state)
    res = BenchResult(out=out, cells=len(cells) + len(seq), ran=0, skipped=len(done), models_trained=0,
                      models_reused=0, time_s=0.0)
    bar = None
    if progress and sys.stderr.isatty():
        from tqdm.auto import tqdm

        bar = tqdm(total=len(cells) + len(seq), initial=len(done), desc="bench", unit="cell", dynamic_ncols=True)

    def say(line: str) -> None:
        if log is None:
            return
        if bar is not None:
            bar.write(line, file=sys.stderr)
        else:
            log(line)

    try:
        groups: dict[tuple[str, str, int, str], list[_Cell]] = {}
        for c in cells:
            groups.setdefault((c.dataset, c.model, c.seed, c.scenario), []).append(c)
        for (d, m, sd, s), group in groups.items():
            todo = [c for c in group if c.id not in done]
            ref_id = cell_id(d, m, s, REFERENCE_LABEL, sd)
            ref_key = key_hash(_common_key(cfg, d, m, s, sd))
            fixed = [ref_id, cell_id(d, m, s, ORIGINAL_LABEL, sd)]
            fixed += [cell_id(d, m, s, floor_label(x), sd) for x in cfg.floor_seeds(sd)]
            if not todo and all(_check_record(_record_path(out, f), ref_key) for f in fixed):
                continue
            _run_group(cfg, out, d, m, sd, s, todo, keys, ref_id, ref_key, res, say, bar)
        run_sequences(cfg, out, seq, done, keys, res, say, bar)
    finally:
        if bar is not None:
            bar.close()
    res.time_s = time.perf_counter() - t0
    return res


def _ensure_model(cfg: BenchConfig, run_dir: Path, res: BenchResult, say: Callable[[str], None],
                  **kw: Any) -> None:
    from ..runs.train import train_run

    if _complete(run_dir):
        res.models_reused += 1
        return
    t = time.perf_counter()
    train_run(out=run_dir, recipe=cfg.recipe, overrides=dict(cfg.train), device=cfg.device,
              overwrite=True, progress=False, holdout=cfg.holdout, **kw)
    res.models_trained += 1
    say(f"trained {run_dir.relative_to(run_dir.parents[3])} in {time.perf_counter() - t:.1f} s")


def _run_group(
    cfg: BenchConfig, out: Path, d: str, m: str, sd: int, s: str, todo: list[_Cell],
    keys: dict[str, str], ref_id: str, ref_key: str, res: BenchResult,
    say: Callable[[str], None], bar: Any,
) -> None:
    """One (dataset, model, seed, scenario): models, the reference report, then the cells."""
    space = _label_space(s)
    split_seed = cfg.split_seed_for(sd)
    data_dir = cfg.data_dirs.get(d)
    base = out / "models" / slug(d) / slug(m) / f"s{sd}"
    orig_dir, ret_dir = base / f"original-{space}", base / f"retrain-{slug(s)}"
    common = {"dataset": d, "model": m, "seed": sd, "split_seed": split_seed, "data_dir": data_dir}
    orig_path = _record_path(out, cell_id(d, m, s, ORIGINAL_LABEL, sd))
    orig_todo = not _check_record(orig_path, ref_key)
    if todo or orig_todo:
        _ensure_model(cfg, orig_dir, res, say, label_space=space, **common)
    _ensure_model(cfg, ret_dir, res, say, forget=s, **common)
    floor_dirs: dict[int, Path] = {}
    for x in cfg.floor_seeds(sd):
        floor_dirs[x], fsplit = _floor_dir(cfg, out, d, m, s, sd, x)
        _ensure_model(cfg, floor_dirs[x], res, say, forget=s, **{**common, "seed": x, "split_seed": fsplit})
    # Without an original to run, the oracle's own run directory gives the scenario (its split is
    # the same). The config's `models:` entry names the factory: that is the opt-in to import it.
    scenario = Scenario.load(orig_dir if todo or orig_todo else ret_dir, s,
                             reference=[ret_dir, *floor_dirs.values()], split_seed=split_seed,
                             data_dir=data_dir, device=cfg.device, trust_model_code=m)
    settings: dict[str, Any] = {"metrics": cfg.metrics, "seed": sd}
    head = {"format": RECORD_FORMAT, "dataset": d, "model": m, "scenario": s, "seed": sd,
            "split_seed": split_seed, "label_space": space}

    def write(cell: str, key: str, record: RunRecord, label: str, role: str, run: Path) -> None:
        atomic_write_json(_record_path(out, cell), record.bench_record(
            {**head, "cell": cell, "key": key}, label=label, role=role,
            run_dir=str(run.relative_to(out)), created=_now()))

    assert scenario.reference is not None  # given above
    t = time.perf_counter()
    reference = scenario.reference.report(scenario.splits, **settings)  # once for every cell
    ref_eval_s = time.perf_counter() - t
    if not _check_record(_record_path(out, ref_id), ref_key):
        write(ref_id, ref_key, _trained(ret_dir, REFERENCE_LABEL).evaluated(reference, ref_eval_s),
              REFERENCE_LABEL, "reference", ret_dir)
    for (x, fdir), fref in zip(floor_dirs.items(), scenario.floor_references, strict=True):
        fid = cell_id(d, m, s, floor_label(x), sd)
        if not _check_record(_record_path(out, fid), ref_key):  # the floor row: a retrain vs the oracle
            rec = evaluate_record(scenario, fref.model(), _trained(fdir, floor_label(x)), **settings)
            write(fid, ref_key, rec, floor_label(x), FLOOR_ROLE, fdir)
    if orig_todo:  # the original before unlearning, against the same oracle
        rec = evaluate_record(scenario, scenario.model, _trained(orig_dir, ORIGINAL_LABEL), **settings)
        write(orig_path.stem, ref_key, rec, ORIGINAL_LABEL, "original", orig_dir)
    for c in todo:
        run_dir = out / "runs" / c.id
        if bar is not None:
            bar.set_postfix_str(c.id, refresh=True)
        done = unlearn_scenario(scenario=scenario, method=c.entry.method,
                                settings=c.entry.settings_for(_kind(s)), out=run_dir, seed=sd,
                                overwrite=True, progress=False, receipt=False, use_holdout=c.entry.use_holdout)
        # a cell that diverged is a result of the bench, not bad input; the model is evaluated
        # as it is in memory (the run directory holds the same weights)
        rec = evaluate_record(scenario, done.model, done.record, **settings)
        write(c.id, keys[c.id], rec, c.entry.label, "method", run_dir)
        res.ran += 1
        gp = rec.gap("gap_paper")
        say(f"{c.id}: gap_paper {gp:.2f}, {rec.steps} steps, {rec.time_s:.2f} s"
            if isinstance(gp, (int, float)) else f"{c.id}: done in {rec.time_s:.2f} s")
        if bar is not None:
            bar.update(1)


def _floor_dir(cfg: BenchConfig, out: Path, d: str, m: str, s: str, sd: int, x: int) -> tuple[Path, int]:
    """Where the model retrained with seed `x` for a cell of seed `sd` lives, and the split seed
    to train it with: the seed-`x` oracle's directory and split seed when that split selects the
    same samples (shared: a fixed split seed, or a class / sub-class spec), else a directory
    beside the cell's oracle, on the cell's split."""
    from ..data import resolve_manifest
    from ..runs.cache import load_dataset

    mine, theirs = cfg.split_seed_for(sd), cfg.split_seed_for(x)
    shared = mine == theirs
    if not shared:
        bundle = load_dataset(d, cfg.data_dirs.get(d))
        shared = resolve_manifest(s, bundle, seed=mine).same_split(resolve_manifest(s, bundle, seed=theirs))
    if shared:
        return out / "models" / slug(d) / slug(m) / f"s{x}" / f"retrain-{slug(s)}", theirs
    return out / "models" / slug(d) / slug(m) / f"s{sd}" / f"retrain-{slug(s)}-seed{x}", mine


def _trained(run: Path, label: str) -> RunRecord:
    """The record of a trained model (the oracle, or the original), before its evaluation."""
    return RunRecord(method=label, config=read_json(run / "meta.json").get("recipe"),
                     time_s=read_json(run / "metrics.json").get("train_time_s"))


def read_records(out: str | Path) -> list[dict[str, Any]]:
    """Every record of a bench directory, sorted by file name.

    Raises:
        ConfigError: `out` has no records folder or no records.
    """
    folder = Path(out) / "records"
    files = sorted(folder.glob("*.json")) if folder.is_dir() else []
    recs = [r for r in (_read_record(f) for f in files) if r is not None]
    if not recs:
        raise ConfigError(f"{str(out)!r} holds no bench records (records/*.json); give the --out "
                          "folder of `mumis bench`")
    return recs


__all__ = ["BENCH_FILE", "RECORD_FORMAT", "BenchResult", "read_records", "run_bench"]

"""The benchmark grid: a strictly validated YAML file of datasets x models x scenarios x methods x seeds.

```yaml
name: smoke                       # optional, shown in the report
datasets: [digits]                # registered dataset names
data_dirs: {fashion-mnist: /path} # optional: data folder per dataset
models: [mlp]                     # mlp, cnn, resnet18 or package.module:function
scenarios: ["class:3", "random:0.1",  # forget specs
            {sequence: ["class:1", "class:3"], name: classes}]  # sequential requests (below)
methods:                          # label -> settings (a list of names means default settings)
  mumis: {}
  grad_ascent: {epochs: 3}
  mumis_v1: {method: mumis, config: configs/methods/mumis.yaml, lr: 1e-4,
             by_kind: {random: {stop: published}}}   # settings for one kind of scenario only
seeds: [0]                        # training, method and evaluation seed
retrain_seeds: [0, 1]             # optional: retrained models per scenario (the floor, below)
holdout: 0.05                     # optional: every model trains without this held-out split (below)
split_seed: 0                     # seed of random: forget specs (an int, or "seed": the cell's seed)
recipe: quick                     # training recipe of the original and retrained models
train: {epochs: 10}               # training overrides (TrainConfig settings, model.KEY options)
metrics: all                      # evaluation groups ("all" or a list, see mumis.evaluation)
device: auto
```

A method entry's `method:` names the registered method (default: the label), `config:` a
preset file (relative paths are read from the YAML file's folder, then from the working
directory), `by_kind:` settings for one kind of scenario (`class`, `subclass`, `random`,
`indices`) on top of the others; the other keys are settings on top of the preset. Everything is checked before any work:
unknown keys, unknown datasets, models or methods, bad settings and forget specs that do not
resolve on their dataset are one `ConfigError`.

`holdout` (default 0: none): the fraction or count of `mumis train --holdout`. Every model of
the bench (originals, oracles, floor models) leaves that class-stratified split out; the methods
that declare they can use a holdout (`needs_holdout`) get it, unless their entry says
`holdout: false` (a strictly forget-data-only row of the same method). Records say which data
each method read (`data_used`).

`retrain_seeds` (default: none beyond the oracle): for a cell of seed S the oracle is still the
model retrained with seed S; every other seed listed trains one more retrained model (same
split), whose distance to the oracle is the retraining floor (docs/evaluation.md). Each becomes
a `retrain (seed X)` row, and every record carries the floor.

A mapping in `scenarios` is a sequential scenario (`mumis.bench.sequence`): `sequence:` lists
at least two forget specs of one label space, forgotten one after another (request k continues
from request k-1's unlearning run), each compared with the model retrained without all
requests so far; `name:` (default: the specs joined) names its cells
(`DATASET__MODEL__seq-NAME__r<k>__LABEL__s<seed>`). Request k is drawn with split seed
`split_seed + k - 1`, so repeated `random:` specs draw different chunks.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..exceptions import MumisError
from ..registry import did_you_mean
from .entries import (  # noqa: F401  (re-exported: the grid's labels and entries)
    FLOOR_ROLE,
    ORIGINAL_LABEL,
    REFERENCE_LABEL,
    SCENARIO_KINDS,
    MethodEntry,
    _err,
    _methods,
    floor_label,
    slug,
)
from .scenarios import SequenceScenario, _resolve_sequence, _scenarios, _specs  # noqa: F401  (re-exported)

TOP_KEYS = ("name", "datasets", "data_dirs", "models", "scenarios", "methods", "seeds",
            "retrain_seeds", "holdout", "split_seed", "recipe", "train", "metrics", "device")
REQUIRED = ("datasets", "models", "scenarios", "methods", "seeds")
@dataclass
class BenchConfig:
    """A validated benchmark grid (see the module docstring for the YAML form)."""

    datasets: list[str]
    models: list[str]
    scenarios: list[str]
    methods: list[MethodEntry]
    seeds: list[int]
    name: str = ""
    data_dirs: dict[str, str] = field(default_factory=dict)
    split_seed: int | str = 0
    recipe: str = "quick"
    train: dict[str, Any] = field(default_factory=dict)
    metrics: str | list[str] = "all"
    device: str = "auto"
    retrain_seeds: list[int] = field(default_factory=list)  # empty: only the oracle
    sequences: list[SequenceScenario] = field(default_factory=list)  # mappings in `scenarios`
    holdout: float | int = 0  # `mumis train --holdout` of every model; 0 = none

    def floor_seeds(self, seed: int) -> list[int]:
        """The seeds of the further retrained models of a cell with seed `seed` (the floor)."""
        return [x for x in self.retrain_seeds if x != int(seed)]

    def split_seed_for(self, seed: int) -> int:
        """The split seed of a cell with training seed `seed`."""
        return int(seed) if self.split_seed == "seed" else int(self.split_seed)

    def models_part(self) -> dict[str, Any]:
        """What the cached original / retrained models depend on (checked on --resume)."""
        return {"data_dirs": self.data_dirs, "split_seed": self.split_seed, "recipe": self.recipe,
                "train": self.train, **({"holdout": self.holdout} if self.holdout else {})}

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "datasets": self.datasets, "data_dirs": self.data_dirs,
            "models": self.models, "scenarios": self.scenarios,
            "methods": [{"label": m.label, "method": m.method, "settings": m.settings, "by_kind": m.by_kind,
                         **({} if m.use_holdout else {"holdout": False})} for m in self.methods],
            "seeds": self.seeds, "split_seed": self.split_seed, "recipe": self.recipe,
            "train": self.train, "metrics": self.metrics, "device": self.device,
            # only when set, so bench.json of a bench without it is unchanged
            **({"retrain_seeds": self.retrain_seeds} if self.retrain_seeds else {}),
            **({"holdout": self.holdout} if self.holdout else {}),
            **({"sequences": [q.to_dict() for q in self.sequences]} if self.sequences else {}),
        }


def cell_id(dataset: str, model: str, scenario: str, label: str, seed: int) -> str:
    """The id of a cell: its record file's and run directory's name."""
    return "__".join([slug(dataset), slug(model), slug(scenario), slug(label), f"s{int(seed)}"])


def key_hash(obj: Any) -> str:
    """Short stable hash of JSON-able data (what a record or a cached model was made from)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _str_list(data: dict[str, Any], key: str, path: str) -> list[str]:
    v = data[key]
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list) or not v or not all(isinstance(x, str) and x.strip() for x in v):
        raise _err(path, f"`{key}` must be a non-empty list of names, got {v!r}")
    if len(set(v)) != len(v):
        raise _err(path, f"`{key}` lists an entry twice: {v!r}")
    return [x.strip() for x in v]


def _seeds(v: Any, path: str, key: str = "seeds") -> list[int]:
    if isinstance(v, int) and not isinstance(v, bool):
        v = [v]
    if (not isinstance(v, list) or not v
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in v)):
        raise _err(path, f"`{key}` must be a non-empty list of integers >= 0, got {v!r}")
    if len(set(v)) != len(v):
        raise _err(path, f"`{key}` lists a seed twice: {v!r}")
    return list(v)


def _metrics(v: Any, path: str) -> str | list[str]:
    from ..evaluation import METRIC_GROUPS

    names = [v] if isinstance(v, str) else v
    if not isinstance(names, list) or not names or not all(isinstance(x, str) for x in names):
        raise _err(path, f"`metrics` must be 'all' or a list of groups, got {v!r}")
    for m in names:
        if m != "all" and m not in METRIC_GROUPS:
            raise _err(path, f"unknown metric group {m!r}.{did_you_mean(m, list(METRIC_GROUPS))} "
                             f"Choose from: all, {', '.join(METRIC_GROUPS)}")
    if "accuracy" not in names and "all" not in names:
        raise _err(path, "`metrics` must include 'accuracy' (the tables and gaps need it), or be 'all'")
    return v if isinstance(v, str) else list(names)


def parse_bench_config(data: Any, *, path: str = "<dict>", base: Path | None = None,
                       check_data: bool = True) -> BenchConfig:
    """Validate a bench config mapping strictly and resolve it.

    Args:
        data: the mapping (e.g. from YAML).
        path: shown in error messages.
        base: folder relative preset paths are read from (default: working directory).
        check_data: load each dataset and resolve every scenario on it, so a forget spec that
            names a missing class or file fails here, before any training.
    Returns:
        BenchConfig.
    Raises:
        ConfigError: anything malformed, unknown or unresolvable (one line).
    """
    base = base if base is not None else Path.cwd()
    name = _top(data, path)
    datasets, data_dirs = _datasets(data, path)
    models = _models(data, path)
    scenarios, sequences = _scenarios(data, path)
    specs = _specs(scenarios + [s for q in sequences for s in q.specs], path)
    methods = _methods(data["methods"], base, path)
    seeds = _seeds(data["seeds"], path)
    retrain_seeds = _seeds(data["retrain_seeds"], path, "retrain_seeds") if "retrain_seeds" in data else []
    split_seed = data.get("split_seed", 0)
    if not (split_seed == "seed" or (isinstance(split_seed, int) and not isinstance(split_seed, bool)
                                     and split_seed >= 0)):
        raise _err(path, f"`split_seed` must be an integer >= 0 or 'seed', got {split_seed!r}")
    recipe, train = _training(data, path, datasets, models)
    holdout = _holdout(data.get("holdout", 0), path, methods)
    metrics = _metrics(data.get("metrics", "all"), path)
    device = _device(data, path)
    cfg = BenchConfig(datasets=datasets, models=models, scenarios=scenarios, methods=methods,
                      seeds=seeds, name=name, data_dirs=dict(data_dirs), split_seed=split_seed,
                      recipe=recipe, train=train, metrics=metrics, device=device,
                      retrain_seeds=retrain_seeds, holdout=holdout, sequences=sequences)
    labels = scenarios + [q.request_label(k) for q in sequences for k in range(1, len(q.specs) + 1)]
    ids = [cell_id(d, m, s, e.label, sd) for d in datasets for m in models for s in labels
           for e in methods for sd in seeds]
    if len(set(ids)) != len(ids):
        raise _err(path, "two cells get the same id (scenarios or labels that differ only in "
                         "punctuation); rename one")
    if check_data:
        _resolve_on_data(cfg, specs, path)
    return cfg


def _top(data: Any, path: str) -> str:
    """Check the mapping's keys; its `name`."""
    if not isinstance(data, dict):
        raise _err(path, "must be a YAML mapping with datasets, models, scenarios, methods and seeds")
    unknown = [k for k in data if k not in TOP_KEYS]
    if unknown:
        k = str(unknown[0])
        raise _err(path, f"unknown key {k!r}.{did_you_mean(k, list(TOP_KEYS))} Valid keys: {', '.join(TOP_KEYS)}")
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise _err(path, f"missing {', '.join(map(repr, missing))}; a bench needs {', '.join(REQUIRED)}")
    name = data.get("name", "") or ""
    if not isinstance(name, str):
        raise _err(path, f"`name` must be a string, got {name!r}")
    return name


def _datasets(data: dict[str, Any], path: str) -> tuple[list[str], dict[str, str]]:
    """`datasets` (names checked) and `data_dirs` (folders that exist)."""
    from ..data import parse_dataset_name

    datasets = _str_list(data, "datasets", path)
    for d in datasets:
        try:
            parse_dataset_name(d)
        except MumisError as e:
            raise _err(path, f"{e} (or NAME@TRAIN[/TEST] for a fixed subset)") from None
    data_dirs = data.get("data_dirs") or {}
    if not isinstance(data_dirs, dict) or not all(isinstance(v, str) for v in data_dirs.values()):
        raise _err(path, "`data_dirs` must map dataset names to folders")
    for d, folder in data_dirs.items():
        if d not in datasets:
            raise _err(path, f"`data_dirs` names {d!r}, which is not in `datasets`")
        if not Path(folder).exists():
            raise _err(path, f"data folder {folder!r} of {d!r} does not exist")
    return datasets, data_dirs


def _models(data: dict[str, Any], path: str) -> list[str]:
    from ..models import MODELS, is_user_factory

    models = _str_list(data, "models", path)
    for m in models:
        if not is_user_factory(m) and m not in MODELS:
            raise _err(path, f"unknown model {m!r}.{did_you_mean(m, MODELS.names())} "
                             f"Choose from: {', '.join(MODELS.names())} or package.module:function")
    return models


def _training(data: dict[str, Any], path: str, datasets: list[str],
              models: list[str]) -> tuple[str, dict[str, Any]]:
    """`recipe` and `train` (overrides valid for every dataset and model)."""
    from ..models import is_user_factory, resolve_model_kwargs
    from ..training import RECIPES, make_train_config, split_overrides

    recipe = data.get("recipe", "quick")
    if recipe not in RECIPES:
        raise _err(path, f"unknown recipe {recipe!r}.{did_you_mean(str(recipe), sorted(RECIPES))} "
                         f"Choose from: {', '.join(sorted(RECIPES))}")
    train = data.get("train") or {}
    if not isinstance(train, dict):
        raise _err(path, f"`train` must be a mapping of training settings, got {train!r}")
    train = {str(k): v for k, v in train.items()}
    train_over, model_over = split_overrides(train)
    for d in datasets:
        for m in models:
            try:
                make_train_config(recipe, dataset=d, model="*" if is_user_factory(m) else m, overrides=train_over)
                if model_over:
                    resolve_model_kwargs(m, model_over)
            except MumisError as e:
                raise _err(path, f"`train` for {d} {m}: {e}") from None
    return recipe, train


def _holdout(v: Any, path: str, methods: list[MethodEntry]) -> float | int:
    """`holdout` (as `mumis train --holdout`), checked against the rows that need or refuse one."""
    from ..api import get_method
    from ..data.forget import parse_holdout

    try:
        held = parse_holdout(v)
    except MumisError as e:
        raise _err(path, f"`holdout`: {e}") from None
    for row in methods:
        need = get_method(row.method).needs_holdout
        if need == "required" and (not held or not row.use_holdout):
            fix = "drop its `holdout: false`" if held else "set `holdout:` (e.g. 0.05)"
            raise _err(path, f"method {row.label!r} ({row.method}) needs a holdout: {fix}")
        if not row.use_holdout and need == "no":
            raise _err(path, f"method {row.label!r}: `holdout: false` is for a method that can use a holdout; "
                             f"{row.method} never reads one (drop the key)")
    return held


def _device(data: dict[str, Any], path: str) -> str:
    from ..utils import resolve_device

    device = data.get("device", "auto")
    if not isinstance(device, str):
        raise _err(path, f"`device` must be a string, got {device!r}")
    try:
        resolve_device(device)
    except MumisError as e:
        raise _err(path, str(e)) from None
    return device


def _resolve_on_data(cfg: BenchConfig, specs: dict[str, Any], path: str) -> None:
    """Load each dataset and resolve every scenario on it with every split seed."""
    from ..data import resolve_manifest
    from ..runs.cache import load_dataset  # read once per process inside `runs.caching()`

    for d in cfg.datasets:
        try:
            bundle = load_dataset(d, cfg.data_dirs.get(d))
        except MumisError as e:
            raise _err(path, f"dataset {d!r}: {e}") from None
        for s in cfg.scenarios:
            for sd in sorted({cfg.split_seed_for(x) for x in cfg.seeds}):
                try:
                    resolve_manifest(specs[s], bundle, seed=sd)
                except MumisError as e:
                    raise _err(path, f"scenario {s!r} on {d}: {e}") from None
        for q in cfg.sequences:
            for sd in sorted({cfg.split_seed_for(x) for x in cfg.seeds}):
                _resolve_sequence(q, bundle, sd, f"{path}", d)


def load_bench_config(path: str | Path, *, check_data: bool = True) -> BenchConfig:
    """Read and validate a bench YAML file (see `parse_bench_config`)."""
    from ..config import load_yaml

    p = Path(path)
    return parse_bench_config(load_yaml(p), path=repr(str(p)), base=p.resolve().parent, check_data=check_data)


__all__ = ["ORIGINAL_LABEL", "REFERENCE_LABEL", "SCENARIO_KINDS", "BenchConfig", "MethodEntry", "SequenceScenario",
           "cell_id", "key_hash", "load_bench_config", "parse_bench_config", "slug"]

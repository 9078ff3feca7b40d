"""Train what the audits need and run them: `mumis audit` in Python.

For one dataset and forget spec the driver trains, with the training API (`mumis.training`):

- N originals (all training data; seeds S..S+N-1, the same models as `mumis train --seed s`),
  unlearned with each method (method seed S+i), or one original unlearned N times with method
  seeds S..S+N-1 (`one_original`, the challenge's protocol);
- N retrained models (retain set only, seeds S..S+N-1: `mumis train --forget SPEC --seed s`);
- with `floor`, N more retrained models (seeds S+N..S+2N-1), scored against the first N: what
  two sets of retrained models score, the floor every other row is read against;
- for the LiRA audit, K shadow models (seeds S+100000+k) trained on the retain set plus either a
  random half of the forget examples (`shadow_unit="example"`: each example IN for exactly K/2
  shadows) or, for class-wise forgetting, the whole forget set in every other shadow
  (`shadow_unit="set"`: the question is then "was the class trained on").

Rows: `retrain` (the floor), `original` (doing nothing: the originals against the retrained
models) and one per method. Everything is seeded: on the CPU the same call gives the same numbers.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from ..exceptions import CheckpointError, ConfigError, DataError
from .common import model_accuracy_pct, model_confidences
from .epsilon import MIN_MODELS, challenge_score
from .lira import fit_gaussians, in_mask_per_example, in_mask_whole_set, ulira

AUDITS = ("epsilon", "lira")
SHADOW_SEED_OFFSET = 100_000
RESULT_FILE = "audit.json"
FORMAT = "mumis-audit/1"


@dataclass
class AuditSettings:
    """How many models and which audits (each one a `mumis audit` flag).

    Attributes:
        models: N, unlearned and retrained models per row (at least 3).
        shadows: K, shadow models of the LiRA audit (even, at least 4).
        audits: "epsilon", "lira" or both.
        one_original: unlearn one original N times (method seeds) instead of N originals.
        floor: also score N more retrained models against the first N (costs N trainings).
        shadow_unit: "example", "set" or "auto" (set for class-wise forgetting, else example).
        variance: LiRA's Gaussians: "global", "per_example" or "auto" (global below 64 shadows).
    """

    models: int = 8
    shadows: int = 16
    audits: tuple[str, ...] = AUDITS
    one_original: bool = False
    floor: bool = True
    shadow_unit: Literal["auto", "example", "set"] = "auto"
    variance: Literal["auto", "global", "per_example"] = "auto"

    def validate(self) -> None:
        if self.models < MIN_MODELS:
            raise ConfigError(f"--models must be at least {MIN_MODELS} (the epsilon score has no bin "
                              f"below 3 models), got {self.models}")
        bad = [a for a in self.audits if a not in AUDITS]
        if bad or not self.audits:
            raise ConfigError(f"unknown audit {bad[0] if bad else '(none)'!r}; choose from {', '.join(AUDITS)}")
        if "lira" in self.audits and (self.shadows < 4 or self.shadows % 2):
            raise ConfigError(f"--shadows must be an even number, at least 4, got {self.shadows}")
        if self.shadow_unit not in ("auto", "example", "set"):
            raise ConfigError(f"--shadow-unit must be auto, example or set, got {self.shadow_unit!r}")
        if self.variance not in ("auto", "global", "per_example"):
            raise ConfigError(f"--variance must be auto, global or per_example, got {self.variance!r}")


@dataclass
class Source:
    """Where the scenario comes from: the data, architecture and training recipe."""

    bundle: Any  # DatasetBundle
    dataset: str
    data_dir: str | None
    model: str
    model_kwargs: dict[str, Any]
    recipe: str
    train_config: Any  # TrainConfig
    checkpoint: str | None = None
    label_space: str | None = None


def resolve_source(
    source: str | Path, *, model: str | None = None, recipe: str | None = None, epochs: int | None = None,
    data_dir: str | Path | None = None, trust_model_code: Any = False,
) -> Source:
    """A dataset name (with --model / --recipe) or a `mumis train` run directory (its dataset,
    architecture and recipe; its weights are not used: the audit trains its own models).

    Raises:
        CheckpointError: a path that is not a training run. ConfigError: --model / --recipe
            given with a checkpoint, bad settings. DataError: unknown dataset, missing data.
    """
    from ..checkpoint import META_FILE, check_model_code, read_meta, run_config
    from ..config import build_config
    from ..data import load_dataset
    from ..models import is_user_factory, resolve_model_kwargs
    from ..training import TrainConfig, make_train_config, recipe_model_options

    if data_dir is not None and not Path(data_dir).exists():
        raise DataError(f"data folder {str(data_dir)!r} does not exist; give the folder holding the data")
    text = str(source)
    p = Path(text)
    if p.is_dir() or (p / META_FILE).exists():
        if model is not None or recipe is not None:
            raise ConfigError(f"{text!r} is a run directory: the architecture and recipe come from it; "
                              "drop --model and --recipe (or give a dataset name instead)")
        meta = read_meta(p)
        if meta.get("kind") != "train":
            raise CheckpointError(f"{text!r} is a {meta.get('kind')!r} run; give the run directory of a "
                                  "`mumis train` run (its recipe is what the audit trains with)")
        check_model_code(meta, text, trust_model_code)
        try:
            spec, ds, rec = meta["model"], meta["dataset"], run_config(meta) or {}
            settings = dict(rec["config"])
        except (KeyError, TypeError):
            raise CheckpointError(f"{text!r}: its meta.json lacks the model, dataset or recipe; "
                                  "re-run the training") from None
        if epochs is not None:
            settings["epochs"] = epochs
        cfg = build_config(TrainConfig, settings, what="training")
        ddir = str(data_dir) if data_dir is not None else ds.get("data_dir")
        bundle = load_dataset(ds["name"], ddir)
        return Source(bundle=bundle, dataset=ds["name"], data_dir=ddir, model=spec["name"],
                      model_kwargs=dict(spec.get("kwargs") or {}), recipe=str(rec.get("name", "?")),
                      train_config=cfg, checkpoint=str(p.resolve()), label_space=ds.get("label_space"))
    from ..data import DATASETS

    if text.partition("@")[0] not in DATASETS and ("/" in text or text.startswith(".")):
        raise CheckpointError(f"{text!r} is neither a run directory nor a dataset name; give a `mumis "
                              "train` run directory or a dataset such as digits")
    name = model or "mlp"
    rec_name = recipe or "quick"
    key = "*" if is_user_factory(name) else name
    over = {} if epochs is None else {"epochs": epochs}
    cfg = make_train_config(rec_name, dataset=text, model=key, overrides=over)
    kwargs = resolve_model_kwargs(name, recipe_model_options(rec_name, dataset=text, model=key))
    bundle = load_dataset(text, data_dir)
    return Source(bundle=bundle, dataset=text, data_dir=None if data_dir is None else str(data_dir),
                  model=name, model_kwargs=kwargs, recipe=rec_name, train_config=cfg)


def _channel_stats(x: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of (N, C, ...) data: each model normalises with its own training data."""
    flat = x.transpose(0, 1).reshape(x.shape[1], -1)
    return flat.mean(dim=1).tolist(), flat.std(dim=1).clamp_min(1e-6).tolist()


def _stats(vals: Sequence[float]) -> dict[str, float]:
    a = np.asarray(vals, dtype=np.float64)
    return {"mean": float(a.mean()), "std": float(a.std()), "min": float(a.min()), "max": float(a.max())}


@dataclass
class _Row:
    """One set of N models: forget-set confidences (N, F) and accuracies."""

    confs: list[np.ndarray]
    retain_acc: list[float]
    test_acc: list[float]
    forget_acc: list[float]

    @classmethod
    def empty(cls) -> _Row:
        return cls([], [], [], [])

    def matrix(self) -> np.ndarray:
        return np.stack(self.confs)

    def accuracies(self) -> dict[str, Any]:
        return {k: _stats(getattr(self, k)) for k in ("retain_acc", "test_acc", "forget_acc")}


def run_audit(
    source: Source,
    *,
    forget: str,
    methods: Sequence[str],
    method_settings: dict[str, dict[str, Any]] | None = None,
    settings: AuditSettings | None = None,
    seed: int = 0,
    split_seed: int = 0,
    device: str = "auto",
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train the models, unlearn, run the audits; return the JSON-ready result (see module doc).

    Raises:
        ConfigError, DataError, ModelError: bad input, found before the first training.
    """
    from ..api import get_method, unlearn
    from ..config import build_config, check_seed
    from ..data import full_manifest, make_splits, resolve_manifest
    from ..models import build_model
    from ..training import choose_threads, train_model
    from ..utils import resolve_device

    st = settings or AuditSettings()
    st.validate()
    seed, split_seed = check_seed(seed), check_seed(split_seed, "split seed")
    say = log or (lambda _m: None)
    method_settings = method_settings or {}
    if not methods:
        raise ConfigError("no method given; pass --method NAME (see `mumis methods`)")
    if len(set(methods)) != len(methods) or {"original", "retrain"} & set(methods):
        raise ConfigError(f"methods must be distinct and not 'original' or 'retrain' (those rows are always "
                          f"there); got {', '.join(methods)}")
    classes = {m: get_method(m) for m in methods}
    for m, kw in method_settings.items():
        if m not in classes:
            raise ConfigError(f"settings given for {m!r}, which is not among the methods ({', '.join(methods)})")
        build_config(classes[m].Config, kw, what=f"method {m!r}")  # a bad key fails before any training
    bundle = source.bundle
    manifest = resolve_manifest(forget, bundle, seed=split_seed)
    if source.label_space is not None and manifest.label_space != source.label_space:
        raise DataError(f"forget spec {forget!r} trains in the {manifest.label_space} label space but the "
                        f"checkpoint's model was trained in the {source.label_space} one; use a spec of that space")
    splits = make_splits(bundle, manifest)
    if len(splits.forget[1]) == 0:
        raise DataError(f"forget spec {forget!r} selects no training sample; nothing to audit")
    full = make_splits(bundle, full_manifest(bundle, manifest.label_space)).retain  # all training data
    dev = resolve_device(device)
    cfg = source.train_config
    unit = st.shadow_unit if st.shadow_unit != "auto" else ("set" if splits.classwise else "example")
    variance = st.variance if st.variance != "auto" else ("global" if st.shadows < 64 else "per_example")
    n, fx, fy = st.models, *splits.forget
    build_model(source.model, input_shape=bundle.input_shape, num_classes=manifest.num_classes,
                seed=0, **source.model_kwargs)  # a bad architecture fails before any training

    def train(x: torch.Tensor, y: torch.Tensor, s: int) -> nn.Module:
        mean, std = _channel_stats(x)
        net = build_model(source.model, input_shape=bundle.input_shape, num_classes=manifest.num_classes,
                          mean=mean, std=std, seed=s, **source.model_kwargs)
        threads = choose_threads(net, x, cfg.batch_size, dev)
        train_model(net, x, y, cfg, seed=s, device=dev, progress=False, threads=threads)
        return net.eval()

    def measure(net: nn.Module, row: _Row) -> None:
        row.confs.append(model_confidences(net, fx, fy))
        row.retain_acc.append(model_accuracy_pct(net, *splits.retain))
        row.test_acc.append(model_accuracy_pct(net, *splits.test))
        row.forget_acc.append(model_accuracy_pct(net, fx, fy))

    times: dict[str, Any] = {"unlearn": {m: 0.0 for m in methods}}
    rows: dict[str, _Row] = {name: _Row.empty() for name in ("retrain", "original", *methods)}
    reference = _Row.empty()
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in methods}
    t_all = time.perf_counter()

    # originals and unlearning first: a method that refuses this scenario fails after one training
    t0 = time.perf_counter()
    t_orig = 0.0
    first: nn.Module | None = None
    for i in range(n):
        if st.one_original and first is not None:
            orig = first
        else:
            t1 = time.perf_counter()
            orig = train(*full, seed + i)
            t_orig += time.perf_counter() - t1
            first = orig
            say(f"original model {i + 1}/{1 if st.one_original else n}")
        measure(orig, rows["original"])
        for m in methods:
            retain = splits.retain if classes[m].requires_retain else None
            t1 = time.perf_counter()
            res = unlearn(orig, splits.forget, method=m, retain=retain, seed=seed + i, device=dev,
                          **method_settings.get(m, {}))
            times["unlearn"][m] += time.perf_counter() - t1
            measure(res.model, rows[m])
            runs[m].append({"seed": seed + i, "steps": res.steps, "stop_reason": res.stop_reason,
                            "time_s": res.time_s})
        say(f"unlearned model {i + 1}/{n} with {', '.join(methods)}")
    times["originals"] = t_orig
    times["originals_and_unlearning"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(n):
        measure(train(*splits.retain, seed + i), reference)
        say(f"retrained model {i + 1}/{n}")
    if st.floor:
        for i in range(n):
            measure(train(*splits.retain, seed + n + i), rows["retrain"])
            say(f"floor: retrained model {n + i + 1}/{2 * n}")
    times["retrained"] = time.perf_counter() - t0

    if not st.floor:
        del rows["retrain"]

    result: dict[str, Any] = {
        "format": FORMAT, "dataset": source.dataset, "forget_spec": forget, "kind": manifest.kind,
        "split_seed": split_seed, "manifest_hash": manifest.hash, "num_forget": int(len(fy)),
        "seed": seed, "methods": list(methods), "model": source.model, "model_kwargs": source.model_kwargs,
        "recipe": source.recipe, "checkpoint": source.checkpoint,
        "settings": {**asdict(st), "audits": list(st.audits), "shadow_unit": unit, "variance": variance},
        "method_settings": method_settings,
        "accuracy": {"reference_retrain": reference.accuracies(),
                     **{name: row.accuracies() for name, row in rows.items()}},
        "runs": runs,
    }
    ref = reference.matrix()
    if "epsilon" in st.audits:
        t0 = time.perf_counter()
        result["epsilon"] = {name: _epsilon_row(row, reference) for name, row in rows.items()}
        times["epsilon"] = time.perf_counter() - t0
    if "lira" in st.audits:
        t0 = time.perf_counter()
        k = st.shadows
        mask = (in_mask_whole_set(k, len(fy)) if unit == "set"
                else in_mask_per_example(k, len(fy), np.random.default_rng(seed)))
        x_all, y_all = full
        shadow_confs = []
        for j in range(k):
            keep = np.sort(np.concatenate([manifest.retain, manifest.forget[mask[j]]]))
            idx = torch.as_tensor(keep, dtype=torch.long)
            shadow_confs.append(model_confidences(train(x_all[idx], y_all[idx], seed + SHADOW_SEED_OFFSET + j),
                                                  fx, fy))
            say(f"shadow model {j + 1}/{k}")
        times["shadows"] = time.perf_counter() - t0
        times["per_shadow"] = times["shadows"] / k
        t0 = time.perf_counter()
        confs = np.stack(shadow_confs)
        fit = fit_gaussians(confs, mask, variance=variance)
        result["lira"] = {name: _lira_row(row, ref, fit) for name, row in rows.items()}
        # How the numbers move with K, for free: the first k shadows are an audit with k shadows
        # (the IN/OUT masks are balanced on every even prefix, the seeds are the same).
        by_k: dict[str, Any] = {}
        for kk in sorted({2 ** p for p in range(2, 12) if 2 ** p < k}):
            v = variance if st.variance != "auto" else ("global" if kk < 64 else "per_example")
            sub = fit_gaussians(confs[:kk], mask[:kk], variance=v)
            by_k[str(kk)] = {name: _lira_row(row, ref, sub) for name, row in rows.items()}
        result["lira_by_shadows"] = by_k
        result["lira_fit"] = {"shadow_unit": unit, "variance": variance, "shadows": k,
                              "sigma_in_median": float(np.median(fit.sigma_in)),
                              "sigma_out_median": float(np.median(fit.sigma_out)),
                              "mu_in_median": float(np.median(fit.mu_in)),
                              "mu_out_median": float(np.median(fit.mu_out))}
        times["lira"] = time.perf_counter() - t0
    times["total"] = time.perf_counter() - t_all
    result["time_s"] = times
    return result


def _finite_or_reason(row: _Row) -> str | None:
    bad = [i for i, c in enumerate(row.confs) if not np.isfinite(c).all()]
    return None if not bad else f"model {bad[0]} gives non-finite outputs (diverged); no score"


def _epsilon_row(row: _Row, ref: _Row) -> dict[str, Any]:
    why = _finite_or_reason(row)
    if why is not None:
        return {"skipped": why}
    res = challenge_score(row.matrix(), ref.matrix(), unlearned_retain_acc=row.retain_acc,
                          retrained_retain_acc=ref.retain_acc, unlearned_test_acc=row.test_acc,
                          retrained_test_acc=ref.test_acc)
    return {**res.summary(), "per_example": [round(float(e), 6) for e in res.epsilons]}


def _lira_row(row: _Row, ref: np.ndarray, fit: Any) -> dict[str, Any]:
    why = _finite_or_reason(row)
    if why is not None:
        return {"skipped": why}
    return ulira(row.matrix(), ref, fit)


# ------------------------------------------------------------------------------- run directory
def audit_run(
    *,
    source: str | Path,
    forget: str,
    methods: Sequence[str],
    out: str | Path,
    method_settings: dict[str, dict[str, Any]] | None = None,
    settings: AuditSettings | None = None,
    model: str | None = None,
    recipe: str | None = None,
    epochs: int | None = None,
    seed: int = 0,
    split_seed: int = 0,
    data_dir: str | Path | None = None,
    device: str = "auto",
    overwrite: bool = False,
    progress: bool = False,
    trust_model_code: Any = False,
) -> tuple[Path, dict[str, Any]]:
    """Run `run_audit` and write `out`: meta.json (kind "audit"), config.yaml and audit.json.

    `out` is checked before any work and built in a staging folder (`mumis.staging`), so a failed
    or interrupted audit leaves nothing; `overwrite` replaces only an earlier mumis run directory.

    Returns:
        (out, the result written to audit.json).
    """
    import yaml

    from ..checkpoint import build_meta
    from ..models import model_spec
    from ..runs.outputs import check_output_dir
    from ..utils import atomic_write_json, atomic_write_text, check_overwritable, staged_run_dir, to_jsonable

    out = Path(out)
    st = settings or AuditSettings()
    st.validate()
    check_output_dir(out)
    check_overwritable(out, overwrite=overwrite,
                       protected=[source, data_dir, forget.partition("indices:")[2] or None])
    src = resolve_source(source, model=model, recipe=recipe, epochs=epochs, data_dir=data_dir,
                         trust_model_code=trust_model_code)
    check_overwritable(out, overwrite=overwrite, protected=[src.data_dir, src.bundle.source or None])

    def say(msg: str) -> None:
        if progress:
            print(f"mumis audit: {msg}", file=sys.stderr, flush=True)

    with staged_run_dir(out, overwrite=overwrite) as stage:
        result = run_audit(src, forget=forget, methods=methods, method_settings=method_settings,
                           settings=st, seed=seed, split_seed=split_seed, device=device, log=say)
        from ..data import resolve_manifest

        manifest = resolve_manifest(forget, src.bundle, seed=split_seed)
        mean, std = _channel_stats(src.bundle.x_train)
        spec = model_spec(src.model, input_shape=src.bundle.input_shape, num_classes=manifest.num_classes,
                          mean=mean, std=std, kwargs=src.model_kwargs)
        from ..config import config_to_dict

        meta = build_meta(kind="audit", model=spec, dataset=src.bundle, data_dir=src.data_dir,
                          manifest=manifest, forget_spec=forget, seed=seed,
                          recipe={"name": src.recipe, "config": config_to_dict(src.train_config)},
                          split_seed=split_seed, methods=list(methods), audit=result["settings"])
        atomic_write_json(stage / "meta.json", meta)
        resolved = {"source": str(source), "forget": forget, "methods": list(methods),
                    "method_settings": method_settings or {}, "seed": seed, "split_seed": split_seed,
                    **result["settings"], "train": config_to_dict(src.train_config)}
        atomic_write_text(stage / "config.yaml", yaml.safe_dump(to_jsonable(resolved), sort_keys=False))
        atomic_write_json(stage / RESULT_FILE, to_jsonable(result))
    return out, result


# ------------------------------------------------------------------------------------- table
def _fmt(v: Any, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{v:.{digits}f}"


def format_table(result: dict[str, Any]) -> str:
    """A plain-text table of the rows: the epsilon score and the LiRA numbers side by side."""
    eps, lira = result.get("epsilon", {}), result.get("lira", {})
    acc = result["accuracy"]
    names = list(acc)  # "reference_retrain" first: the models every row is compared with
    head = ["model", "forget", "retain", "test"]
    if eps:
        head += ["F", "score", "eps_med", "capped"]
    if lira:
        head += ["tpr@1%", "tpr@0.1%", "auc"]
    lines = []
    for name in names:
        a = acc[name]
        shown = "reference" if name == "reference_retrain" else name
        cells = [shown, _fmt(a["forget_acc"]["mean"]), _fmt(a["retain_acc"]["mean"]), _fmt(a["test_acc"]["mean"])]
        if name == "reference_retrain":
            lines.append(cells + ["-"] * (len(head) - len(cells)))
            continue
        if eps:
            e = eps.get(name, {})
            cells += ([_fmt(e["forget_quality"], 3), _fmt(e["final_score"], 3), _fmt(e["epsilon_median"]),
                       _fmt(e["epsilon_capped_frac"])] if "forget_quality" in e else ["n/a"] * 4)
        if lira:
            r = lira.get(name, {})
            mark = "" if r.get("side", "above") == "above" else " (-)"
            cells += ([_fmt(r["tpr_at_1pct_fpr_best"]) + mark, _fmt(r["tpr_at_0_1pct_fpr_best"]) + mark,
                       _fmt(r["auc"])] if "auc" in r else ["n/a"] * 3)
        lines.append(cells)
    widths = [max(len(h), *(len(c[i]) for c in lines)) for i, h in enumerate(head)]
    fmt_line = lambda cs: "  ".join(c.ljust(w) for c, w in zip(cs, widths, strict=True)).rstrip()  # noqa: E731
    out = [fmt_line(head), fmt_line(["-" * w for w in widths]), *(fmt_line(c) for c in lines)]
    n = result["settings"]["models"]
    notes = [f"{n} models per row against the {n} retrained models of the reference row; accuracies in % (means)."]
    if eps:
        notes.append("F: the NeurIPS 2023 challenge's forgetting quality (1 = indistinguishable; with few models "
                     "even retraining scores far below 1), score = F x retain ratio x test ratio; eps_med: "
                     "median per-example epsilon; capped: share of examples at the cap (told apart).")
    if lira:
        k = result["settings"]["shadows"]
        notes.append(f"tpr@: LiRA ({k} shadows) telling this row's forget-set outputs from the retrained "
                     "models' (U-LiRA style); equal to the FPR = indistinguishable; auc 50 = chance; (-): told "
                     "apart on the other side (outputs further from trained-on than a retrained model's).")
    if "retrain" in names:
        notes.append("retrain: another N retrained models (other seeds), the floor to read every row against.")
    for name in names:
        why = (eps.get(name) or lira.get(name) or {}).get("skipped")
        if why:
            notes.append(f"{name}: n/a, {why}.")
    return "\n".join(out + [""] + notes)

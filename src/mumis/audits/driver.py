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

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import nn

from ..exceptions import ConfigError, DataError
from .common import model_accuracy_pct, model_confidences
from .epsilon import challenge_score
from .lira import fit_gaussians, in_mask_per_example, in_mask_whole_set, ulira
from .settings import SHADOW_SEED_OFFSET, AuditSettings, Source

if TYPE_CHECKING:
    from ..data import Manifest, Splits

Variance = Literal["global", "per_example"]

FORMAT = "mumis-audit/1"


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
    from ..config import check_seed

    st = settings or AuditSettings()
    st.validate()
    seed, split_seed = check_seed(seed), check_seed(split_seed, "split seed")
    method_settings = method_settings or {}
    classes = _check_methods(methods, method_settings)
    models = _Models.prepare(source, forget, split_seed=split_seed, device=device)
    unit = st.shadow_unit if st.shadow_unit != "auto" else ("set" if models.splits.classwise else "example")
    variance: Variance = st.variance if st.variance != "auto" else ("global" if st.shadows < 64 else "per_example")
    t_all = time.perf_counter()
    rows, reference, runs, times = _train_rows(models, st, classes, method_settings, seed=seed,
                                               say=log or (lambda _m: None))
    manifest, fy = models.manifest, models.splits.forget[1]
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
    if "epsilon" in st.audits:
        t0 = time.perf_counter()
        result["epsilon"] = {name: _epsilon_row(row, reference) for name, row in rows.items()}
        times["epsilon"] = time.perf_counter() - t0
    if "lira" in st.audits:
        result.update(_lira_result(models, st, rows, reference.matrix(), unit=unit, variance=variance,
                                   seed=seed, times=times, say=log or (lambda _m: None)))
    times["total"] = time.perf_counter() - t_all
    result["time_s"] = times
    return result


def _check_methods(methods: Sequence[str], method_settings: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The method classes by name; ConfigError for no, repeated or reserved names or bad settings."""
    from ..api import get_method
    from ..config import build_config

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
    return classes


@dataclass
class _Models:
    """The scenario every audit model is trained and measured on."""

    source: Source
    manifest: Manifest
    splits: Splits
    full: tuple[torch.Tensor, torch.Tensor]  # all training data
    device: torch.device

    @classmethod
    def prepare(cls, source: Source, forget: str, *, split_seed: int, device: str) -> _Models:
        """Resolve the forget spec and the splits; DataError/ModelError before any training."""
        from ..data import full_manifest, make_splits, resolve_manifest
        from ..models import build_model
        from ..utils import resolve_device

        bundle = source.bundle
        manifest = resolve_manifest(forget, bundle, seed=split_seed)
        if source.label_space is not None and manifest.label_space != source.label_space:
            raise DataError(f"forget spec {forget!r} trains in the {manifest.label_space} label space but the "
                            f"checkpoint's model was trained in the {source.label_space} one; use a spec of that space")
        splits = make_splits(bundle, manifest)
        if len(splits.forget[1]) == 0:
            raise DataError(f"forget spec {forget!r} selects no training sample; nothing to audit")
        full = make_splits(bundle, full_manifest(bundle, manifest.label_space)).retain
        build_model(source.model, input_shape=bundle.input_shape, num_classes=manifest.num_classes,
                    seed=0, **source.model_kwargs)  # a bad architecture fails before any training
        return cls(source=source, manifest=manifest, splits=splits, full=full, device=resolve_device(device))

    def train(self, x: torch.Tensor, y: torch.Tensor, s: int) -> nn.Module:
        """A model of the source's architecture and recipe, trained on (x, y) with seed s."""
        from ..models import build_model
        from ..training import choose_threads, train_model

        mean, std = _channel_stats(x)
        src = self.source
        net = build_model(src.model, input_shape=src.bundle.input_shape, num_classes=self.manifest.num_classes,
                          mean=mean, std=std, seed=s, **src.model_kwargs)
        threads = choose_threads(net, x, src.train_config.batch_size, self.device)
        train_model(net, x, y, src.train_config, seed=s, device=self.device, progress=False, threads=threads)
        return net.eval()

    def measure(self, net: nn.Module, row: _Row) -> None:
        fx, fy = self.splits.forget
        row.confs.append(model_confidences(net, fx, fy))
        row.retain_acc.append(model_accuracy_pct(net, *self.splits.retain))
        row.test_acc.append(model_accuracy_pct(net, *self.splits.test))
        row.forget_acc.append(model_accuracy_pct(net, fx, fy))


def _train_rows(
    models: _Models, st: AuditSettings, classes: dict[str, Any], method_settings: dict[str, dict[str, Any]],
    *, seed: int, say: Callable[[str], None],
) -> tuple[dict[str, _Row], _Row, dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """Train the originals (unlearned by every method), the reference and the floor retrains."""
    from ..api import unlearn

    methods, n, splits = list(classes), st.models, models.splits
    times: dict[str, Any] = {"unlearn": {m: 0.0 for m in methods}}
    rows: dict[str, _Row] = {name: _Row.empty() for name in ("retrain", "original", *methods)}
    reference = _Row.empty()
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in methods}
    # originals and unlearning first: a method that refuses this scenario fails after one training
    t0, t_orig = time.perf_counter(), 0.0
    first: nn.Module | None = None
    for i in range(n):
        if st.one_original and first is not None:
            orig = first
        else:
            t1 = time.perf_counter()
            orig = first = models.train(*models.full, seed + i)
            t_orig += time.perf_counter() - t1
            say(f"original model {i + 1}/{1 if st.one_original else n}")
        models.measure(orig, rows["original"])
        for m in methods:
            retain = splits.retain if classes[m].requires_retain else None
            t1 = time.perf_counter()
            res = unlearn(orig, splits.forget, method=m, retain=retain, seed=seed + i, device=models.device,
                          **method_settings.get(m, {}))
            times["unlearn"][m] += time.perf_counter() - t1
            models.measure(res.model, rows[m])
            runs[m].append({"seed": seed + i, "steps": res.steps, "stop_reason": res.stop_reason,
                            "time_s": res.time_s})
        say(f"unlearned model {i + 1}/{n} with {', '.join(methods)}")
    times["originals"] = t_orig
    times["originals_and_unlearning"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(n):
        models.measure(models.train(*splits.retain, seed + i), reference)
        say(f"retrained model {i + 1}/{n}")
    if st.floor:
        for i in range(n):
            models.measure(models.train(*splits.retain, seed + n + i), rows["retrain"])
            say(f"floor: retrained model {n + i + 1}/{2 * n}")
    else:
        del rows["retrain"]
    times["retrained"] = time.perf_counter() - t0
    return rows, reference, runs, times


def _lira_result(
    models: _Models, st: AuditSettings, rows: dict[str, _Row], ref: np.ndarray, *, unit: str, variance: Variance,
    seed: int, times: dict[str, Any], say: Callable[[str], None],
) -> dict[str, Any]:
    """Train the K shadows and score every row (and every power-of-two prefix of the shadows)."""
    t0 = time.perf_counter()
    k, (fx, fy), manifest = st.shadows, models.splits.forget, models.manifest
    mask = (in_mask_whole_set(k, len(fy)) if unit == "set"
            else in_mask_per_example(k, len(fy), np.random.default_rng(seed)))
    x_all, y_all = models.full
    shadow_confs = []
    for j in range(k):
        keep = np.sort(np.concatenate([manifest.retain, manifest.forget[mask[j]]]))
        idx = torch.as_tensor(keep, dtype=torch.long)
        net = models.train(x_all[idx], y_all[idx], seed + SHADOW_SEED_OFFSET + j)
        shadow_confs.append(model_confidences(net, fx, fy))
        say(f"shadow model {j + 1}/{k}")
    times["shadows"] = time.perf_counter() - t0
    times["per_shadow"] = times["shadows"] / k
    t0 = time.perf_counter()
    confs = np.stack(shadow_confs)
    fit = fit_gaussians(confs, mask, variance=variance)
    out: dict[str, Any] = {"lira": {name: _lira_row(row, ref, fit, curve=True) for name, row in rows.items()}}
    # How the numbers move with K, for free: the first k shadows are an audit with k shadows
    # (the IN/OUT masks are balanced on every even prefix, the seeds are the same).
    by_k: dict[str, Any] = {}
    for kk in sorted({2 ** p for p in range(2, 12) if 2 ** p < k}):
        v: Variance = variance if st.variance != "auto" else ("global" if kk < 64 else "per_example")
        sub = fit_gaussians(confs[:kk], mask[:kk], variance=v)
        by_k[str(kk)] = {name: _lira_row(row, ref, sub) for name, row in rows.items()}
    out["lira_by_shadows"] = by_k
    out["lira_fit"] = {"shadow_unit": unit, "variance": variance, "shadows": k,
                       "sigma_in_median": float(np.median(fit.sigma_in)),
                       "sigma_out_median": float(np.median(fit.sigma_out)),
                       "mu_in_median": float(np.median(fit.mu_in)),
                       "mu_out_median": float(np.median(fit.mu_out))}
    times["lira"] = time.perf_counter() - t0
    return out


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


def _lira_row(row: _Row, ref: np.ndarray, fit: Any, *, curve: bool = False) -> dict[str, Any]:
    why = _finite_or_reason(row)
    if why is not None:
        return {"skipped": why}
    return ulira(row.matrix(), ref, fit, curve=curve)

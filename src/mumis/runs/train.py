"""`train_run`, what `mumis train` does: data + forget spec -> trained model -> run directory.

An original model trains on everything (no forget spec); the retrained oracle on the retain
set only, with the same recipe and seed. Both leave out the run's holdout (`--holdout`): a
seeded, class-stratified validation split of the training data, recorded in the manifest,
that the methods declaring `needs_holdout` may read (evaluation only for its loss rank test). Everything is validated before any work; the run
directory appears only when complete (`utils.staged_run_dir`).
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import yaml
from torch import nn

from .. import distributed
from ..config import config_to_dict
from ..data.splits import Splits
from ..exceptions import ConfigError, DataError
from ..training.loop import check_distributed_training, model_accuracy, train_model
from ..training.recipes import TrainConfig, make_train_config, recipe_model_options, split_overrides
from ..training.threads import choose_threads
from ..utils import atomic_write_json, atomic_write_text, check_overwritable, resolve_device, sync


@dataclass
class TrainResult:
    """What `train_run` produced."""

    run_dir: Path
    model: nn.Module
    meta: dict[str, Any]
    metrics: dict[str, Any]
    history: list[dict[str, float]] = field(default_factory=list)


def _channel_stats(x: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of (N, C, ...) data (as DatasetBundle.channel_stats)."""
    flat = x.transpose(0, 1).reshape(x.shape[1], -1)  # (C, N*...)
    return flat.mean(dim=1).tolist(), flat.std(dim=1).clamp_min(1e-6).tolist()


def _load_splits(out: Path, dataset: str, forget: list[str], seeds: list[int], split_seed: int,
                 data_dir: str | Path | None, label_space: Literal["fine", "coarse"] | None,
                 overwrite: bool, holdout: float | int) -> tuple[Any, Any, Splits]:
    """The dataset bundle, the manifest (forget spec or everything, less the holdout) and the splits."""
    from ..data import full_manifest, make_splits, resolve_manifest
    from ..data.forget import draw_holdout
    from .cache import load_dataset  # read once per process inside `runs.caching()` (bench, demo)

    if data_dir is not None and not Path(data_dir).exists():
        raise DataError(f"data folder {str(data_dir)!r} does not exist; give the folder holding "
                        f"the {dataset} files with --data-dir")
    bundle = load_dataset(dataset, data_dir)
    if Path(bundle.source).exists():  # the default data folder is protected from --overwrite too
        check_overwritable(out, overwrite=overwrite, protected=[bundle.source])
    held = draw_holdout(bundle, holdout, split_seed)
    if forget:
        from .chain import union_manifest

        manifest = (resolve_manifest(forget[0], bundle, seed=seeds[0], holdout=held) if len(forget) == 1
                    else union_manifest(forget, bundle, seeds, held))
        if label_space is not None and label_space != manifest.label_space:
            raise ConfigError(f"forget spec {manifest.spec!r} trains in the {manifest.label_space} label "
                              f"space, not {label_space!r}; drop --label-space")
    else:
        manifest = full_manifest(bundle, label_space or "fine", holdout=held)
        if (label_space == "coarse") and bundle.coarse_classes is None:
            raise DataError(f"dataset {dataset!r} has no superclass labels; drop --label-space coarse")
    return bundle, manifest, make_splits(bundle, manifest)


def _settings(recipe: str, *, dataset: str, model: str, epochs: int | None,
              overrides: dict[str, Any] | None,
              model_kwargs: dict[str, Any] | None) -> tuple[TrainConfig, dict[str, Any]]:
    """The training settings and model options: recipe, then the caller's overrides."""
    from ..models import is_user_factory, resolve_model_kwargs

    train_over, model_over = split_overrides(overrides)
    if epochs is not None:
        train_over["epochs"] = epochs
    model_key = "*" if is_user_factory(model) else model
    cfg = make_train_config(recipe, dataset=dataset, model=model_key, overrides=train_over)
    recipe_mkw = recipe_model_options(recipe, dataset=dataset, model=model_key)
    return cfg, resolve_model_kwargs(model, {**recipe_mkw, **(model_kwargs or {}), **model_over})


def _build_net(model: str, bundle: Any, manifest: Any, x_tr: torch.Tensor, *, seed: int,
               kwargs: dict[str, Any]) -> tuple[nn.Module, dict[str, Any]]:
    """The initialised model and its meta.json description; a misfit is one line, before any work."""
    from ..models import build_model, model_spec
    from ..models.checks import probe_model

    # Normalisation from the data this model trains on: the oracle never sees the forget set.
    mean, std = _channel_stats(x_tr)
    net = build_model(model, input_shape=bundle.input_shape, num_classes=manifest.num_classes,
                      mean=mean, std=std, seed=seed, **kwargs)
    probe_model(net, x_tr, what="training", num_classes=manifest.num_classes)
    spec = model_spec(model, input_shape=bundle.input_shape, num_classes=manifest.num_classes,
                      mean=mean, std=std, kwargs=kwargs)
    return net, spec


def _final_metrics(net: nn.Module, splits: Splits, cfg: TrainConfig, *, forget: bool,
                   train_time: float, dev: torch.device, threads: int | None) -> dict[str, Any]:
    """metrics.json: accuracies of the trained model on its splits, time and resources."""
    ebs = cfg.eval_batch_size
    x_tr, y_tr = splits.retain
    metrics: dict[str, Any] = {
        "train_acc": model_accuracy(net, x_tr, y_tr, batch_size=ebs),
        "test_acc": model_accuracy(net, *splits.test, batch_size=ebs),
        "train_time_s": train_time,
        "epochs": cfg.epochs,
        "num_train": int(len(y_tr)),
        "device": str(dev),
        "threads": threads if threads is not None else torch.get_num_threads(),
        "world_size": distributed.world(),
    }
    if splits.holdout is not None:  # how the model treats unseen samples (not an evaluation)
        metrics["num_holdout"] = int(len(splits.holdout[1]))
        metrics["holdout_acc"] = model_accuracy(net, *splits.holdout, batch_size=ebs)
    if forget:
        metrics["retain_acc"] = metrics["train_acc"]
        metrics["forget_acc"] = model_accuracy(net, *splits.forget, batch_size=ebs)
        if splits.test_remaining is not None and splits.test_forgotten is not None:
            metrics["test_remaining_acc"] = model_accuracy(net, *splits.test_remaining, batch_size=ebs)
            metrics["test_forgotten_acc"] = model_accuracy(net, *splits.test_forgotten, batch_size=ebs)
    return metrics


def _write_run(stage: Path, net: nn.Module, meta: dict[str, Any], metrics: dict[str, Any],
               history: list[dict[str, float]], resolved: dict[str, Any]) -> None:
    from ..checkpoint import save_model_dir

    save_model_dir(stage, net, meta)
    atomic_write_json(stage / "metrics.json", metrics)
    atomic_write_text(stage / "history.jsonl", "".join(json.dumps(h) + "\n" for h in history))
    atomic_write_text(stage / "config.yaml", yaml.safe_dump(resolved, sort_keys=False))


def _train_and_save(out: Path, net: nn.Module, splits: Splits, cfg: TrainConfig,
                    meta: dict[str, Any], resolved: dict[str, Any], *, overwrite: bool, seed: int,
                    dev: torch.device, progress: bool,
                    threads: int | None) -> tuple[list[dict[str, float]], dict[str, Any]]:
    """Train on the retain split and write the run directory (rank 0 only): (history, metrics)."""
    from ..utils import staged_run_dir

    x_tr, y_tr = splits.retain
    # Under torchrun every rank trains (its part of each batch); only rank 0 writes `out`.
    staged = staged_run_dir(out, overwrite=overwrite) if distributed.is_main() else contextlib.nullcontext(None)
    with staged as stage:
        t0 = time.perf_counter()
        history = train_model(net, x_tr, y_tr, cfg, seed=seed, device=dev, progress=progress,
                              threads=threads)
        sync(dev)
        train_time = time.perf_counter() - t0
        net.eval()
        metrics = _final_metrics(net, splits, cfg, forget=bool(meta["forget_spec"]), train_time=train_time,
                                 dev=dev, threads=threads)
        if stage is not None:
            _write_run(stage, net, meta, metrics, history, resolved)
    return history, metrics


def _threads(threads: int | None, net: nn.Module, x_tr: torch.Tensor, cfg: TrainConfig,
             dev: torch.device) -> int | None:
    """The CPU threads to train with (`--threads`, else `choose_threads`)."""
    if threads is not None and threads < 1:
        raise ConfigError(f"--threads must be at least 1, got {threads}")
    return choose_threads(net, x_tr, cfg.batch_size, dev) if threads is None else threads


def _resolved(*, dataset: str, meta: dict[str, Any], model: str, spec: dict[str, Any], forget: str | None,
              manifest: Any, recipe: str, seed: int, split_seed: int, dev: torch.device, cfg: TrainConfig,
              holdout: float | int) -> dict[str, Any]:
    """config.yaml: the run's settings, resolved."""
    return {
        "dataset": dataset, "data_dir": meta["dataset"]["data_dir"], "model": model,
        "model_kwargs": spec["kwargs"], "forget": forget, "label_space": manifest.label_space,
        "recipe": recipe, "seed": int(seed), "split_seed": int(split_seed),
        "device": str(dev), "train": config_to_dict(cfg),
        **({"holdout": holdout} if holdout else {}),  # absent: the config.yaml of older runs
    }


def train_run(
    *,
    out: str | Path,
    dataset: str = "digits",
    model: str = "mlp",
    forget: str | list[str] | None = None,
    forget_chain: str | Path | None = None,
    recipe: str = "quick",
    seed: int = 0,
    split_seed: int = 0,
    data_dir: str | Path | None = None,
    label_space: Literal["fine", "coarse"] | None = None,
    holdout: float | int | str = 0,
    epochs: int | None = None,
    overrides: dict[str, Any] | None = None,
    model_kwargs: dict[str, Any] | None = None,
    device: str = "auto",
    threads: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> TrainResult:
    """Train an original model (no `forget`) or the retrained oracle (`forget` given) into `out`.

    Args:
        out: the run directory to create.
        dataset: registered dataset name.
        model: `mlp`, `cnn`, `resnet18` or `package.module:function`.
        forget: forget spec (`class:3`, `subclass:NAME`, `random:0.1`, `indices:FILE`), or several.
        forget_chain: an unlearning run: also without all its chain forgot (`runs.chain`).
        recipe: `quick` or `memorise`.
        seed: training seed (initialisation, shuffling, augmentation).
        split_seed: seed of the forget split (random specs); part of the manifest.
        data_dir: data folder (default: the dataset's own default).
        label_space: "coarse" trains an original on superclass labels (for sub-class
            scenarios); with a `subclass:` spec it is implied.
        holdout: validation split no model of the run trains on (class-stratified, drawn with
            `split_seed`: give both models the same): 0.05, "5%", a count (300) or 0 (none).
        epochs: overrides the recipe's epochs.
        overrides: TrainConfig settings (`lr`, ...) and model options as `model.KEY`.
        model_kwargs: model options (merged with the `model.KEY` overrides).
        device: "auto", "cpu", "cuda[:N]".
        threads: CPU threads for training (default: 1 for small models and data, see
            `choose_threads`, else torch's setting).
        overwrite: replace an existing non-empty `out`.
        progress: progress bar on a terminal.

    Returns:
        TrainResult with the run directory, the trained model (eval mode), meta and metrics.

    Raises:
        ConfigError, DataError, ModelError: bad input, before anything is written.
    """
    from ..checkpoint import build_meta
    from ..data.forget import parse_holdout
    from .chain import check_union, train_forget_specs
    out, holdout = Path(out), parse_holdout(holdout)
    specs, seeds, split_seed, union = train_forget_specs(forget, forget_chain, split_seed)  # chain: its seeds
    check_overwritable(out, overwrite=overwrite, protected=[data_dir])  # first: a taken --out fails at once
    cfg, mkw = _settings(recipe, dataset=dataset, model=model, epochs=epochs,
                         overrides=overrides, model_kwargs=model_kwargs)
    dev = resolve_device(device)
    bundle, manifest, splits = _load_splits(out, dataset, specs, seeds, split_seed, data_dir,
                                            label_space, overwrite, holdout)
    check_union(manifest, union, forget_chain, extra=bool(forget))
    x_tr, y_tr = splits.retain
    net, spec = _build_net(model, bundle, manifest, x_tr, seed=seed, kwargs=mkw)
    meta = build_meta(kind="train", model=spec, dataset=bundle, data_dir=data_dir,
                      manifest=manifest, forget_spec=manifest.spec if specs else None, seed=seed,
                      recipe={"name": recipe, "config": config_to_dict(cfg)},
                      split_seed=int(split_seed))
    resolved = _resolved(dataset=dataset, meta=meta, model=model, spec=spec, forget=meta["forget_spec"],
                         manifest=manifest, recipe=recipe, seed=seed, split_seed=split_seed, dev=dev, cfg=cfg,
                         holdout=holdout)
    threads = _threads(threads, net, x_tr, cfg, dev)
    if distributed.is_distributed():
        check_distributed_training(net)  # before any work
    history, metrics = _train_and_save(out, net, splits, cfg, meta, resolved, overwrite=overwrite,
                                       seed=seed, dev=dev, progress=progress, threads=threads)
    distributed.barrier()  # the run directory exists on return, on every rank
    return TrainResult(run_dir=out, model=net, meta=meta, metrics=metrics, history=history)


__all__ = ["TrainResult", "train_run"]

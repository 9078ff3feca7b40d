"""`mumis unlearn`: apply an unlearning method to a trained model's run directory.

    mumis unlearn --checkpoint runs/original --forget class:3 --method mumis \\
        [--config configs/methods/mumis.yaml] [--set lr=1e-4 ...] [--seed 0] \\
        [--reference runs/retrained] --out runs/mumis

The forget spec is resolved on the checkpoint's dataset with the checkpoint's split seed, so a
`random:` spec selects the same samples as for the retrained model. Only the forget set is handed
to methods that do not declare `requires_retain`. The run directory holds `model.safetensors`,
`meta.json` (kind "unlearn"), `config.yaml` (method + resolved settings, usable again as
`--config`), `history.jsonl` and `result.json`; it appears only when the run is complete.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from ..checkpoint import check_reference, split_seed_of
from ..exceptions import ConfigError, DataError, UnlearningError
from ._checks import seed_type
from ._common import add_trust_model_code

if TYPE_CHECKING:
    from ..checkpoint import TrustModelCode
    from ..utils import OutputKind

_SET_HELP = "a method setting, e.g. --set lr=1e-4 (repeatable; see `mumis methods NAME`)"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "unlearn", help="unlearn a forget set from a trained model (writes a run directory)",
        description="Apply an unlearning method to the model of a `mumis train` run directory.",
    )
    p.add_argument("--checkpoint", required=True, metavar="DIR", help="run directory of the original model")
    p.add_argument("--forget", required=True, metavar="SPEC",
                   help="class:3, class:3,5, subclass:NAME_OR_ID, random:0.1, random:600 or indices:FILE")
    p.add_argument("--method", metavar="NAME",
                   help="unlearning method (see `mumis methods`); may come from --config instead")
    p.add_argument("--config", metavar="FILE.yaml",
                   help="YAML mapping of method settings, e.g. a preset from configs/methods/")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=_SET_HELP)
    p.add_argument("--seed", type=seed_type, default=0, help="seed of the method's random choices (default 0)")
    p.add_argument("--split-seed", type=seed_type, default=None, metavar="S",
                   help="seed for random: forget specs (default: the checkpoint's split seed)")
    p.add_argument("--data-dir", default=None, metavar="PATH",
                   help="data folder (default: the one recorded in the checkpoint)")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda[:N]")
    p.add_argument("--reference", metavar="DIR",
                   help="retrained model's run directory; its split must match this one")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    p.add_argument("--out", required=True, metavar="DIR", help="run directory to create")
    add_trust_model_code(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..config import parse_set_args

    done = unlearn_run(
        checkpoint=args.checkpoint, forget=args.forget, method=args.method, config_file=args.config,
        overrides=parse_set_args(args.set), seed=args.seed, split_seed=args.split_seed,
        data_dir=args.data_dir, device=args.device, reference=args.reference, out=args.out,
        overwrite=args.overwrite, progress=not getattr(args, "quiet", False) and sys.stderr.isatty(),
        trust_model_code=args.trust_model_code,
        fail_on_divergence=True,
    )
    from .. import distributed

    r = done.result
    if r["status"] == "diverged" and distributed.is_main():
        print(f"mumis: warning: {r['method']} diverged; {done.run_dir} holds the last finite weights "
              "(result.json status: diverged)", file=sys.stderr)
    if distributed.is_distributed():  # every rank says where it stopped (they must agree)
        print(f"mumis: rank {distributed.rank()} of {distributed.world()}: {r['steps']} steps, "
              f"stopped: {r['stop_reason']}", file=sys.stderr)
    if not distributed.is_main():
        return 0
    print(f"{r['method']}: {r['steps']} steps in {r['time_s']:.2f} s, stopped: {r['stop_reason']} "
          f"-> {done.run_dir}")
    return 0


# --------------------------------------------------------------------------- library side
@dataclass
class UnlearnRun:
    """What `unlearn_run` wrote: the run directory and the contents of its JSON files."""

    run_dir: Path
    meta: dict[str, Any]
    result: dict[str, Any]
    history: list[dict[str, Any]]


def load_method_file(path: str | Path) -> tuple[str | None, dict[str, Any]]:
    """Read a method settings file: a YAML mapping of settings, optionally with `method: NAME`.

    The presets in `configs/methods/` and the `config.yaml` of an unlearning run have this form.

    Returns:
        (method name or None, settings).
    Raises:
        ConfigError: missing or malformed file, or a `method` entry that is not a name.
    """
    from ..config import load_yaml

    data = load_yaml(path)
    method = data.pop("method", None)
    if method is not None and not isinstance(method, str):
        raise ConfigError(f"config file {str(path)!r}: `method` must be a method name, got {method!r}")
    return method, data


def resolve_method_settings(
    method: str | None, config_file: str | Path | None, overrides: dict[str, Any] | None
) -> tuple[str, dict[str, Any]]:
    """Method name and settings from --method, --config and --set (later wins), checked strictly.

    Raises:
        ConfigError: no method, a preset for another method, unknown settings or bad values.
    """
    from ..api import get_method
    from ..config import build_config

    settings: dict[str, Any] = {}
    if config_file is not None:
        file_method, settings = load_method_file(config_file)
        if method is None:
            method = file_method
        elif file_method is not None and file_method != method:
            raise ConfigError(
                f"config file {str(config_file)!r} is for method {file_method!r} but --method is "
                f"{method!r}; drop --method or use configs/methods/{method}.yaml"
            )
    if method is None:
        raise ConfigError("no method given; pass --method NAME (see `mumis methods`)")
    settings.update(overrides or {})
    cls = get_method(method)
    # Built here, before any data is loaded, so a bad key fails in a second.
    build_config(cls.Config, settings, what=f"method {method!r}")
    return method, settings


def run_data(meta: dict[str, Any], checkpoint: str | Path, data_dir: str | Path | None) -> Any:
    """The dataset of a checkpoint (`checkpoint.load_run_data`); an error that does not say which
    run it is about gets the checkpoint's path in front."""
    from ..checkpoint import load_run_data
    from ..exceptions import CheckpointError

    try:
        return load_run_data(meta, data_dir=data_dir)[0]
    except (CheckpointError, DataError) as e:
        if str(checkpoint) in str(e):
            raise
        raise type(e)(f"checkpoint {str(checkpoint)!r}: {e}") from None


def _check_out(out: Path, overwrite: bool, *, protected: Sequence[str | Path | None] = (),
               kind: OutputKind = "run") -> None:
    # Checked first so a taken --out fails at once; staged_run_dir checks again before writing.
    from ._checks import check_output_dir

    check_output_dir(out)  # not a file, and its folder is writable
    from ..utils import check_overwritable

    check_overwritable(out, overwrite=overwrite, protected=protected, kind=kind)


def unlearn_run(
    *,
    checkpoint: str | Path,
    forget: str,
    out: str | Path,
    method: str | None = None,
    config_file: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    seed: int = 0,
    split_seed: int | None = None,
    data_dir: str | Path | None = None,
    device: str = "auto",
    reference: str | Path | None = None,
    overwrite: bool = False,
    progress: bool = False,
    trust_model_code: TrustModelCode = False,
    fail_on_divergence: bool = False,
) -> UnlearnRun:
    """Unlearn `forget` from the model in `checkpoint` and write a run directory `out`.

    Everything is validated before any work, so bad input leaves no run directory.
    Under torchrun every rank computes (see `mumis.distributed`); only rank 0 writes `out`, and
    all ranks return once it is written.

    Args:
        checkpoint: run directory of the model to unlearn from (`mumis train`, or an earlier
            `mumis unlearn` for sequential requests).
        forget: forget spec, resolved on the checkpoint's dataset.
        out: run directory to create.
        method: method name (or from `config_file`'s `method:` entry).
        config_file: YAML mapping of method settings (a preset).
        overrides: settings applied on top of `config_file` (`--set`).
        seed: the method's seed.
        split_seed: seed of `random:` specs (default: the checkpoint's).
        data_dir: data folder (default: the checkpoint's).
        device: "auto", "cpu" or "cuda[:N]".
        reference: retrained model's run directory; its manifest must equal this one.
        overwrite: replace a non-empty `out`.
        progress: show progress while the method runs.
        trust_model_code: may the checkpoint's user model factory be imported (see
            `checkpoint.load_checkpoint`); default: refused.
        fail_on_divergence: raise UnlearningError, writing nothing, when the method diverged and
            kept no update (the model is the untouched original) or left inf/NaN weights. When
            False (bench, tune: a diverged cell is a result), the run is written with
            `result.json` `status: "diverged"`.
    Returns:
        UnlearnRun with the run directory and the written meta, result and history;
        `result["status"]` is "ok" or "diverged" (the method reported a non-finite loss or a
        divergence and the weights are those of its last finite step), `result["weights_changed"]`
        whether any weight differs from the checkpoint's.
    Raises:
        ConfigError, DataError, CheckpointError, ModelError: bad input, before anything is written.
        UnlearningError: with `fail_on_divergence`, a run that diverged without a usable update.
    """
    from .. import distributed
    from ..api import get_method, unlearn
    from ..checkpoint import build_meta, load_checkpoint, save_model_dir
    from ..data import make_splits, resolve_manifest
    from ..utils import atomic_write_json, atomic_write_text, resolve_device, staged_run_dir, to_jsonable

    out = Path(out)
    _check_out(out, overwrite, protected=[checkpoint, reference, data_dir])
    name, settings = resolve_method_settings(method, config_file, overrides)
    cls = get_method(name)
    if distributed.is_distributed() and not getattr(cls, "supports_distributed", False):
        from ..api import list_methods

        able = [m for m in list_methods() if getattr(get_method(m), "supports_distributed", False)]
        raise ConfigError(f"method {name!r} does not run under torchrun yet; run it as one process "
                          f"(methods that do: {', '.join(able)})")
    main = distributed.is_main()
    dev = resolve_device(device)
    if data_dir is not None and not Path(data_dir).exists():
        raise DataError(f"data folder {str(data_dir)!r} does not exist; give the folder holding the data "
                        "the checkpoint was trained on")
    model, parent = load_checkpoint(checkpoint, device="cpu", trust_model_code=trust_model_code)
    _check_out(out, overwrite, protected=[(parent.get("dataset") or {}).get("data_dir")])
    from ..methods.mumis import MuMis

    if distributed.is_distributed() and not issubclass(cls, MuMis):
        # the fine-tuning baselines run in train mode: BatchNorm statistics would differ per rank
        # (MU-Mis runs in eval mode, where samples do not interact)
        from ..training import check_distributed_training

        check_distributed_training(model)
    bundle = run_data(parent, checkpoint, data_dir)
    seed_split = split_seed_of(parent) if split_seed is None else int(split_seed)
    manifest = resolve_manifest(forget, bundle, seed=seed_split)
    want_space = (parent.get("dataset") or {}).get("label_space", "fine")
    k_model = int(parent["model"]["num_classes"])
    if manifest.label_space != want_space or manifest.num_classes != k_model:
        raise DataError(
            f"forget spec {forget!r} works in the {manifest.label_space} label space "
            f"({manifest.num_classes} classes) but the checkpoint's model was trained in the "
            f"{want_space} one ({k_model} classes); train the original with a matching --label-space"
        )
    ref_path = None
    if reference is not None:
        check_reference(reference, manifest, seed_split)
        ref_path = str(Path(reference).resolve())
    if main and parent.get("kind") == "train" and parent.get("forget_spec"):
        print(f"mumis: note: checkpoint {str(checkpoint)!r} is a retrained model (trained without "
              f"{parent['forget_spec']!r}); unlearning usually starts from the original", file=sys.stderr)
    splits = make_splits(bundle, manifest)
    retain = splits.retain if cls.requires_retain else None  # forget-only methods never see it

    # Only rank 0 writes; the other ranks compute the same run and write nothing.
    staged = staged_run_dir(out, overwrite=overwrite) if main else contextlib.nullcontext(None)
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    with staged as stage:
        # inplace: the loaded model is ours, no need for the front door's defensive copy
        with warnings.catch_warnings():  # a non-finite model is reported below, in one line
            warnings.filterwarnings("ignore", message=".*weights are inf or NaN", category=RuntimeWarning)
            res = unlearn(model, splits.forget, method=name, retain=retain, seed=seed, device=dev,
                          inplace=True, progress=progress, **settings)
        status, changed = _outcome(res, before, fail=fail_on_divergence, out=out)
        meta = build_meta(
            kind="unlearn", model=parent["model"], dataset=bundle,
            data_dir=data_dir if data_dir is not None else (parent.get("dataset") or {}).get("data_dir"),
            manifest=manifest, forget_spec=forget, seed=seed,
            recipe={"method": name, "config": res.config},
            method=name, parent=str(Path(checkpoint).resolve()), parent_kind=parent.get("kind"),
            parent_recipe=parent.get("recipe"), split_seed=seed_split, reference=ref_path,
        )
        result = {
            **res.summary(),
            "seed": int(seed), "split_seed": seed_split, "forget_spec": forget,
            "manifest_hash": manifest.hash, "num_forget": int(len(manifest.forget)),
            "uses_retain": retain is not None, "device": str(dev), "world_size": distributed.world(),
            "checkpoint": meta["parent"], "reference": ref_path, "extra": res.extra,
            "status": status, "weights_changed": changed, "batchnorm_mode": cls.batchnorm_mode,
        }
        history = [to_jsonable(row) for row in res.history]
        if stage is not None:
            save_model_dir(stage, res.model, meta)
            # method + settings: the file works again as `--config` to repeat the run
            resolved = {"method": name, **to_jsonable(res.config)}
            atomic_write_text(stage / "config.yaml", yaml.safe_dump(resolved, sort_keys=False))
            atomic_write_text(stage / "history.jsonl", "".join(json.dumps(row) + "\n" for row in history))
            atomic_write_json(stage / "result.json", result)
    distributed.barrier()  # the run directory exists on return, on every rank
    return UnlearnRun(run_dir=out, meta=meta, result=to_jsonable(result), history=history)


def _outcome(res: Any, before: dict[str, Any], *, fail: bool, out: Path) -> tuple[str, bool]:
    """("ok" | "diverged", weights changed?) of a finished run; with `fail`, UnlearningError for a
    diverged run that kept no update or left non-finite weights (nothing is written then)."""
    import torch

    after = res.model.state_dict()
    changed = any(k not in before or not torch.equal(before[k], v.detach().to(before[k].device))
                  for k, v in after.items())
    finite = all(torch.isfinite(v).all() for v in after.values() if v.is_floating_point())
    reason = res.stop_reason
    diverged = not finite or "diverged" in reason or "non-finite" in reason
    if fail and diverged and (not finite or not changed):
        what = "left inf/NaN weights" if not finite else "kept no update (the model is unchanged)"
        lr = (res.config or {}).get("lr")
        fix = f"lower its learning rate (now {lr}) with --set lr=..." if lr is not None else "change its settings"
        raise UnlearningError(f"{res.method} diverged ({reason}) and {what}, so nothing was written to "
                              f"{str(out)!r}; {fix}")
    return ("diverged" if diverged else "ok"), changed

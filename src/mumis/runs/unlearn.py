"""`unlearn_run`: a method applied to a checkpoint's model, written as a run directory.

The run directory holds `model.safetensors`, `meta.json` (kind "unlearn"), `config.yaml`
(method + resolved settings, usable again as `--config`), `history.jsonl` and `result.json`;
it appears only when the run is complete. The unlearned model also stays in memory on the
returned `UnlearnRun`, so a bench or a tuning grid evaluates it without reading it back.
"""

from __future__ import annotations

import contextlib
import json
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..exceptions import ConfigError, UnlearningError
from .outputs import check_out
from .record import RunRecord
from .scenario import Scenario
from .settings import resolve_method_settings

if TYPE_CHECKING:
    from torch import nn

    from ..checkpoint import TrustModelCode


@dataclass
class UnlearnRun:
    """What `unlearn_run` did: the run directory, its meta and history, the record behind its
    result.json, and the unlearned model itself (on the run's device)."""

    run_dir: Path
    meta: dict[str, Any]
    record: RunRecord
    history: list[dict[str, Any]]
    model: nn.Module

    @property
    def result(self) -> dict[str, Any]:
        """The contents of result.json."""
        from ..utils import to_jsonable

        return to_jsonable(self.record.result_json())


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
    receipt: bool = True,
    use_holdout: bool = True,
) -> UnlearnRun:
    """Unlearn `forget` from the model in `checkpoint` and write a run directory `out`.

    Everything is validated before any work, so bad input leaves no run directory. Under
    torchrun every rank computes (see `mumis.distributed`); only rank 0 writes `out`, and all
    ranks return once it is written. `Scenario.load` documents checkpoint, forget, split_seed,
    data_dir, device, reference and trust_model_code; `unlearn_scenario` the rest.

    Args:
        method, config_file, overrides: method name, preset file and settings on top
            (`resolve_method_settings`: --method, --config, --set).
    Returns:
        UnlearnRun (see `unlearn_scenario`).
    Raises:
        ConfigError, DataError, CheckpointError, ModelError: bad input, before anything is written.
        UnlearningError: with `fail_on_divergence`, a run that diverged without a usable update.
    """
    out = Path(out)
    check_out(out, overwrite, protected=[checkpoint, reference, data_dir])
    name, settings = resolve_method_settings(method, config_file, overrides)
    _check_distributed_method(name)
    scenario = Scenario.load(checkpoint, forget, reference=reference, split_seed=split_seed,
                             data_dir=data_dir, device=device, trust_model_code=trust_model_code,
                             continue_chain=True)
    return unlearn_scenario(scenario, name, settings, out=out, seed=seed, overwrite=overwrite,
                            progress=progress, fail_on_divergence=fail_on_divergence, receipt=receipt,
                            use_holdout=use_holdout)


def _check_distributed_method(name: str) -> None:
    """ConfigError under torchrun for a method that does not run there."""
    from .. import distributed
    from ..api import get_method, list_methods

    if distributed.is_distributed() and not getattr(get_method(name), "supports_distributed", False):
        able = [m for m in list_methods() if getattr(get_method(m), "supports_distributed", False)]
        raise ConfigError(f"method {name!r} does not run under torchrun yet; run it as one process "
                          f"(methods that do: {', '.join(able)})")


def unlearn_scenario(
    scenario: Scenario,
    method: str,
    settings: dict[str, Any],
    *,
    out: str | Path,
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = False,
    fail_on_divergence: bool = False,
    receipt: bool = True,
    use_holdout: bool = True,
) -> UnlearnRun:
    """Run `method` with `settings` (checked) on a copy of the scenario's model; write `out`.

    Args:
        seed: the method's seed.
        overwrite: replace a non-empty `out`.
        progress: show progress while the method runs.
        fail_on_divergence: raise UnlearningError, writing nothing, when the method diverged and
            kept no update (the model is the untouched original) or left inf/NaN weights. When
            False (bench, tune: a diverged cell is a result), the run is written with
            `result.json` `status: "diverged"`.
        receipt: also write the deletion receipt (`receipt.json`, `receipt.html`; see
            `mumis.receipts`), built from the files just written, so `mumis verify` holds on them.
            The bench and tune cells skip it (a few seconds each, and they are compared with a
            retrained model anyway).
        use_holdout: hand the checkpoint's holdout (if it has one) to a method that declares it
            can use one; False runs it on the forget data only (ConfigError for a method that
            requires a holdout).
    Returns:
        UnlearnRun; its record's `status` is "ok" or "diverged" (the method reported a
        non-finite loss or a divergence and the weights are those of its last finite step),
        `weights_changed` whether any weight differs from the checkpoint's.
    """
    from .. import distributed
    from ..api import get_method, unlearn
    from ..utils import staged_run_dir

    out = Path(out)
    check_out(out, overwrite, protected=[scenario.checkpoint, scenario.data_folder,
                                          None if scenario.reference is None else scenario.reference.path])
    cls = get_method(method)
    model = scenario.fresh_model()
    from ..methods.mumis import MuMis

    if distributed.is_distributed() and not issubclass(cls, MuMis):
        # the fine-tuning baselines run in train mode: BatchNorm statistics would differ per rank
        # (MU-Mis runs in eval mode, where samples do not interact)
        from ..training import check_distributed_training

        check_distributed_training(model)
    _note_retrained(scenario)
    retain = scenario.splits.retain if cls.requires_retain else None  # forget-only methods never see it
    # the run's holdout (no model trained on it) goes to the methods that declare they use one
    if not use_holdout and cls.needs_holdout == "required":
        raise ConfigError(f"method {method!r} requires a holdout; drop --no-holdout")
    holdout = scenario.splits.holdout if cls.needs_holdout != "no" and use_holdout else None
    # Only rank 0 writes; the other ranks compute the same run and write nothing.
    staged = staged_run_dir(out, overwrite=overwrite) if distributed.is_main() else contextlib.nullcontext(None)
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    with staged as stage:
        # inplace: the model is our copy, no need for the front door's defensive copy
        with warnings.catch_warnings():  # a non-finite model is reported below, in one line
            warnings.filterwarnings("ignore", message=".*weights are inf or NaN", category=RuntimeWarning)
            res = unlearn(model, scenario.splits.forget, method=method, retain=retain, holdout=holdout, seed=seed,
                          device=scenario.device, inplace=True, progress=progress, **settings)
        status, changed = _outcome(res, before, fail=fail_on_divergence, out=out)
        done = _describe(scenario, res, out, seed=seed, status=status, changed=changed,
                         uses_retain=retain is not None)
        if stage is not None:
            _write(stage, done)
            if receipt:
                from ..receipts import write_receipt

                write_receipt(stage, original=scenario.checkpoint, trust_model_code=scenario.trust_model_code,
                              final_dir=out)
    distributed.barrier()  # the run directory exists on return, on every rank
    return done


def _note_retrained(scenario: Scenario) -> None:
    from .. import distributed
    from .chain import note_overlap

    meta = scenario.meta
    if distributed.is_main():
        note_overlap(scenario.manifest, scenario.overlap)
    if distributed.is_main() and meta.get("kind") == "train" and meta.get("forget_spec"):
        print(f"mumis: note: checkpoint {str(scenario.checkpoint)!r} is a retrained model (trained "
              f"without {meta['forget_spec']!r}); unlearning usually starts from the original",
              file=sys.stderr)


def _describe(scenario: Scenario, res: Any, out: Path, *, seed: int, status: str, changed: bool,
              uses_retain: bool) -> UnlearnRun:
    """The meta.json, record and history of a finished run."""
    from .. import distributed
    from ..api import get_method
    from ..checkpoint import build_meta
    from ..utils import to_jsonable
    from .chain import chain_block

    parent, name = scenario.meta, res.method
    ref_path = None if scenario.reference is None else str(scenario.reference.path.resolve())
    meta = build_meta(
        kind="unlearn", model=parent["model"], dataset=scenario.bundle, data_dir=scenario.data_folder,
        manifest=scenario.manifest, forget_spec=scenario.forget_spec, seed=seed,
        recipe={"method": name, "config": res.config},
        method=name, parent=str(scenario.checkpoint.resolve()), parent_kind=parent.get("kind"),
        parent_recipe=parent.get("recipe"), split_seed=scenario.split_seed, reference=ref_path,
        chain=chain_block(scenario.checkpoint, parent, scenario.manifest, scenario.overlap),
    )
    record = RunRecord(
        method=name, config=to_jsonable(res.config), time_s=res.time_s, steps=res.steps,
        stop_reason=res.stop_reason, peak_mem_mb=res.peak_mem_mb, status=status,
        weights_changed=changed, uses_retain=uses_retain, data_used=list(res.data_used),
        batchnorm_mode=get_method(name).batchnorm_mode, device=str(scenario.device),
        run={"seed": int(seed), "split_seed": scenario.split_seed, "forget_spec": scenario.forget_spec,
             "manifest_hash": scenario.manifest.hash, "num_forget": int(len(scenario.manifest.forget)),
             "overlap": scenario.overlap,
             "world_size": distributed.world(), "checkpoint": meta["parent"], "reference": ref_path,
             "extra": res.extra},
    )
    history = [to_jsonable(row) for row in res.history]
    return UnlearnRun(run_dir=out, meta=meta, record=record, history=history, model=res.model)


def _write(stage: Path, done: UnlearnRun) -> None:
    """The run directory's files, into the staging folder."""
    import yaml

    from ..checkpoint import save_model_dir
    from ..utils import atomic_write_json, atomic_write_text

    save_model_dir(stage, done.model, done.meta)
    # method + settings: the file works again as `--config` to repeat the run
    resolved = {"method": done.record.method, **(done.record.config or {})}
    atomic_write_text(stage / "config.yaml", yaml.safe_dump(resolved, sort_keys=False))
    atomic_write_text(stage / "history.jsonl", "".join(json.dumps(row) + "\n" for row in done.history))
    atomic_write_json(stage / "result.json", done.result)


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

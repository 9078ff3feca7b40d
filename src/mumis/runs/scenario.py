"""`Scenario`: a checkpoint, its dataset, a forget set resolved on it, the splits, and the
retrained reference (its model and its evaluation loaded when first needed).

Every run-directory pipeline starts from one (`unlearn_run`, `evaluate_run`, `tune`, the bench
and the demo), so checkpoint-to-splits is written once, with one set of checks and messages.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..exceptions import CheckpointError, ConfigError, DataError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from ..checkpoint import TrustModelCode
    from ..data import DatasetBundle, Manifest, Splits
    from ..evaluation import EvaluationReport


def run_data(meta: dict[str, Any], checkpoint: str | Path, data_dir: str | Path | None) -> DatasetBundle:
    """The dataset of a checkpoint (`checkpoint.load_run_data`, cached inside `cache.caching()`);
    an error that does not say which run it is about gets the checkpoint's path in front."""
    from ..checkpoint import load_run_data
    from .cache import load_dataset

    try:
        return load_run_data(meta, data_dir=data_dir, loader=load_dataset)[0]
    except (CheckpointError, DataError) as e:
        if str(checkpoint) in str(e):
            raise
        raise type(e)(f"checkpoint {str(checkpoint)!r}: {e}") from None


@dataclass
class Reference:
    """The model a scenario is compared with (normally the retrained oracle).

    `name` is its row in tables: "retrain" for a model trained without the forget set, else
    "reference". The model is loaded, and evaluated per set of evaluation settings, on first use.
    """

    path: Path
    meta: dict[str, Any]
    name: str
    device: torch.device
    trust_model_code: TrustModelCode = False
    _model: nn.Module | None = None
    _reports: dict[str, EvaluationReport] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path, manifest: Manifest, split_seed: int, num_classes: int, *,
             device: torch.device, trust_model_code: TrustModelCode = False,
             seed_label: bool = False, checkpoint: str | Path | None = None) -> Reference:
        """Check that the run in `path` used exactly this split and predicts as many classes.

        `seed_label`: name it "retrain (seed S)" (a further reference, beside the first).
        A chain's request (`manifest.forgotten_before`) needs a model retrained without the
        union of its requests (`chain.check_chain_reference`; `checkpoint` is named in its hint).

        Raises:
            CheckpointError: not a run directory. ConfigError: another split. DataError: another
                number of classes.
        """
        from ..checkpoint import check_reference
        from .chain import check_chain_reference

        meta = (check_reference(path, manifest, split_seed) if manifest.forgotten_before is None
                else check_chain_reference(path, manifest, checkpoint or "RUN"))
        k = int((meta.get("model") or {}).get("num_classes", num_classes))
        if k != num_classes:
            raise DataError(f"reference {str(path)!r} predicts {k} classes, the model {num_classes}")
        name = "retrain" if meta.get("kind") == "train" and meta.get("forget_spec") else "reference"
        if seed_label and meta.get("seed") is not None:
            name = f"{name} (seed {meta['seed']})"
        return cls(path=Path(path), meta=meta, name=name, device=device, trust_model_code=trust_model_code)

    def model(self) -> nn.Module:
        """The reference model, on the scenario's device (loaded once)."""
        from .cache import load_checkpoint

        if self._model is None:
            self._model, _ = load_checkpoint(self.path, device=self.device,
                                             trust_model_code=self.trust_model_code)
        return self._model

    def report(self, splits: Splits, **settings: Any) -> EvaluationReport:
        """The reference's own evaluation on `splits` with these `evaluate` settings (once each)."""
        from ..evaluation import evaluate

        key = json.dumps(settings, sort_keys=True, default=str)
        if key not in self._reports:
            self._reports[key] = evaluate(self.model(), splits, **settings)
        return self._reports[key]


@dataclass
class Scenario:
    """A checkpoint and a forget set on its dataset: what unlearning and evaluation start from.

    Build it with `Scenario.load`. `model` is the checkpoint's model (use `fresh_model()` for a
    copy to change); `splits` are forget / retain / test of the resolved manifest.
    """

    checkpoint: Path
    model: nn.Module
    meta: dict[str, Any]
    bundle: DatasetBundle
    manifest: Manifest
    splits: Splits
    forget_spec: str
    split_seed: int
    data_dir: str | Path | None  # as given; None: the checkpoint's (see `data_folder`)
    device: torch.device
    reference: Reference | None = None
    trust_model_code: TrustModelCode = False  # as given to `load`; reused to reread the files it wrote
    #: retrained models 2.. (other seeds): their distance to `reference` is the retraining floor
    floor_references: list[Reference] = field(default_factory=list)
    #: (sequential requests) the spec's samples that earlier requests of the chain forgot already
    overlap: int = 0

    @classmethod
    def load(
        cls,
        checkpoint: str | Path,
        forget: str,
        *,
        reference: str | Path | Sequence[str | Path] | None = None,
        split_seed: int | None = None,
        data_dir: str | Path | None = None,
        device: str | torch.device = "auto",
        trust_model_code: TrustModelCode = False,
        continue_chain: bool = False,
    ) -> Scenario:
        """Load the checkpoint and its dataset, resolve `forget` with the checkpoint's split seed
        (or `split_seed`) and, with `reference`, check that the reference used the same split.

        `reference` may list several run directories (retrained models with other seeds): the
        first is the reference, the others `floor_references`; every one must use the split.

        `continue_chain` (`mumis unlearn`): a checkpoint that is itself an unlearning run takes
        `forget` as the chain's next request (`runs.chain`); without it (evaluation) a chain
        run given its own last spec is evaluated on its own manifest.

        Raises:
            CheckpointError, DataError, ConfigError, ModelError: bad input (exit code 2).
        """
        from ..checkpoint import split_seed_of
        from ..data import make_splits
        from ..utils import resolve_device
        from .cache import load_checkpoint
        from .chain import origin_seed

        dev = resolve_device(device)
        if data_dir is not None and not Path(data_dir).exists():
            raise DataError(f"data folder {str(data_dir)!r} does not exist; give the folder holding "
                            "the data the checkpoint was trained on")
        model, meta = load_checkpoint(checkpoint, device=dev, trust_model_code=trust_model_code)
        bundle = run_data(meta, checkpoint, data_dir)
        # a chain's next request: the original's split seed unless given
        default = origin_seed(meta) if continue_chain else split_seed_of(meta)
        seed_split = default if split_seed is None else int(split_seed)
        manifest, overlap = _resolve(checkpoint, meta, forget, bundle, seed_split, continue_chain)
        _check_label_space(forget, manifest, meta)
        paths = [] if reference is None else (
            [reference] if isinstance(reference, str | Path) else list(reference))
        _check_distinct(paths)
        refs = [Reference.load(p, manifest, seed_split, manifest.num_classes, device=dev,
                               trust_model_code=trust_model_code, seed_label=i > 0, checkpoint=checkpoint)
                for i, p in enumerate(paths)]
        ref = refs[0] if refs else None
        return cls(checkpoint=Path(checkpoint), model=model, meta=meta, bundle=bundle, manifest=manifest,
                   splits=make_splits(bundle, manifest), forget_spec=forget, split_seed=seed_split,
                   data_dir=data_dir, device=dev, reference=ref, trust_model_code=trust_model_code,
                   floor_references=refs[1:], overlap=overlap)

    @property
    def data_folder(self) -> str | Path | None:
        """The data folder in use: the one given, else the checkpoint's."""
        return self.data_dir if self.data_dir is not None else (self.meta.get("dataset") or {}).get("data_dir")

    def fresh_model(self) -> nn.Module:
        """A copy of the checkpoint's model, to unlearn from without changing `model`."""
        return copy.deepcopy(self.model)

    def evaluate(self, model: nn.Module, **settings: Any) -> EvaluationReport:
        """`mumis.evaluate` of `model` on this scenario's splits, against the reference's
        evaluation with the same settings when the scenario has a reference."""
        from ..evaluation import evaluate

        ref = None if self.reference is None else self.reference.report(self.splits, **settings)
        report = evaluate(model, self.splits, reference=ref, **settings)
        if ref is not None and self.floor_references:
            report.floor = self.floor(report, **settings)
        return report

    def floor(self, report: EvaluationReport, **settings: Any) -> dict[str, Any]:
        """The floor block of `report` (a model against `reference`): every further reference's
        own metrics and its distance to the first, key by key (`evaluation.floor.floor_block`)."""
        from ..evaluation.floor import floor_block

        assert self.reference is not None
        first = self.reference.report(self.splits, **settings)
        others = [(r.name, r.report(self.splits, **settings)) for r in self.floor_references]
        return floor_block(report, first, others)


def _resolve(checkpoint: str | Path, meta: dict[str, Any], forget: str, bundle: DatasetBundle, seed: int,
             continue_chain: bool) -> tuple[Manifest, int]:
    """The scenario's manifest and its overlap with a chain's earlier requests (see `load`)."""
    import numpy as np

    from ..data import Manifest, resolve_manifest
    from .chain import chain_manifest, check_chain

    recorded = Manifest.from_dict(meta.get("manifest") or {})
    if meta.get("kind") == "unlearn" and continue_chain:
        check_chain(checkpoint, meta)
        return chain_manifest(forget, bundle, recorded, seed)
    if recorded.forgotten_before is not None and forget == meta.get("forget_spec"):
        return recorded, 0  # a chain run evaluated on its own request
    # the checkpoint's holdout (no model of the run trained on it) stays out of every split
    held = (meta.get("manifest") or {}).get("holdout")
    return resolve_manifest(forget, bundle, seed=seed,
                            holdout=None if held is None else np.asarray(held, dtype=np.int64)), 0


def _check_distinct(paths: list[str | Path]) -> None:
    """ConfigError when a reference is given twice (its distance to itself is no floor)."""
    seen: set[Path] = set()
    for p in paths:
        r = Path(p).resolve()
        if r in seen:
            raise ConfigError(f"reference {str(p)!r} is given twice; each further reference must be "
                              "another retrained model (e.g. `mumis train --forget SPEC --seed 1`)")
        seen.add(r)


def _check_label_space(forget: str, manifest: Manifest, meta: dict[str, Any]) -> None:
    """DataError when the forget spec's label space is not the one the model predicts in."""
    want = (meta.get("dataset") or {}).get("label_space", "fine")
    k_model = int(meta["model"]["num_classes"])
    if manifest.label_space != want or manifest.num_classes != k_model:
        raise DataError(
            f"forget spec {forget!r} works in the {manifest.label_space} label space "
            f"({manifest.num_classes} classes) but the checkpoint's model was trained in the "
            f"{want} one ({k_model} classes); use a forget spec of that label space, or train the "
            "original with a matching --label-space"
        )

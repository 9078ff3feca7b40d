"""What an audit runs on and with: its settings and its source (a dataset or a `mumis train` run)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..exceptions import CheckpointError, ConfigError, DataError
from .epsilon import MIN_MODELS

AUDITS = ("epsilon", "lira")
SHADOW_SEED_OFFSET = 100_000


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

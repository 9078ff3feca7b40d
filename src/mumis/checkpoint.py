"""Run directories: save and load a model with its description, without unpickling anything.

A run directory (written by `mumis train` / `mumis unlearn` through `utils.staged_run_dir`)
holds `model.safetensors` (the state_dict as contiguous CPU tensors) and `meta.json`, which
describes everything needed to rebuild and re-evaluate the model:

```
{
  "format": "mumis-run/2",
  "kind": "train" | "unlearn",
  "model": {                               # what models.build_model needs
    "name": "mlp" | "cnn" | "resnet18" | "package.module:function",
    "kwargs": {...},                       # model options, e.g. {"hidden": [256, 256]}
    "input_shape": [C, H, W],
    "num_classes": K,                      # in the manifest's label space
    "normalisation": {"mean": [...], "std": [...]}   # per channel, of the training data used
  },
  "dataset": {"name": str, "data_dir": str | null, "classes": [str, ...],
              "label_space": "fine" | "coarse"},
  "forget_spec": str | null,               # null for an original model trained on everything
  "seed": int,                             # the training (or unlearning) seed
  "training_config": {...},                # kind "train": {"name": recipe, "config": TrainConfig as dict}
  "method_config": {...},                  # kind "unlearn": {"method": name, "config": its settings}
  "recipe": {...},                         # the same dict again, under its format-1 name
  "manifest": {...},                       # data.Manifest.to_dict(): forget / retain indices
  "chain": {...},                          # kind "unlearn": the requests so far, their union (runs.chain)
  "versions": {...},                       # utils.library_versions()
  "created": "2026-01-01T12:00:00+00:00"   # ISO 8601, UTC
}
```
Other keys may be added; readers ignore what they do not know. Format 1 (`mumis-run/1`) had
only `recipe` for both kinds; `read_meta` reads both formats and adds the new key to a format-1
description, so old run directories keep loading. Loading uses
`safetensors.torch.load_file` only (never pickle). A user factory named in meta.json is code:
it is imported only when the caller opts in (`trust_model_code`, the CLI's
`--trust-model-code`), like `trust_remote_code` in the Hugging Face libraries, and the run
directory is never put on the import path. Weights holding NaN or inf are refused.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import re
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeAlias

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from .data import DatasetBundle, Manifest, Splits, load_dataset, make_splits
from .exceptions import CheckpointError, ConfigError, DataError, ModelError
from .safetensors_io import safetensors_bytes
from .utils import atomic_write_bytes, atomic_write_json, library_versions, read_json, resolve_device

FORMAT = "mumis-run/2"
#: Formats `read_meta` accepts: 2 names the run's settings `training_config` / `method_config`.
READ_FORMATS = ("mumis-run/1", FORMAT)
WEIGHTS_FILE = "model.safetensors"
META_FILE = "meta.json"
#: Every file mumis writes into a run directory; `--overwrite` replaces only folders holding
#: nothing else (utils.check_overwritable). Add a name here when a verb writes a new file.
RUN_FILES = frozenset({WEIGHTS_FILE, META_FILE, "config.yaml", "history.jsonl", "metrics.json",
                       "result.json", "evaluation.json", "receipt.json", "receipt.html", "audit.json",
                       "audit.html"})
_HOW = "give the --out folder of a finished `mumis train` or `mumis unlearn` run"

#: Which user model factories a load may import: False (none, the default), True (any), or
#: the names (`package.module:function`) the caller trusts.
TrustModelCode: TypeAlias = "bool | str | Iterable[str]"


#: Run kind -> the meta.json key of its settings (format 2).
_CONFIG_KEY = {"train": "training_config", "unlearn": "method_config"}


def run_config(meta: dict[str, Any]) -> dict[str, Any] | None:
    """The run's settings: `training_config` or `method_config` (format 2), else `recipe` (format 1)."""
    return meta.get(_CONFIG_KEY.get(str(meta.get("kind")), "recipe"), meta.get("recipe"))


def build_meta(
    *,
    kind: str,
    model: dict[str, Any],
    dataset: DatasetBundle,
    data_dir: str | Path | None,
    manifest: Manifest,
    forget_spec: str | None,
    seed: int,
    recipe: dict[str, Any],
    **extra: Any,
) -> dict[str, Any]:
    """Assemble a meta.json dict in the documented schema.

    Args:
        kind: "train" or "unlearn".
        model: `models.model_spec(...)` of the saved model.
        dataset: the dataset the run used.
        data_dir: the data folder the user gave (None: the dataset's default).
        manifest: the split (its label space is the model's).
        forget_spec: the forget spec text, or None for an original model.
        seed: the run's seed.
        recipe: the training recipe and config (kind "train") or the method and its config
            (kind "unlearn"); written as `training_config` / `method_config` (and `recipe`).
        **extra: further top-level keys (e.g. "method", "parent").

    Returns:
        A JSON-ready dict.
    """
    return {
        "format": FORMAT,
        "kind": kind,
        "model": model,
        "dataset": {
            "name": dataset.name,
            "data_dir": None if data_dir is None else str(Path(data_dir).resolve()),
            "classes": list(dataset.classes),
            "label_space": manifest.label_space,
        },
        "forget_spec": forget_spec,
        "seed": int(seed),
        _CONFIG_KEY.get(kind, "recipe"): recipe,
        "recipe": recipe,  # its format-1 name, for readers of older run directories
        "manifest": manifest.to_dict(),
        "versions": library_versions(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **extra,
    }


def save_model_dir(stage_dir: str | Path, model: nn.Module, meta: dict[str, Any]) -> None:
    """Write `model.safetensors` and `meta.json` into `stage_dir` (each atomically).

    Use inside `utils.staged_run_dir`, so the run directory appears only when complete.

    Args:
        stage_dir: the (staging) run directory.
        model: the model; its state_dict is saved as contiguous CPU tensors.
        meta: a dict in the schema above (see `build_meta`).

    Raises:
        CheckpointError: `meta` lacks the format or model description.
    """
    if meta.get("format") != FORMAT or not isinstance(meta.get("model"), dict):
        raise CheckpointError(f"meta must have format {FORMAT!r} and a model entry (use build_meta)")
    stage = Path(stage_dir)
    # clone(): tied weights share storage, which safetensors refuses to save.
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    data = safetensors_bytes(tensors, metadata={"format": "pt", "mumis": FORMAT})
    atomic_write_bytes(stage / WEIGHTS_FILE, data)
    atomic_write_json(stage / META_FILE, meta)


def read_meta(run_dir: str | Path) -> dict[str, Any]:
    """Read and check a run directory's meta.json.

    Raises:
        CheckpointError: the folder or meta.json is missing, unreadable or not a mumis run.
    """
    path = Path(run_dir)
    if not path.exists():
        raise CheckpointError(f"run directory {str(path)!r} does not exist; {_HOW}")
    if not path.is_dir():
        raise CheckpointError(f"{str(path)!r} is a file, not a run directory; {_HOW}")
    meta_path = path / META_FILE
    if not meta_path.is_file():
        raise CheckpointError(f"{str(path)!r} has no {META_FILE}, so it is not a mumis run directory; {_HOW}")
    meta = read_json(meta_path)
    if not isinstance(meta, dict) or meta.get("format") not in READ_FORMATS:
        got = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise CheckpointError(
            f"{str(meta_path)!r} is not a mumis run description (format {got!r}, expected "
            f"{' or '.join(READ_FORMATS)}); {_HOW}"
        )
    model = meta.get("model")
    needed = ("name", "kwargs", "input_shape", "num_classes", "normalisation")
    if not isinstance(model, dict) or any(k not in model for k in needed):
        raise CheckpointError(
            f"{str(meta_path)!r} lacks the model description ({', '.join(needed)}); "
            "the file was edited or truncated: re-run training"
        )
    key = _CONFIG_KEY.get(str(meta.get("kind")))
    if key is not None and key not in meta and "recipe" in meta:  # format 1: one name for both
        meta[key] = meta["recipe"]
    return meta


def _trusts(name: str, trust: TrustModelCode) -> bool:
    if isinstance(trust, bool):
        return trust
    names = [trust] if isinstance(trust, str) else list(trust)
    return name in {n.strip() for s in names for n in str(s).split(",")}


def check_model_code(meta: dict[str, Any], where: str, trust_model_code: TrustModelCode = False) -> None:
    """Refuse a run whose model is user code (`package.module:function`) the caller did not trust.

    Nothing is imported here: this runs before the factory's module could be.

    Raises:
        CheckpointError: the model is a user factory and `trust_model_code` does not cover it.
    """
    name = meta["model"].get("name")
    if not isinstance(name, str):
        raise CheckpointError(f"{where!r}: malformed model description in {META_FILE} (name {name!r})")
    from .models import is_user_factory

    if is_user_factory(name) and not _trusts(name, trust_model_code):
        # the name comes from a file: echoed raw only when it is a plain dotted name
        named = f" or --trust-model-code {name}" if re.fullmatch(r"[\w.]+:[\w.]+", name) else ""
        raise CheckpointError(
            f"{where!r} names model code {name!r} in its {META_FILE}, and mumis imports code from a "
            f"checkpoint only when you opt in: if you trust where it came from, pass "
            f"--trust-model-code{named} (in Python trust_model_code=True)"
        )


def _rebuild(meta: dict[str, Any], where: str, trust_model_code: TrustModelCode) -> nn.Module:
    from .models import build_model

    check_model_code(meta, where, trust_model_code)
    spec = meta["model"]
    try:
        norm = spec["normalisation"]
        return build_model(
            spec["name"], input_shape=spec["input_shape"], num_classes=spec["num_classes"],
            mean=norm["mean"], std=norm["std"], **dict(spec["kwargs"]),
        )
    except (ModelError, ConfigError) as e:
        raise CheckpointError(f"cannot rebuild the model of {where!r}: {e}") from None
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{where!r}: malformed model description in {META_FILE} ({e})") from None


def _check_finite(state: dict[str, torch.Tensor], weights: Path, allow: bool) -> None:
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if not bad:
        return
    more = f" and {len(bad) - 1} more tensors" if len(bad) > 1 else ""
    msg = (f"{str(weights)!r} holds non-finite weights (NaN or inf in {bad[0]!r}{more}): the run that "
           "wrote it diverged")
    if allow:
        warnings.warn(msg + "; evaluating it anyway", RuntimeWarning, stacklevel=3)
        return
    raise CheckpointError(msg + "; re-run it (e.g. with a smaller learning rate) or use another checkpoint")


def load_checkpoint(
    run_dir: str | Path,
    device: str | torch.device = "cpu",
    *,
    trust_model_code: TrustModelCode = False,
    allow_nonfinite: bool = False,
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a run's model from meta.json and load its weights from model.safetensors.

    Args:
        run_dir: a run directory written by `mumis train` or `mumis unlearn`.
        device: where to put the model ("cpu", "cuda", "auto").
        trust_model_code: whether a user factory (`package.module:function`) named in
            meta.json may be imported: False (default: refused), True (any), or the trusted
            names. Importing runs the module's code; the working directory is on the import
            path (as for `mumis train --model`), the run directory never is. Built-in models
            need nothing.
        allow_nonfinite: load weights holding NaN or inf with a RuntimeWarning instead of
            refusing them (for evaluating a diverged run one has just made).

    Returns:
        (model in eval mode on `device`, meta dict).

    Raises:
        CheckpointError: missing folder or files, a folder that is not a mumis run, untrusted
            model code, truncated or corrupt weights, non-finite weights, or weights that do not
            match the described architecture.
    """
    path = Path(run_dir)
    meta = read_meta(path)
    weights = path / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"{str(path)!r} has no {WEIGHTS_FILE}; the run did not finish: re-run it")
    model = _rebuild(meta, str(path), trust_model_code)
    try:
        state = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(
            f"{str(weights)!r} is truncated or corrupt ({reason}); re-run the training or copy it again"
        ) from None
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        what = f"missing {missing[0]!r}" if missing else f"unexpected {unexpected[0]!r}"
        raise CheckpointError(
            f"{str(weights)!r} does not match the architecture in {META_FILE} ({what}, "
            f"{len(missing)} missing and {len(unexpected)} unexpected tensors); the files come "
            "from different runs: re-run training"
        )
    for k, v in expected.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise CheckpointError(
                f"{str(weights)!r} does not match the architecture in {META_FILE}: tensor {k!r} "
                f"has shape {tuple(state[k].shape)}, expected {tuple(v.shape)}; re-run training"
            )
    _check_finite(state, weights, allow_nonfinite)
    model.load_state_dict(state, strict=True)
    model.to(resolve_device(device))
    model.eval()
    return model, meta


def load_run_data(
    meta: dict[str, Any], *, data_dir: str | Path | None = None,
    loader: Callable[[str, str | Path | None], DatasetBundle] = load_dataset,
) -> tuple[DatasetBundle, Manifest]:
    """Reload a run's dataset and split manifest, checking they still fit together.

    Args:
        meta: a run's meta.json (see `read_meta`).
        data_dir: override the data folder recorded in meta (e.g. the run was copied).
        loader: loads a dataset by name and folder (`mumis.runs.cache` passes its cached one).

    Returns:
        (dataset, manifest); `data.make_splits(dataset, manifest)` gives the run's splits.

    Raises:
        CheckpointError: meta lacks the dataset or manifest.
        DataError: the data cannot be loaded or no longer matches the manifest.
    """
    try:
        ds = meta["dataset"]
        name = ds["name"]
        manifest_d = meta["manifest"]
    except (KeyError, TypeError):
        raise CheckpointError("run description lacks its dataset or manifest; re-run training") from None
    bundle = loader(name, data_dir if data_dir is not None else ds.get("data_dir"))
    manifest = Manifest.from_dict(manifest_d)
    n = len(bundle.y_train)
    before = 0 if manifest.forgotten_before is None else len(manifest.forgotten_before)  # earlier requests'
    covered = len(manifest.forget) + before + len(manifest.retain) + len(manifest.held_out)
    if covered != n:
        raise DataError(
            f"dataset {name!r} now has {n} training samples but the run's split covers "
            f"{covered}; point --data-dir at the data the run used"
        )
    classes = ds.get("classes")
    if classes is not None and list(classes) != list(bundle.classes):
        raise DataError(f"dataset {name!r} now has other classes than when the run was made; "
                        "point --data-dir at the data the run used")
    return bundle, manifest


def load_run_splits(run_dir: str | Path, *, data_dir: str | Path | None = None) -> Splits:
    """The forget / retain / test splits of a run directory (see `load_run_data`)."""
    bundle, manifest = load_run_data(read_meta(run_dir), data_dir=data_dir)
    return make_splits(bundle, manifest)


def split_seed_of(meta: dict[str, Any]) -> int:
    """The checkpoint's split seed: `split_seed` (train runs) or its manifest's seed."""
    seed = meta.get("split_seed")
    if seed is None:
        seed = (meta.get("manifest") or {}).get("seed", 0)
    return int(seed)


def check_reference(reference: str | Path, manifest: Any, split_seed: int) -> dict[str, Any]:
    """Check that the retrained model in `reference` used this exact split; return its meta.

    Raises:
        CheckpointError: `reference` is not a run directory.
        ConfigError: its manifest hash differs from `manifest`'s.
    """
    ref = read_meta(reference)
    ref_m = ref.get("manifest") or {}
    if ref_m.get("hash") == manifest.hash:
        return ref
    with contextlib.suppress(DataError):  # same samples from another seed (e.g. class:3): the same split
        if Manifest.from_dict(ref_m).same_split(manifest):
            return ref
    ref_seed = ref.get("split_seed", ref_m.get("seed"))
    raise ConfigError(
        f"reference {str(reference)!r} was trained with forget spec {ref.get('forget_spec')!r} "
        f"(split seed {ref_seed}) on {ref_m.get('dataset')!r}, but this run resolves "
        f"{manifest.spec!r} (split seed {split_seed}) on {manifest.dataset!r} to another split; "
        "the forget spec, split seed (--split-seed) and dataset must match the ones the retrained "
        "model used, and so must its holdout (mumis train --holdout)"
    )

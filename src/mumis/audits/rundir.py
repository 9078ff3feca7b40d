"""`audit_run`: an audit written as a run directory (meta.json, config.yaml, audit.json, audit.html)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .driver import _channel_stats, run_audit
from .page import PAGE_FILE, render_audit_page
from .settings import AuditSettings, resolve_source

RESULT_FILE = "audit.json"


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
    """Run `run_audit` and write `out`: meta.json (kind "audit"), config.yaml, audit.json and
    audit.html (`page.render_audit_page`).

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
        atomic_write_text(stage / PAGE_FILE, render_audit_page(to_jsonable(result)))
    return out, result

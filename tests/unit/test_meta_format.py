"""meta.json format 2: `training_config` / `method_config` name a run's settings; format 1 still loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mumis.checkpoint import FORMAT, READ_FORMATS, build_meta, load_checkpoint, read_meta, run_config
from mumis.data import full_manifest, load_dataset
from mumis.exceptions import CheckpointError
from mumis.runs import train_run
from mumis.utils import check_overwritable


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("meta") / "orig"
    train_run(out=out, epochs=1, device="cpu", progress=False, overrides={"model.hidden": [16]})
    return out


def test_a_training_run_names_its_training_config(run_dir: Path) -> None:
    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["format"] == FORMAT == "mumis-run/2"
    assert meta["training_config"]["name"] == "quick" and meta["training_config"]["config"]["epochs"] == 1
    assert "method_config" not in meta and meta["recipe"] == meta["training_config"]  # format-1 name kept
    assert run_config(meta) is meta["training_config"]


def test_an_unlearning_meta_names_its_method_config() -> None:
    bundle = load_dataset("digits")
    cfg = {"method": "finetune", "config": {"lr": 0.1}}
    meta = build_meta(kind="unlearn", model={}, dataset=bundle, data_dir=None,
                      manifest=full_manifest(bundle, "fine"), forget_spec="class:3", seed=0, recipe=cfg)
    assert meta["method_config"] == cfg and "training_config" not in meta and run_config(meta) == cfg


def test_a_format_1_run_directory_still_loads(run_dir: Path, tmp_path: Path) -> None:
    old = tmp_path / "old"
    old.mkdir()
    for f in run_dir.iterdir():
        (old / f.name).write_bytes(f.read_bytes())
    meta = json.loads((old / "meta.json").read_text())
    meta["format"] = "mumis-run/1"
    del meta["training_config"]  # format 1 had only "recipe"
    (old / "meta.json").write_text(json.dumps(meta))
    model, loaded = load_checkpoint(old)
    assert loaded["training_config"] == meta["recipe"] and run_config(loaded) == meta["recipe"]
    assert read_meta(old)["format"] in READ_FORMATS
    check_overwritable(old, overwrite=True)  # an old run directory may still be replaced


def test_an_unknown_format_is_one_clear_error(run_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    meta = json.loads((run_dir / "meta.json").read_text())
    (bad / "meta.json").write_text(json.dumps({**meta, "format": "mumis-run/9"}))
    with pytest.raises(CheckpointError, match="mumis-run/1 or mumis-run/2"):
        read_meta(bad)

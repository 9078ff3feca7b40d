"""The tuned presets (configs/tuned/digits-mlp/, written by benchmarks/tune_baselines.py) load and
build their method's Config strictly; the tuning grids (configs/tune/digits-mlp.yaml) name valid
settings of registered methods."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from mumis.config import build_config
from mumis.methods import METHODS
from mumis.tuning import grid_points

ROOT = Path(__file__).resolve().parents[2]
TUNED = ROOT / "configs" / "tuned" / "digits-mlp"
GRIDS = ROOT / "configs" / "tune" / "digits-mlp.yaml"


def test_tuned_presets_exist() -> None:
    assert sorted(TUNED.glob("*.yaml")), f"no tuned presets in {TUNED}; run benchmarks/tune_baselines.py"


@pytest.mark.parametrize("path", sorted(TUNED.glob("*.yaml")), ids=lambda p: p.stem)
def test_tuned_preset_builds_its_config_strictly(path: Path) -> None:
    from mumis.cli.unlearn import load_method_file, resolve_method_settings

    method, settings = load_method_file(path)
    assert method == path.stem, f"{path.name} names method {method!r}; the file name must be the method name"
    cls = METHODS.get(method)
    valid = {f.name for f in dataclasses.fields(cls.Config)}
    assert set(settings) <= valid, f"{path.name}: unknown settings {sorted(set(settings) - valid)}"
    build_config(cls.Config, settings, what=f"tuned preset {path.name}")
    assert resolve_method_settings(None, path, {})[0] == method
    header = path.read_text().splitlines()[0]
    assert header.startswith(f"# {method}: tuned on digits/mlp"), f"{path.name} lacks its provenance header"


def test_tuned_presets_match_the_grid_file() -> None:
    grids = yaml.safe_load(GRIDS.read_text())["methods"]
    assert {p.stem for p in TUNED.glob("*.yaml")} == set(grids)


@pytest.mark.parametrize("method", sorted(yaml.safe_load(GRIDS.read_text())["methods"]))
def test_grid_points_build_strictly(method: str) -> None:
    grid = yaml.safe_load(GRIDS.read_text())["methods"][method]
    points = grid_points(grid)
    assert 2 <= len(points) <= 6, f"{method}: {len(points)} grid points; the protocol declares 2-6"
    cls = METHODS.get(method)
    for p in points:
        build_config(cls.Config, p, what=f"{GRIDS.name} {method}")

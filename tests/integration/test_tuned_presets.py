"""The tuned presets (configs/tuned/SET/, written by benchmarks/tune_baselines.py from
configs/tune/SET.yaml; SET = digits-mlp, paper-cpu) load and build their method's Config strictly;
the tuning grids name valid settings of registered methods; the paper-cpu bench's `*_tuned` rows
are those presets."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import yaml

from mumis.config import build_config
from mumis.methods import METHODS
from mumis.tuning import grid_points

ROOT = Path(__file__).resolve().parents[2]
SETS = {"digits-mlp": "digits/mlp", "paper-cpu": "fashion-mnist@12000/2000/cnn"}
PRESETS = [p for name in SETS for p in sorted((ROOT / "configs" / "tuned" / name).glob("*.yaml"))]


@pytest.mark.parametrize("name", sorted(SETS))
def test_tuned_presets_exist_for_every_grid(name: str) -> None:
    tuned = ROOT / "configs" / "tuned" / name
    grids = yaml.safe_load((ROOT / "configs" / "tune" / f"{name}.yaml").read_text())["methods"]
    assert {p.stem for p in tuned.glob("*.yaml")} == set(grids), f"run benchmarks/tune_baselines.py for {name}"


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: f"{p.parent.name}/{p.stem}")
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
    where = SETS[path.parent.name]
    assert header.startswith(f"# {method}: tuned on {where}"), f"{path.name} lacks its provenance header"


@pytest.mark.parametrize(("name", "method"), [(n, m) for n in sorted(SETS) for m in sorted(
    yaml.safe_load((ROOT / "configs" / "tune" / f"{n}.yaml").read_text())["methods"])])
def test_grid_points_build_strictly(name: str, method: str) -> None:
    grids = ROOT / "configs" / "tune" / f"{name}.yaml"
    points = grid_points(yaml.safe_load(grids.read_text())["methods"][method])
    assert 2 <= len(points) <= 8, f"{method}: {len(points)} grid points; the protocol declares 2-8"
    cls = METHODS.get(method)
    for p in points:
        build_config(cls.Config, p, what=f"{grids.name} {method}")


def test_paper_cpu_tuned_rows_are_the_presets() -> None:
    """Each `*_tuned` row of the paper-cpu bench holds its preset's chosen settings; a baseline
    without a row is one whose tuning kept its defaults."""
    from mumis.bench import load_bench_config

    cfg = load_bench_config(ROOT / "configs" / "bench" / "paper-cpu.yaml", check_data=False)
    rows = {e.label: e for e in cfg.methods}
    for preset in sorted((ROOT / "configs" / "tuned" / "paper-cpu").glob("*.yaml")):
        chosen = json.loads(preset.read_text().splitlines()[2].split("# chosen: ", 1)[1].split(" (knife")[0])
        row = rows.get(f"{preset.stem}_tuned")
        defaults = METHODS.get(preset.stem).defaults()
        if row is None:
            assert all(defaults[k] == v for k, v in chosen.items()), f"{preset.stem}: tuned, but no row"
        else:
            assert {k: row.settings[k] for k in chosen} == chosen, preset.stem

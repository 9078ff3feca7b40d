"""`mumis tune`, in-process through `mumis.cli.main`, on a tiny digits tuning scenario (class:5)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from mumis.cli import main
from mumis.cli.unlearn import load_method_file
from mumis.exceptions import ConfigError
from mumis.tuning import grid_points, parse_grid


@dataclass
class Runs:
    original: Path
    retrained: Path


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    root = tmp_path_factory.mktemp("tune")
    original, retrained = root / "original", root / "retrained"
    common = ["--dataset", "digits", "--model", "mlp", "--device", "cpu", "--epochs", "3"]
    assert main(["-q", "train", *common, "--out", str(original)]) == 0
    assert main(["-q", "train", *common, "--forget", "class:5", "--out", str(retrained)]) == 0
    return Runs(original, retrained)


def tune(runs: Runs, out: Path, *extra: str) -> int:
    return main(["-q", "tune", "--checkpoint", str(runs.original), "--reference", str(runs.retrained),
                 "--forget", "class:5", "--device", "cpu", "--out", str(out), *extra])


def test_parse_grid_and_points() -> None:
    grid = parse_grid(["lr=1e-4,0.01", "epochs=1,2"])
    assert grid == {"lr": ["1e-4", 0.01], "epochs": [1, 2]}  # YAML scalars; tune() coerces "1e-4"
    assert grid_points(grid)[:2] == [{"lr": "1e-4", "epochs": 1}, {"lr": "1e-4", "epochs": 2}]
    assert len(grid_points(grid)) == 4
    for bad in (["lr"], ["=1"], ["lr="], ["lr=1", "lr=2"]):
        with pytest.raises(ConfigError, match="--grid"):
            parse_grid(bad)


def test_tune_picks_the_smallest_gap_and_writes_a_usable_preset(runs: Runs, tmp_path: Path) -> None:
    out = tmp_path / "bs"
    assert tune(runs, out, "--method", "boundary_shrink", "--grid", "lr=1e-5,1e-3", "--set", "epochs=2") == 0
    record = json.loads((out / "tuning.json").read_text())
    assert record["method"] == "boundary_shrink" and record["criterion"] == "gap_paper"
    assert record["grid"] == {"lr": [1e-5, 1e-3]}
    assert record["scenario"]["forget_spec"] == "class:5"
    points = record["points"]
    assert [p["settings"] for p in points] == [{"lr": 1e-5}, {"lr": 1e-3}]
    assert all(isinstance(p["gap_paper"], float) and p["config"]["epochs"] == 2 for p in points)
    best = min(points, key=lambda p: p["gap_paper"])
    assert record["chosen"]["index"] == best["index"]
    assert (out / best["run_dir"] / "model.safetensors").is_file()
    method, settings = load_method_file(out / "chosen.yaml")
    assert method == "boundary_shrink"
    assert settings["lr"] == best["config"]["lr"] and settings["epochs"] == 2
    # the preset works as is with `mumis unlearn --config`
    assert main(["-q", "unlearn", "--checkpoint", str(runs.original), "--forget", "class:5", "--device", "cpu",
                 "--config", str(out / "chosen.yaml"), "--out", str(tmp_path / "again")]) == 0
    again = json.loads((tmp_path / "again" / "result.json").read_text())
    assert again["method"] == "boundary_shrink" and again["uses_retain"] is False


def test_a_line_break_in_the_checkpoint_path_stays_inside_the_header(runs: Runs, tmp_path: Path) -> None:
    import shutil

    odd = tmp_path / "orig\nmethod: grad_ascent"  # would inject a key into chosen.yaml if not quoted
    shutil.copytree(runs.original, odd)
    out = tmp_path / "bs"
    assert main(["-q", "tune", "--checkpoint", str(odd), "--reference", str(runs.retrained), "--forget", "class:5",
                 "--device", "cpu", "--method", "boundary_shrink", "--grid", "lr=1e-5,1e-3", "--set", "epochs=1",
                 "--out", str(out)]) == 0
    text = (out / "chosen.yaml").read_text()
    header = [line for line in text.splitlines() if line.startswith("#")]
    assert len(header) == 3 and "\\nmethod: grad_ascent" in header[1]
    assert load_method_file(out / "chosen.yaml")[0] == "boundary_shrink"


def test_bad_grid_key_fails_before_any_work(runs: Runs, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bad"
    assert tune(runs, out, "--method", "jit", "--grid", "lrr=0.1,0.2") == 2
    err = capsys.readouterr().err
    assert "lrr" in err and "lr" in err
    assert not out.exists()


def test_help_says_it_is_a_tuning_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["tune", "--help"])
    assert "TUNING scenario" in capsys.readouterr().out

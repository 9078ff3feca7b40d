"""`mumis train --holdout` end to end: the split is recorded, no model of the run trains on it,
the retrained model shares it, `mumis unlearn` hands it to the methods that declare it (and
says so in result.json), and evaluation keeps the test split."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from mumis.checkpoint import load_run_splits, read_meta
from mumis.cli import main
from mumis.data import load_dataset
from mumis.runs import Scenario


@dataclass
class Runs:
    original: Path
    retrained: Path
    plain: Path


COMMON = ["--dataset", "digits", "--model", "mlp", "--device", "cpu", "--epochs", "3"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    root = tmp_path_factory.mktemp("held")
    r = Runs(root / "original", root / "retrained", root / "plain")
    assert main(["-q", "train", *COMMON, "--holdout", "5%", "--out", str(r.original)]) == 0
    assert main(["-q", "train", *COMMON, "--holdout", "0.05", "--forget", "random:10%",
                 "--out", str(r.retrained)]) == 0
    assert main(["-q", "train", *COMMON, "--out", str(r.plain)]) == 0
    return r


def test_the_holdout_is_recorded_and_no_model_trains_on_it(runs: Runs) -> None:
    m_orig, m_ret = (read_meta(p)["manifest"] for p in (runs.original, runs.retrained))
    held = np.asarray(m_orig["holdout"])
    assert np.array_equal(held, m_ret["holdout"]) and len(held) == 70  # 5 % of each digit class
    assert not np.intersect1d(held, m_orig["retain"]).size
    assert not np.intersect1d(held, m_ret["retain"]).size and not np.intersect1d(held, m_ret["forget"]).size
    metrics = [json.loads((p / "metrics.json").read_text()) for p in (runs.original, runs.retrained)]
    assert metrics[0]["num_train"] == 1437 - 70 and metrics[1]["num_train"] == 1437 - 70 - 137
    assert metrics[0]["num_holdout"] == 70 and 0 <= metrics[0]["holdout_acc"] <= 100
    assert "holdout" not in read_meta(runs.plain)["manifest"]  # --holdout 0 (default): as before
    splits = load_run_splits(runs.original)
    assert splits.holdout is not None and len(splits.holdout[1]) == 70


def test_a_scenario_keeps_the_checkpoints_holdout(runs: Runs) -> None:
    sc = Scenario.load(runs.original, "random:10%", reference=runs.retrained, device="cpu")
    assert sc.manifest.hash == read_meta(runs.retrained)["manifest"]["hash"]  # the reference matches
    assert sc.splits.holdout is not None and len(sc.splits.holdout[1]) == 70
    assert len(sc.splits.test[1]) == 360  # evaluation keeps the whole test split
    plain = Scenario.load(runs.plain, "random:10%", device="cpu")
    assert plain.splits.holdout is None


def _result(out: Path) -> dict:
    return json.loads((out / "result.json").read_text())


def test_unlearn_hands_the_holdout_to_mumis_only(runs: Runs, tmp_path: Path) -> None:
    base = ["-q", "unlearn", "--checkpoint", str(runs.original), "--forget", "random:10%", "--device", "cpu",
            "--no-receipt"]
    assert main([*base, "--method", "mumis", "--set", "max_steps=10", "--out", str(tmp_path / "m")]) == 0
    res = _result(tmp_path / "m")
    assert res["data_used"] == ["forget", "holdout"] and res["uses_retain"] is False
    assert "holdout" in res["stop_reason"] or "kept" in res["stop_reason"]
    assert main([*base, "--method", "finetune", "--set", "epochs=1", "--out", str(tmp_path / "f")]) == 0
    assert _result(tmp_path / "f")["data_used"] == ["forget", "retain"]
    assert main([*base, "--method", "mumis_published", "--set", "max_steps=3", "--out", str(tmp_path / "p")]) == 0
    assert _result(tmp_path / "p")["data_used"] == ["forget"]


def test_no_holdout_runs_mumis_on_the_forget_data_only(runs: Runs, tmp_path: Path) -> None:
    base = ["-q", "unlearn", "--checkpoint", str(runs.original), "--forget", "class:3", "--device", "cpu",
            "--no-receipt", "--method", "mumis", "--set", "max_steps=5"]
    assert main([*base, "--out", str(tmp_path / "h")]) == 0
    assert main([*base, "--no-holdout", "--out", str(tmp_path / "n")]) == 0
    with_h, without = _result(tmp_path / "h"), _result(tmp_path / "n")
    assert with_h["data_used"] == ["forget", "holdout"]
    assert without["data_used"] == ["forget"] and "holdout" not in without["stop_reason"]


def test_without_a_holdout_mumis_names_the_fix(runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-q", "unlearn", "--checkpoint", str(runs.plain), "--forget", "random:10%", "--device", "cpu",
                 "--method", "mumis", "--out", str(tmp_path / "u")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--holdout" in err and "target_forget_acc" in err
    assert not (tmp_path / "u").exists()


def test_bad_holdout_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-q", "train", *COMMON, "--holdout", "1.5", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--holdout" in err and not (tmp_path / "x").exists()


def test_requests_users_make_go_through_the_same_path(runs: Runs, tmp_path: Path) -> None:
    """One person's few dozen images, a 1 % random request and several classes at once: the
    same `mumis unlearn`, the holdout handed over, a stop reason from it."""
    held = set(read_meta(runs.original)["manifest"]["holdout"])
    person = [i for i in range(0, 600, 7) if i not in held][:30]
    (tmp_path / "person.txt").write_text("\n".join(map(str, person)) + "\n")
    for name, spec in (("person", f"indices:{tmp_path / 'person.txt'}"), ("one", "random:1%"), ("two", "class:3,5")):
        out = tmp_path / name
        assert main(["-q", "unlearn", "--checkpoint", str(runs.original), "--forget", spec, "--device", "cpu",
                     "--method", "mumis", "--no-receipt", "--set", "max_steps=30", "--out", str(out)]) == 0
        res = _result(out)
        assert res["data_used"] == ["forget", "holdout"] and "kept" in res["stop_reason"]
        target = res["extra"]["target_forget_acc"]
        if name == "two":
            y = load_dataset("digits").y_train.numpy()
            both = np.flatnonzero(np.isin(y, [3, 5]))
            assert target == 0.0 and res["num_forget"] == len(set(both.tolist()) - held)  # less their holdout
        else:
            assert 50.0 < target <= 100.0  # unseen samples of the same classes
    assert _result(tmp_path / "person")["num_forget"] == 30


def test_a_reference_without_the_holdout_is_another_split(runs: Runs, tmp_path: Path) -> None:
    from mumis.exceptions import ConfigError

    other = tmp_path / "ret0"
    assert main(["-q", "train", *COMMON, "--forget", "random:10%", "--out", str(other)]) == 0
    with pytest.raises(ConfigError, match="another split.*--holdout"):
        Scenario.load(runs.original, "random:10%", reference=other, device="cpu")

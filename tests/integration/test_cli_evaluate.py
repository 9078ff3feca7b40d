"""`mumis evaluate` on real run directories (tiny MLPs on digits): in-process and one subprocess."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mumis.cli import main


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    import torch

    from mumis.runs import train_run

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("runs")
    kw = {"dataset": "digits", "model": "mlp", "epochs": 2, "device": "cpu", "progress": False}
    train_run(out=root / "orig", **kw)
    train_run(out=root / "retr", forget="class:3", **kw)
    train_run(out=root / "retr_s1", forget="class:3", **{**kw, "seed": 1})
    train_run(out=root / "retr_rand", forget="random:0.1", split_seed=1, **kw)
    return root


def _run(argv, capsys):
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def test_evaluate_against_reference_writes_table_and_json(runs, capsys, tmp_path):
    js = tmp_path / "m.json"
    rc, out, err = _run(["evaluate", "--checkpoint", str(runs / "orig"), "--forget", "class:3",
                         "--reference", str(runs / "retr"), "--json", str(js), "--metrics", "all",
                         "--sensitivity-samples", "40"], capsys)
    assert rc == 0, err
    assert "| metric | original | retrain | abs diff | meaning |" in out
    assert "higher = more forgotten" in out and "up to 40 samples per split" in out
    d = json.loads(js.read_text())
    for key in ("model", "reference", "diff", "gap_paper", "gap_salun", "sensitivity"):
        assert key in d
    for k, v in d["diff"].items():
        if v is None:  # n/a on both sides: the MLP has no BatchNorm to re-estimate
            assert k.startswith("bn_reestimated_") and d["model"][k] is None
            continue
        assert v == pytest.approx(abs(d["model"][k] - d["reference"][k]))
    assert d["reference"]["forget_acc"] == 0.0 and d["reference"]["test_forgotten_acc"] == 0.0
    assert d["gap_paper_keys"] == ["test_remaining_acc", "test_forgotten_acc", "test_acc"]
    assert d["sensitivity"]["model"]["forget"]["n"] == 40


def test_evaluate_without_reference_and_self_reference(runs, capsys, tmp_path):
    js = tmp_path / "alone.json"
    rc, out, _ = _run(["evaluate", "--checkpoint", str(runs / "orig"), "--forget", "random:0.1",
                       "--metrics", "accuracy,mia", "--json", str(js)], capsys)
    assert rc == 0 and "abs diff" not in out
    d = json.loads(js.read_text())
    assert not {"reference", "diff", "gap_paper", "gap_salun"} & set(d)
    js2 = tmp_path / "self.json"
    rc, _, err = _run(["evaluate", "--checkpoint", str(runs / "retr_rand"), "--forget",
                       "random:0.1", "--reference", str(runs / "retr_rand"), "--metrics",
                       "accuracy,mia,divergence", "--json", str(js2)], capsys)
    assert rc == 0, err
    d = json.loads(js2.read_text())
    assert d["gap_paper"] == 0.0 and d["gap_salun"] == 0.0
    assert all(v == pytest.approx(0.0, abs=1e-9) for v in d["diff"].values())


@pytest.mark.parametrize("argv, needle", [
    (["--forget", "class:4", "--reference", "retr"], "split"),
    (["--forget", "random:0.1", "--reference", "retr_rand", "--split-seed", "2"], "split seed"),
    (["--forget", "class:3", "--metrics", "acuracy"], "Did you mean 'accuracy'"),
    (["--forget", "klass:3"], "forget spec"),
    (["--forget", "class:3", "--reference", "nowhere"], "does not exist"),
    # a second reference on another split (random:0.1) is refused like the first would be
    (["--forget", "class:3", "--reference", "retr", "--reference", "retr_rand"], "split"),
    (["--forget", "class:3", "--reference", "retr", "--reference", "retr"], "given twice"),
])
def test_bad_input_is_one_line_exit_2(runs, capsys, argv, needle):
    argv = [str(runs / a) if a in ("retr", "retr_s1", "retr_rand", "nowhere") else a for a in argv]
    rc, _, err = _run(["evaluate", "--checkpoint", str(runs / "orig"), *argv], capsys)
    assert rc == 2 and needle in err and len(err.strip().splitlines()) == 1


def test_subprocess(runs, tmp_path):
    js = tmp_path / "p.json"
    cmd = [sys.executable, "-m", "mumis", "evaluate", "--checkpoint", str(runs / "orig"),
           "--forget", "class:3", "--reference", str(runs / "retr"), "--metrics", "accuracy",
           "--json", str(js)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    assert "test_forgotten_acc" in proc.stdout
    assert json.loads(js.read_text())["gap_paper"] > 10


def _floor_json(runs, capsys, tmp_path, checkpoint, name):
    js = tmp_path / f"{name}.json"
    rc, out, err = _run(["evaluate", "--checkpoint", str(runs / checkpoint), "--forget", "class:3",
                         "--reference", str(runs / "retr"), "--reference", str(runs / "retr_s1"),
                         "--metrics", "accuracy,mia,divergence", "--json", str(js)], capsys)
    assert rc == 0, err
    return out, json.loads(js.read_text())


def test_two_references_give_the_floor(runs, capsys, tmp_path):
    from mumis.evaluation.gaps import gap_paper_keys

    out, d = _floor_json(runs, capsys, tmp_path, "orig", "floor")
    assert "| metric | original | retrain | retrain (seed 1) | abs diff | floor (retrain (seed 1) vs retrain) " \
           "| within floor | meaning |" in out
    fl = d["floor"]
    other = fl["references"][0]
    assert other["name"] == "retrain (seed 1)" and len(fl["references"]) == 1
    ref = d["reference"]
    # by hand, from the two references' own metrics
    want = abs(other["metrics"]["test_acc"] - ref["test_acc"])
    assert fl["metrics"]["test_acc"]["floor"] == [pytest.approx(want)]
    keys = gap_paper_keys(True)
    want_gap = sum(abs(other["metrics"][k] - ref[k]) for k in keys) / len(keys)
    assert fl["metrics"]["gap_paper"]["mean"] == pytest.approx(want_gap)
    assert fl["metrics"]["gap_paper"]["model"] == pytest.approx(d["gap_paper"])
    assert fl["metrics"]["kl_to_retrain"]["model"] == pytest.approx(d["model"]["kl_to_retrain"])
    assert fl["metrics"]["kl_to_retrain"]["floor"][0] > 0  # two seeds differ on the forget set
    # the original still knows class 3; two retrained models both do not
    assert fl["metrics"]["test_forgotten_acc"]["within"] is False
    assert fl["metrics"]["gap_paper"]["within"] is False
    for k, e in fl["metrics"].items():
        if e["within"] is not None:
            assert e["within"] == (e["model"] <= e["max"] + 1e-9), k
    # existing keys unchanged
    for key in ("model", "reference", "diff", "gap_paper", "gap_salun"):
        assert key in d


def test_a_retrain_is_within_its_own_floor(runs, capsys, tmp_path):
    # the seed-1 retrain evaluated against [seed 0, seed 1]: its distance is the floor itself
    _, d = _floor_json(runs, capsys, tmp_path, "retr_s1", "self")
    for k, e in d["floor"]["metrics"].items():
        if e["model"] is not None:
            assert e["within"] is True, k
            assert e["model"] == pytest.approx(e["floor"][0]), k

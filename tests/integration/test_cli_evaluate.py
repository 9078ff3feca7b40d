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
])
def test_bad_input_is_one_line_exit_2(runs, capsys, argv, needle):
    argv = [str(runs / a) if a in ("retr", "retr_rand", "nowhere") else a for a in argv]
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

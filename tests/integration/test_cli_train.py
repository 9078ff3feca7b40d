"""`mumis train` and `mumis env`, in-process and once as a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mumis.checkpoint import load_checkpoint, load_run_splits
from mumis.cli import main
from mumis.training import model_accuracy

RUN_FILES = {"model.safetensors", "meta.json", "metrics.json", "history.jsonl", "config.yaml"}


def test_train_digits_mlp_writes_a_complete_run(tmp_path, capsys):
    out = tmp_path / "orig"
    assert main(["-q", "train", "--dataset", "digits", "--model", "mlp", "--out", str(out)]) == 0
    line = capsys.readouterr().out.strip()
    assert "\n" not in line and "test" in line and str(out) in line
    assert RUN_FILES <= {p.name for p in out.iterdir()}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_acc"] >= 97.0 and metrics["train_acc"] >= 99.0
    assert metrics["train_time_s"] > 0 and metrics["epochs"] == 50
    hist = [json.loads(r) for r in (out / "history.jsonl").read_text().splitlines()]
    assert len(hist) == 50 and hist[-1]["loss"] < hist[0]["loss"]
    model, meta = load_checkpoint(out)
    assert meta["kind"] == "train" and meta["forget_spec"] is None and meta["seed"] == 0
    assert meta["recipe"]["name"] == "quick" and meta["manifest"]["spec"] == "none"
    splits = load_run_splits(out)
    assert model_accuracy(model, *splits.test) == pytest.approx(metrics["test_acc"])
    assert not list(tmp_path.glob(".orig.partial-*"))  # staging folder renamed away


def test_train_oracle_with_forget_and_overrides(tmp_path):
    out = tmp_path / "oracle"
    rc = main(["-q", "train", "--forget", "class:3", "--model", "cnn", "--epochs", "3",
               "--set", "lr=0.1", "--set", "model.channels=4,8", "--set", "model.hidden=32",
               "--seed", "2", "--device", "cpu", "--out", str(out)])
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("retain_acc", "forget_acc", "test_remaining_acc", "test_forgotten_acc"):
        assert key in metrics
    assert metrics["test_forgotten_acc"] == 0.0  # never saw class 3
    meta = json.loads((out / "meta.json").read_text())
    assert meta["forget_spec"] == "class:3" and meta["seed"] == 2
    assert meta["model"]["kwargs"] == {"channels": [4, 8], "hidden": 32}
    assert meta["recipe"]["config"]["lr"] == 0.1 and meta["recipe"]["config"]["epochs"] == 3
    assert meta["manifest"]["forgotten_classes"] == [3]
    assert metrics["num_train"] == len(meta["manifest"]["retain"])
    # again without --overwrite: refused; with it: replaced
    assert main(["-q", "train", "--epochs", "1", "--out", str(out)]) == 2
    assert main(["-q", "train", "--epochs", "1", "--overwrite", "--out", str(out)]) == 0
    assert json.loads((out / "meta.json").read_text())["forget_spec"] is None


@pytest.mark.parametrize("extra, needle", [
    (["--dataset", "digitz"], "unknown dataset 'digitz'"),
    (["--model", "mlpp"], "unknown model 'mlpp'"),
    (["--model", "no_such_pkg_xyz:make"], "cannot import module"),
    (["--dataset", "fashion-mnist", "--data-dir", "/nonexistent/fm"], "/nonexistent/fm"),
    (["--forget", "class:12"], "out of range"),
    (["--forget", "random:1.5"], "random:1.5"),
    (["--forget", "indices:{tmp}/bad.txt"], "bad.txt"),
    (["--forget", "indices:{tmp}/missing.txt"], "not found"),
    (["--set", "learning_rate=0.1"], "unknown setting 'learning_rate'"),
    (["--set", "model.depth=3"], "unknown option 'depth'"),
    (["--set", "epochs=0"], "epochs"),
    (["--recipe", "slow"], "invalid choice"),
    (["--epochs", "two"], "invalid int"),
    (["--device", "tpu"], "device"),
])
def test_bad_input_exits_2_with_one_line_and_no_run_dir(tmp_path, capsys, extra, needle):
    (tmp_path / "bad.txt").write_text("1 2 three\n")
    out = tmp_path / "runs" / "r"
    argv = ["-q", "train", *[a.format(tmp=tmp_path) for a in extra], "--out", str(out)]
    with pytest.raises(SystemExit) if needle.startswith("invalid") else _no_raise() as exc:
        rc = main(argv)
    if needle.startswith("invalid"):  # argparse errors
        rc = exc.value.code
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err and "Traceback" not in err
    assert not out.exists()
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


class _no_raise:
    value = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_subclass_scenario_trains_on_superclass_labels(tmp_path, capsys):
    import numpy as np

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(6), 20)  # 6 fine classes, superclasses {0,1}, {2,3}, {4,5}
    x = (rng.random((len(y), 1, 8, 8)) * 0.5 + (y[:, None, None, None] / 10.0)).astype(np.float32)
    data = tmp_path / "toy.npz"
    np.savez(data, x=x, y=y, y_coarse=y // 2)
    common = ["-q", "train", "--dataset", "npz", "--data-dir", str(data), "--epochs", "2"]
    assert main([*common, "--label-space", "coarse", "--out", str(tmp_path / "orig")]) == 0
    assert main([*common, "--forget", "subclass:1", "--out", str(tmp_path / "oracle")]) == 0
    for run in ("orig", "oracle"):
        meta = json.loads((tmp_path / run / "meta.json").read_text())
        assert meta["dataset"]["label_space"] == "coarse" and meta["model"]["num_classes"] == 3
    capsys.readouterr()
    rc = main([*common, "--forget", "subclass:1", "--label-space", "fine", "--out", str(tmp_path / "x")])
    assert rc == 2 and "label space" in capsys.readouterr().err
    assert main(["-q", "train", "--label-space", "coarse", "--epochs", "1", "--out",
                 str(tmp_path / "y")]) == 2  # digits has no superclasses
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_env_runs(capsys):
    assert main(["env"]) == 0
    text = capsys.readouterr().out
    assert "torch" in text and "fashion-mnist" in text
    assert main(["env", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["versions"]["torch"] == torch.__version__ and "cuda_available" in info["torch"]


def test_subprocess_train(tmp_path):
    out = tmp_path / "sub"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    src = str(Path(__file__).resolve().parents[2] / "src")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    proc = subprocess.run(
        # no -q: stderr is not a terminal, so there must be no progress bar either
        [sys.executable, "-m", "mumis", "train", "--dataset", "digits", "--model", "mlp",
         "--epochs", "1", "--out", str(out)],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "trained mlp on digits" in proc.stdout and proc.stderr == ""
    assert RUN_FILES <= {p.name for p in out.iterdir()}

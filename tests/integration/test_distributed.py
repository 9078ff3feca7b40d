"""`mumis unlearn` under torchrun (2 CPU processes, gloo) equals one process on the same batches.

One real `torchrun --standalone --nproc_per_node=2` run and one plain `python -m mumis` run with
identical settings on a tiny digits MLP; the forget-accuracy rule stops the run before
max_steps, so the test also shows that both ranks stop at the same step as one process.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mumis import distributed
from mumis.cli import main

TORCHRUN = Path(sys.executable).with_name("torchrun")
SETTINGS = ["--set", "batch_size=64", "--set", "max_steps=60", "--set", "monitor_every=2",
            "--set", "lr=5e-4", "--set", "stop=forget_acc"]
RUN_FILES = {"model.safetensors", "meta.json", "config.yaml", "history.jsonl", "result.json"}


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")  # gloo on CPU, one thread per process
    return env


def _unlearn(launcher: list[str], ckpt: Path, out: Path) -> subprocess.CompletedProcess[str]:
    cmd = [*launcher, "-m", "mumis", "-q", "unlearn", "--checkpoint", str(ckpt), "--forget", "class:3",
           "--method", "mumis", *SETTINGS, "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    if not TORCHRUN.exists() or shutil.which(str(TORCHRUN)) is None:
        pytest.skip("torchrun not installed beside this python")
    tmp = tmp_path_factory.mktemp("dist")
    ckpt = tmp / "orig"
    assert main(["-q", "train", "--dataset", "digits", "--model", "mlp", "--epochs", "3", "--out", str(ckpt)]) == 0
    one = _unlearn([sys.executable], ckpt, tmp / "one")
    two = _unlearn([str(TORCHRUN), "--standalone", "--nproc_per_node=2"], ckpt, tmp / "two")
    return {"tmp": tmp, "one": tmp / "one", "two": tmp / "two", "log_two": two.stdout + two.stderr,
            "log_one": one.stdout + one.stderr}


def test_two_processes_give_the_one_process_model(runs: dict) -> None:
    a = load_file(runs["one"] / "model.safetensors")
    b = load_file(runs["two"] / "model.safetensors")
    assert a.keys() == b.keys()
    diff = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert diff < 1e-5, f"max abs weight difference 1 vs 2 processes: {diff:.3g}"
    orig = load_file(runs["tmp"] / "orig" / "model.safetensors")
    assert max(float((a[k] - orig[k]).abs().max()) for k in a) > 1e-3  # the run did change the model
    ha = [json.loads(line) for line in (runs["one"] / "history.jsonl").read_text().splitlines()]
    hb = [json.loads(line) for line in (runs["two"] / "history.jsonl").read_text().splitlines()]
    assert [r["step"] for r in ha] == [r["step"] for r in hb]
    for ra, rb in zip(ha, hb, strict=True):
        assert ra["forget_acc"] == pytest.approx(rb["forget_acc"], abs=1e-4)  # percent; float32 vs float64 mean
        assert ra["s_irrelevant"] == pytest.approx(rb["s_irrelevant"], rel=1e-5)


def test_all_ranks_stop_at_the_one_process_step(runs: dict) -> None:
    r1 = json.loads((runs["one"] / "result.json").read_text())
    r2 = json.loads((runs["two"] / "result.json").read_text())
    assert 0 < r1["steps"] < 60 and r1["stop_reason"].startswith("forget accuracy")  # a real stop
    assert r2["steps"] == r1["steps"] and r2["stop_reason"] == r1["stop_reason"]
    assert r1["world_size"] == 1 and r2["world_size"] == 2
    ranks = dict(re.findall(r"rank (\d) of 2: (\d+) steps", runs["log_two"]))
    assert ranks == {"0": str(r1["steps"]), "1": str(r1["steps"])}, runs["log_two"]


def test_run_directory_written_once(runs: dict) -> None:
    tmp: Path = runs["tmp"]
    assert {p.name for p in (runs["two"]).iterdir()} == RUN_FILES
    assert sorted(p.name for p in tmp.iterdir()) == ["one", "orig", "two"]  # no leftover staging folder
    assert runs["log_two"].count("-> ") == 1  # only rank 0 reports the run directory


def test_verbs_without_torchrun_support_refuse(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    rc = main(["train", "--dataset", "digits", "--model", "mlp", "--out", str(tmp_path / "x")])
    assert rc == 2
    assert "torchrun" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_shard_bounds_cover_the_batch() -> None:
    for n in (0, 1, 5, 64, 65):
        for w in (1, 2, 3):
            parts = [distributed.shard_bounds(n, w, r) for r in range(w)]
            assert parts[0][0] == 0 and parts[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(parts, parts[1:], strict=False))
            assert max(b - a for a, b in parts) - min(b - a for a, b in parts) <= 1
    assert not distributed.is_distributed() and distributed.world() == 1 and distributed.is_main()
    t = torch.ones(3)
    assert distributed.all_reduce_sum(t) is t

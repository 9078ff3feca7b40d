"""`mumis unlearn` under torchrun (2 CPU processes, gloo) equals one process on the same batches.

One real `torchrun --nproc_per_node=2` run (static rendezvous on 127.0.0.1) and one plain `python -m mumis` run with
identical settings on a tiny digits MLP; the forget-accuracy rule stops the run before
max_steps, so the test also shows that both ranks stop at the same step as one process.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mumis import distributed
from mumis.cli import main
from mumis.methods import METHODS
from mumis.methods._loop import LossMethod
from mumis.testing.conformance import fast_settings

TORCHRUN = Path(sys.executable).with_name("torchrun")
SETTINGS = ["--set", "batch_size=64", "--set", "max_steps=60", "--set", "monitor_every=2",
            "--set", "lr=5e-4", "--set", "stop=forget_acc",
            # every weight, unnormalised loss: the double-backprop path, sharded across ranks
            "--set", "update=all", "--set", "normalise=false"]
RUN_FILES = {"model.safetensors", "meta.json", "config.yaml", "history.jsonl", "result.json", "receipt.json",
             "receipt.html"}


def _torchrun() -> list[str]:
    """torchrun on one node with a static rendezvous on 127.0.0.1 and a free port.

    `--standalone` resolves "localhost", which fails on machines without /etc/hosts (seen in a
    sandbox); the loopback address needs no name resolution.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return [str(TORCHRUN), "--nnodes=1", "--master_addr=127.0.0.1", f"--master_port={port}"]


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
    two = _unlearn([*_torchrun(), "--nproc_per_node=2"], ckpt, tmp / "two")
    return {"tmp": tmp, "one": tmp / "one", "two": tmp / "two", "log_two": two.stdout + two.stderr,
            "log_one": one.stdout + one.stderr}


def test_two_processes_give_the_one_process_model(runs: dict) -> None:
    a = load_file(runs["one"] / "model.safetensors")
    b = load_file(runs["two"] / "model.safetensors")
    assert a.keys() == b.keys()
    diff = max(float((a[k] - b[k]).abs().max()) for k in a)
    print(f"max abs weight difference 1 vs 2 processes: {diff:.3g}")
    assert diff < 1e-5, f"max abs weight difference 1 vs 2 processes: {diff:.3g}"
    orig = load_file(runs["tmp"] / "orig" / "model.safetensors")
    assert max(float((a[k] - orig[k]).abs().max()) for k in a) > 1e-3  # the run did change the model
    ha = [json.loads(line) for line in (runs["one"] / "history.jsonl").read_text().splitlines()]
    hb = [json.loads(line) for line in (runs["two"] / "history.jsonl").read_text().splitlines()]
    assert [r["step"] for r in ha] == [r["step"] for r in hb]
    for ra, rb in zip(ha, hb, strict=True):
        assert ra["forget_acc"] == pytest.approx(rb["forget_acc"], abs=1e-4)  # percent; float32 vs float64 mean
        assert ("s_irrelevant" in ra) == ("s_irrelevant" in rb)  # light readings (forward only) alike
        if "s_irrelevant" in ra:
            assert ra["s_irrelevant"] == pytest.approx(rb["s_irrelevant"], rel=1e-5)
    assert sum("s_irrelevant" in r for r in ha) >= 1  # full readings are sharded and reduced


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
    rc = main(["evaluate", "--checkpoint", str(tmp_path / "none"), "--forget", "class:3"])
    assert rc == 2
    assert "torchrun" in capsys.readouterr().err


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


# --------------------------------------------------------------------------- Python API, edge cases
# MU-Mis settings that exercise every branch of its monitor and objective under torchrun: Adam +
# all K-1 irrelevant classes, momentum + odd shard sizes + the per-sample switch + the cap, the
# published and v1 rules stopping early, and batches / a monitor subsample smaller than the
# number of ranks (empty shards on rank 1).
MUMIS_CASES: dict[str, tuple[str, dict[str, object]]] = {
    "adam_all": ("mumis", dict(optimizer="adam", lr=1e-3, irrelevant="all", batch_size=16, max_steps=9,
                               stop="none", monitor_every=3, monitor_samples=40)),
    "momentum_odd": ("mumis", dict(momentum=0.9, lr=2e-3, batch_size=15, max_steps=10, stop="none",
                                   switch="misclassified", monitor_every=4, monitor_samples=33)),
    "v1_full_batch": ("mumis_v1", dict(lr=1e-4, max_steps=40, delta=1.0, monitor_every=1)),
    "empty_shards": ("mumis", dict(lr=1e-2, batch_size=1, max_steps=6, stop="none", monitor_every=2,
                                   monitor_samples=1)),
}


def method_cases() -> dict[str, tuple[str, dict[str, object]]]:
    """One case per method that declares `supports_distributed` (no hand list): its conformance
    fast settings with batches of 3, so the 40 forget samples end with a batch of 1 and rank 1
    has an empty part (weight 0) once per epoch."""
    out: dict[str, tuple[str, dict[str, object]]] = {}
    for name in METHODS.names():
        cls = METHODS.get(name)
        if not cls.supports_distributed:
            continue
        cfg = fast_settings(name)
        valid = cls.defaults()
        cfg.update({k: 3 for k in ("batch_size", "forget_batch_size") if k in valid})
        out[name] = (name, cfg)
    return out


CASES = {**MUMIS_CASES, **method_cases()}


def test_every_loss_based_method_is_in_the_torchrun_cases() -> None:
    loss_based = [n for n in METHODS.names() if issubclass(METHODS.get(n), LossMethod)]
    assert loss_based and all(METHODS.get(n).supports_distributed for n in loss_based)
    assert set(loss_based) <= {method for method, _ in CASES.values()}
    assert "retrain" not in method_cases() and "ssd" not in method_cases()  # not loss-based


_SCRIPT = """
import json, sys, torch, mumis
from mumis import distributed
from mumis.testing.conformance import tiny_case
cases = json.loads(sys.argv[1])
assert distributed.init_from_env() and distributed.world() == 2
out = {}
for name, (method, cfg) in cases.items():
    case = tiny_case()
    retain = case.retain if mumis.get_method(method).requires_retain else None
    res = mumis.unlearn(case.model, case.forget, method=method, retain=retain, seed=0, device="cpu", **cfg)
    out[name] = {"state": res.model.state_dict(), "steps": res.steps, "stop": res.stop_reason}
torch.save(out, f"{sys.argv[2]}/rank{distributed.rank()}.pt")
distributed.shutdown()
"""


@pytest.mark.slow  # about 40 s on 2 shared cores; the CLI test above covers the main path in CI
def test_api_under_torchrun_matches_one_process_on_edge_cases(tmp_path: Path) -> None:
    if not TORCHRUN.exists():
        pytest.skip("torchrun not installed beside this python")
    import mumis
    from mumis.testing.conformance import tiny_case

    script = tmp_path / "worker.py"
    script.write_text(_SCRIPT)
    done = subprocess.run([*_torchrun(), "--nproc_per_node=2", str(script), json.dumps(CASES),
                           str(tmp_path)], capture_output=True, text=True, env=_env(), timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    for name, (method, cfg) in CASES.items():
        case = tiny_case()
        retain = case.retain if mumis.get_method(method).requires_retain else None
        res = mumis.unlearn(case.model, case.forget, method=method, retain=retain, seed=0, device="cpu", **cfg)
        want = res.model.state_dict()
        for r, got in enumerate(ranks):
            assert got[name]["steps"] == res.steps and got[name]["stop"] == res.stop_reason, (name, r)
            diff = max(float((got[name]["state"][k] - want[k]).abs().max()) for k in want)
            print(f"{name}, rank {r}: {res.steps} steps, max abs weight difference {diff:.3g}")
            assert diff < 1e-5, f"{name}, rank {r}: max abs weight difference {diff:.3g}"
        before = case.model.state_dict()
        if res.steps:  # it did train
            assert max(float((want[k] - before[k]).abs().max()) for k in want) > 1e-6, name
    assert 1 < ranks[0]["v1_full_batch"]["steps"] < 40  # the v1 rule stopped before max_steps on both ranks


@pytest.mark.slow  # about 10 s on 2 shared cores
def test_train_under_torchrun_matches_one_process(tmp_path: Path) -> None:
    if not TORCHRUN.exists():
        pytest.skip("torchrun not installed beside this python")
    args = ["-q", "train", "--dataset", "digits", "--model", "mlp", "--epochs", "2"]
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    done = subprocess.run([*_torchrun(), "--nproc_per_node=2", "-m", "mumis", *args,
                           "--out", str(tmp_path / "two")], capture_output=True, text=True, env=_env(), timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (done.stdout + done.stderr).count("-> ") == 1  # only rank 0 reports (and writes)
    a = load_file(tmp_path / "one" / "model.safetensors")
    b = load_file(tmp_path / "two" / "model.safetensors")
    diff = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert diff < 1e-5, f"max abs weight difference 1 vs 2 processes: {diff:.3g}"
    m1 = json.loads((tmp_path / "one" / "metrics.json").read_text())
    m2 = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert m2["world_size"] == 2 and m2["test_acc"] == pytest.approx(m1["test_acc"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one", "two"]


def test_training_refuses_batchnorm_under_torchrun() -> None:
    from mumis.exceptions import ConfigError
    from mumis.training import check_distributed_training

    check_distributed_training(torch.nn.Sequential(torch.nn.Linear(2, 2)))
    with pytest.raises(ConfigError, match="BatchNorm"):
        check_distributed_training(torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2)))

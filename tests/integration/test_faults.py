"""Fault tests: SIGKILL and SIGTERM at chosen moments of train, unlearn, tune and bench.

Each case runs the verb in a real subprocess, stops it at a precise moment (a harness pauses the
process just before it writes a given file, the n-th time), sends the signal, then runs the same
command again in a new process (another PYTHONHASHSEED) and checks that
- SIGTERM ends the run with exit 143 and one line, and already leaves no staging folder;
- after SIGKILL the rerun removes the dead run's staging folder;
- the rerun's files equal an uninterrupted run's: the same model.safetensors bytes, the same JSON
  except the measured fields (`VOLATILE`), the same other files byte for byte.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from mumis.cli import main

#: Fields that measure the run (wall time, memory, when) and so differ between identical runs.
VOLATILE = frozenset({"created", "time_s", "train_time_s", "eval_time_s", "peak_mem_mb"})

# Runs `mumis ARGS`, pausing at the MUMIS_TEST_PAUSE_NTH-th write of a file named
# MUMIS_TEST_PAUSE_AT (after touching MUMIS_TEST_FLAG), so the test can signal it right there:
# just before the write, or (MUMIS_TEST_PAUSE_IN_WRITE) in it, with the temp file half made.
HARNESS = """
import os, sys, time
import mumis.checkpoint as ck
import mumis.utils as u
name, nth, flag = os.environ["MUMIS_TEST_PAUSE_AT"], int(os.environ["MUMIS_TEST_PAUSE_NTH"]), os.environ["MUMIS_TEST_FLAG"]
real, real_fsync, seen = u.atomic_write_bytes, os.fsync, [0]
def pause():
    open(flag, "w").close()
    time.sleep(120)
def paused(path, data):
    if os.path.basename(str(path)) == name:
        seen[0] += 1
        if seen[0] == nth and os.environ.get("MUMIS_TEST_PAUSE_IN_WRITE"):
            os.fsync = lambda fd: pause()  # the temp file exists, the rename has not come
        elif seen[0] == nth:
            pause()
    real(path, data)
u.atomic_write_bytes = ck.atomic_write_bytes = paused
from mumis.cli import main
sys.exit(main(sys.argv[1:]))
"""

TINY_BENCH: dict[str, Any] = {
    "datasets": ["digits"], "models": ["mlp"], "scenarios": ["class:3"],
    "methods": {"grad_ascent": {"epochs": 1}, "mumis": {"max_steps": 5}},
    "seeds": [0], "train": {"epochs": 2}, "metrics": ["accuracy"], "device": "cpu",
}


@dataclass(frozen=True)
class World:
    root: Path
    original: Path
    retrained: Path
    bench_cfg: Path
    refs: dict[str, Path] = field(default_factory=dict)  # verb -> its uninterrupted run

    def argv(self, verb: str, out: Path) -> list[str]:
        o = str(out)
        if verb == "train":
            return ["-q", "train", "--dataset", "digits", "--epochs", "2", "--out", o]
        if verb == "unlearn":
            return ["-q", "unlearn", "--checkpoint", str(self.original), "--forget", "class:3",
                    "--method", "mumis", "--set", "max_steps=5", "--device", "cpu", "--out", o]
        if verb == "tune":
            return ["-q", "tune", "--checkpoint", str(self.original), "--reference", str(self.retrained),
                    "--forget", "class:3", "--method", "grad_ascent", "--grid", "lr=1e-5,1e-4",
                    "--set", "epochs=1", "--device", "cpu", "--out", o]
        assert verb == "bench"
        return ["-q", "bench", "--config", str(self.bench_cfg), "--out", o, "--resume"]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("faults")
    w = World(root, root / "in" / "original", root / "in" / "retrained", root / "in" / "bench.yaml")
    common = ["-q", "train", "--dataset", "digits", "--epochs", "2"]
    assert main([*common, "--out", str(w.original)]) == 0
    assert main([*common, "--forget", "class:3", "--out", str(w.retrained)]) == 0
    w.bench_cfg.write_text(yaml.safe_dump(TINY_BENCH, sort_keys=False))
    return w


def reference(world: World, verb: str) -> Path:
    """The uninterrupted run of `verb` (in this process; made once per module)."""
    if verb not in world.refs:
        out = world.root / "ref" / verb
        assert main(world.argv(verb, out)) == 0
        world.refs[verb] = out
    return world.refs[verb]


def _env(hash_seed: int, **extra: str) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": str(hash_seed), **extra}


def run_killed(argv: list[str], sig: signal.Signals, at: str, nth: int, flag: Path,
               in_write: bool = False) -> subprocess.CompletedProcess[str]:
    """Run `mumis ARGV` in a subprocess and send `sig` when it is about to write `at` (n-th
    time), or when it is writing it (`in_write`: the temp file exists, the rename has not come)."""
    env = _env(1, MUMIS_TEST_PAUSE_AT=at, MUMIS_TEST_PAUSE_NTH=str(nth), MUMIS_TEST_FLAG=str(flag),
               MUMIS_TEST_PAUSE_IN_WRITE="1" if in_write else "")
    p = subprocess.Popen([sys.executable, "-c", HARNESS, *argv], env=env, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not flag.exists():
        if p.poll() is not None or time.monotonic() > deadline:
            p.kill()
            out, err = p.communicate()
            pytest.fail(f"never reached the write of {at} #{nth} (exit {p.returncode}): {err[-2000:]}")
        time.sleep(0.01)
    p.send_signal(sig)
    out, err = p.communicate(timeout=60)
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


def rerun(argv: list[str]) -> None:
    r = subprocess.run([sys.executable, "-m", "mumis", *argv], env=_env(2), text=True,
                       capture_output=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]


def stages(folder: Path) -> list[Path]:
    """Staging folders and temp files of atomic writes under `folder`."""
    return [p for p in folder.rglob("*") if ".partial-" in p.name or p.name.endswith(".tmp")]


def _strip(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if k not in VOLATILE}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def assert_same_run(ref: Path, got: Path) -> None:
    """Same files; same bytes except the VOLATILE fields of JSON files (and where a bench names
    its own run directories by absolute path: the two runs live in different folders)."""
    files = sorted(p.relative_to(ref) for p in ref.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(got) for p in got.rglob("*") if p.is_file())
    assert any(f.name == "model.safetensors" for f in files)
    for f in files:
        a, b = (ref / f).read_bytes(), (got / f).read_bytes()
        if f.suffix != ".safetensors":
            a = a.replace(str(ref).encode(), str(got).encode())
        if f.suffix == ".json":
            assert _strip(json.loads(a)) == _strip(json.loads(b)), f
        elif f.suffix == ".jsonl":
            assert [_strip(json.loads(x)) for x in a.splitlines()] == [
                _strip(json.loads(x)) for x in b.splitlines()], f
        else:
            assert a == b, f  # model.safetensors, config.yaml, chosen.yaml: byte for byte


@dataclass(frozen=True)
class Case:
    verb: str
    sig: signal.Signals
    at: str  # the file the run is about to write when the signal comes
    nth: int = 1
    in_write: bool = False  # signal while writing it (temp file made, not yet renamed)
    debris: bool = True  # SIGKILL there leaves a staging folder or temp file

    @property
    def id(self) -> str:
        return f"{self.verb}-{self.sig.name}-{self.at}-{self.nth}" + ("-in-write" if self.in_write else "")


KILL, TERM = signal.SIGKILL, signal.SIGTERM
# One of each verb in the default suite (about 6 s each); the other moments are slow.
FAST = [
    Case("train", KILL, "meta.json"),  # weights written in the staging folder, meta not yet
    Case("unlearn", TERM, "result.json"),  # all but the last file written
    Case("tune", KILL, "model.safetensors", 2),  # first grid point done, second one writing
    Case("bench", TERM, "model.safetensors", 3),  # both models trained, first cell writing
]
SLOW = [
    Case("train", TERM, "model.safetensors"),
    Case("train", KILL, "history.jsonl"),
    Case("unlearn", KILL, "model.safetensors"),
    Case("tune", TERM, "result.json"),
    Case("tune", KILL, "tuning.json"),
    Case("bench", KILL, "model.safetensors", 2),  # the retrained model's staging folder
    Case("bench", KILL, "digits__mlp__class-3__grad_ascent__s0.json", debris=False),  # run done, record not
    Case("bench", KILL, "digits__mlp__class-3__grad_ascent__s0.json", in_write=True),  # a temp file left
    Case("unlearn", KILL, "meta.json", in_write=True),
]


def _check(world: World, case: Case, tmp_path: Path) -> None:
    out = tmp_path / "work" / case.verb
    argv = world.argv(case.verb, out)
    r = run_killed(argv, case.sig, case.at, case.nth, tmp_path / "flag", case.in_write)
    if case.sig == TERM:
        assert r.returncode == 143, r.stderr[-2000:]
        lines = r.stderr.strip().splitlines()
        assert lines[-1] == "mumis: terminated (SIGTERM)" and "Traceback" not in r.stderr, r.stderr
        assert stages(out.parent) == []  # the run removed its own staging folder
    else:
        assert r.returncode == -signal.SIGKILL
        assert bool(stages(out.parent)) == case.debris  # the rerun must remove what is there
    if case.verb != "bench":
        assert not out.exists()  # never a half-written run directory under the --out name
    rerun(argv)
    assert stages(out.parent) == []
    assert_same_run(reference(world, case.verb), out)


@pytest.mark.parametrize("case", FAST, ids=lambda c: c.id)
def test_killed_run_then_rerun(world: World, case: Case, tmp_path: Path) -> None:
    _check(world, case, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("case", SLOW, ids=lambda c: c.id)
def test_killed_run_then_rerun_more_moments(world: World, case: Case, tmp_path: Path) -> None:
    _check(world, case, tmp_path)


@pytest.mark.slow
def test_kill_during_overwrite_keeps_the_old_run(world: World, tmp_path: Path) -> None:
    """SIGKILL while `--overwrite` writes the new run: the old run stays whole under --out."""
    out = tmp_path / "work" / "unlearn"
    old_argv = [a if a != "max_steps=5" else "max_steps=2" for a in world.argv("unlearn", out)]
    assert main(old_argv) == 0
    old = tmp_path / "old"
    shutil.copytree(out, old)
    argv = [*world.argv("unlearn", out), "--overwrite"]
    r = run_killed(argv, KILL, "result.json", 1, tmp_path / "flag")
    assert r.returncode == -signal.SIGKILL
    assert_same_run(old, out)
    rerun(argv)
    assert stages(out.parent) == []
    assert_same_run(reference(world, "unlearn"), out)

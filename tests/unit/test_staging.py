"""Staging folders: who may remove them, locking, the final swap, and signals held meanwhile."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mumis import staging
from mumis.utils import staged_run_dir


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()  # reaped: the pid is free (reuse within a test is vanishingly unlikely)
    return p.pid


def _stage(parent: Path, name: str) -> Path:
    d = parent / name
    d.mkdir()
    (d / "model.safetensors").write_bytes(b"half")
    return d


def test_only_stale_stages_of_our_own_are_removed(tmp_path: Path) -> None:
    out, tag, dead = tmp_path / "run", staging.host_tag(), _dead_pid()
    stale = _stage(tmp_path, f".run.partial-p{dead}-h{tag}-abc123")
    stale_old = _stage(tmp_path, f".run.partial-p{dead}-h{tag}-abc123-old")  # killed mid-swap
    stale_other = _stage(tmp_path, f".other.partial-p{dead}-h{tag}-x")  # another --out, same folder
    keep = [
        _stage(tmp_path, f".run.partial-p{os.getppid()}-h{tag}-live"),  # a live process
        _stage(tmp_path, f".run.partial-p{os.getpid()}-h{tag}-mine"),  # this very process
        _stage(tmp_path, f".run.partial-p{dead}-hdeadbeef-otherhost"),  # another machine
        _stage(tmp_path, ".run.partial-k3j2l1x9"),  # an older mumis: owner unknown
        _stage(tmp_path, f"run.partial-p{dead}-h{tag}-x"),  # not hidden: not ours
    ]
    (tmp_path / f".run.partial-p{dead}-h{tag}-file").write_text("a file, not a staging folder")
    removed = staging.remove_stale_stages(out)
    assert sorted(removed) == sorted([stale, stale_old, stale_other])
    assert not any(p.exists() for p in (stale, stale_old, stale_other))
    assert all(k.exists() for k in keep)


def test_a_locked_stage_is_kept_even_if_its_pid_looks_dead(tmp_path: Path) -> None:
    # e.g. a run in another container (other PID namespace) sharing this folder
    d = _stage(tmp_path, f".run.partial-p{_dead_pid()}-h{staging.host_tag()}-x")
    fd = os.open(d, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert staging.remove_stale_stages(tmp_path / "run") == [] and d.exists()
    finally:
        os.close(fd)
    assert staging.remove_stale_stages(tmp_path / "run") == [d]


def test_in_use_for_a_bench_that_owns_its_tree(tmp_path: Path) -> None:
    tag, dead = staging.host_tag(), _dead_pid()
    assert staging.in_use(_stage(tmp_path, f".a.partial-p{os.getppid()}-h{tag}-x"))  # a live run
    assert staging.in_use(_stage(tmp_path, f".b.partial-p{dead}-hdeadbeef-x"))  # another host
    assert not staging.in_use(_stage(tmp_path, f".c.partial-p{dead}-h{tag}-x"))  # dead
    assert not staging.in_use(_stage(tmp_path, ".d.partial-k3j2l1x9"))  # older naming: the owner may clear it


def test_staged_run_dir_names_and_locks_its_stage(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with staged_run_dir(out) as stage:
        assert stage.name.startswith(f".run.partial-p{os.getpid()}-h{staging.host_tag()}-")
        fd = os.open(stage, os.O_RDONLY)
        try:
            with pytest.raises(BlockingIOError):  # held by the run for as long as it lasts
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
        (stage / "a.txt").write_text("1")
    assert (out / "a.txt").read_text() == "1" and [p.name for p in tmp_path.iterdir()] == ["run"]


def test_staged_run_dir_removes_debris_of_a_dead_run(tmp_path: Path) -> None:
    debris = _stage(tmp_path, f".run.partial-p{_dead_pid()}-h{staging.host_tag()}-x")
    with staged_run_dir(tmp_path / "run") as stage:
        assert not debris.exists()
        (stage / "a.txt").write_text("1")
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


def test_stale_temp_files_of_atomic_writes(tmp_path: Path) -> None:
    from mumis.utils import atomic_write_text

    target, tag, dead = tmp_path / "rec.json", staging.host_tag(), _dead_pid()
    stale = tmp_path / f".rec.json.p{dead}-h{tag}-x1.tmp"
    keep = [tmp_path / f".rec.json.p{os.getppid()}-h{tag}-x2.tmp",  # a live writer
            tmp_path / f".rec.json.p{dead}-hdeadbeef-x3.tmp",  # another machine
            tmp_path / f".other.json.p{dead}-h{tag}-x4.tmp"]  # another file
    for f in (stale, *keep):
        f.write_text("half")
    atomic_write_text(target, "{}")  # the next write of the same file tidies up
    assert target.read_text() == "{}" and not stale.exists() and all(k.exists() for k in keep)


def test_commit_replaces_the_old_run_and_leaves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "old.txt").write_text("old")
    stage = _stage(tmp_path, staging.stage_prefix(out) + "x")
    staging.commit_stage(stage, out)
    assert sorted(p.name for p in out.iterdir()) == ["model.safetensors"]
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


def test_signals_are_held_during_the_swap() -> None:
    got: list[int] = []
    old = signal.signal(signal.SIGTERM, lambda signum, frame: got.append(signum))
    # another thread that could take the signal (as torch's threads do in a real run)
    other = threading.Thread(target=time.sleep, args=(0.5,))
    other.start()
    try:
        with staging.signals_held():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
            assert got == []  # held, not handled
        assert got == [signal.SIGTERM]  # handled once the block ends
    finally:
        signal.signal(signal.SIGTERM, old)
        other.join()


def test_pid_alive() -> None:
    assert staging.pid_alive(os.getpid()) and not staging.pid_alive(_dead_pid())
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        os.waitid(os.P_PID, zombie.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped yet
        assert not staging.pid_alive(zombie.pid)
    finally:
        zombie.wait()

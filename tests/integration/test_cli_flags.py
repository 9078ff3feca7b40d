"""Global flags (`--debug`, `-q`) before or after the verb; exit codes under --debug; SIGTERM."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import mumis.cli as cli
from mumis.cli import VERBS, build_parser, main
from mumis.exceptions import ConfigError
from mumis.utils import staged_run_dir

#: The smallest valid command line of every verb (parsing only: nothing runs).
ARGV = {
    "demo": ["demo"], "train": ["train", "--out", "x"],
    "unlearn": ["unlearn", "--checkpoint", "c", "--forget", "class:1", "--out", "x"],
    "evaluate": ["evaluate", "--checkpoint", "c", "--forget", "class:1"],
    "tune": ["tune", "--checkpoint", "c", "--reference", "r", "--forget", "class:1", "--out", "x"],
    "bench": ["bench", "--config", "b.yaml", "--out", "x"], "report": ["report", "d"],
    "methods": ["methods"], "env": ["env"],
    "verify": ["verify", "d"],
    "audit": ["audit", "digits", "--forget", "class:1", "--method", "finetune", "--out", "x"],
}


def test_every_verb_is_covered() -> None:
    assert set(ARGV) == set(VERBS)


@pytest.mark.parametrize("verb", VERBS)
def test_global_flags_before_or_after_the_verb(verb: str) -> None:
    p = build_parser()
    argv = ARGV[verb]
    for args in (p.parse_args(["--debug", "-q", *argv]), p.parse_args([*argv, "--debug", "-q"]),
                 p.parse_args(["--debug", *argv, "--quiet"])):
        assert args.debug is True and args.quiet is True, args
    plain = p.parse_args(argv)
    assert plain.debug is False and plain.quiet is False


def _env_runs(monkeypatch: pytest.MonkeyPatch, fn: Callable[[argparse.Namespace], int]) -> None:
    """Make `mumis env` call `fn` (its parser takes `run` when the parser is built)."""
    monkeypatch.setattr("mumis.cli.env.run", fn)


def _fail_with(monkeypatch: pytest.MonkeyPatch, exc: BaseException) -> None:
    def run(args: argparse.Namespace) -> int:
        raise exc

    _env_runs(monkeypatch, run)


def test_bad_input_with_debug_still_exits_2(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    _fail_with(monkeypatch, ConfigError("--foo must be positive, got -1; pass --foo 1"))
    assert main(["env"]) == 2
    err = capsys.readouterr().err
    assert err == "mumis: error: --foo must be positive, got -1; pass --foo 1\n"
    for argv in (["--debug", "env"], ["env", "--debug"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "Traceback (most recent call last)" in err and "ConfigError" in err
        assert err.splitlines()[-1] == "mumis: error: --foo must be positive, got -1; pass --foo 1"


def test_runtime_failure_with_debug_exits_1(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    _fail_with(monkeypatch, RuntimeError("boom"))
    assert main(["env"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith("mumis: failed: RuntimeError: boom (run with --debug")
    assert main(["env", "--debug"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and err.splitlines()[-1] == "mumis: failed: RuntimeError: boom"


def test_a_real_bad_input_with_debug_after_the_verb(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r"
    assert main(["train", "--dataset", "nosuchset", "--out", str(out), "--debug"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.splitlines()[-1].startswith("mumis: error: ") and "nosuchset" in err
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_sigterm_is_handled_like_ctrl_c(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r"
    before = signal.getsignal(signal.SIGTERM)

    def run(args: argparse.Namespace) -> int:
        with staged_run_dir(out) as stage:
            (stage / "model.safetensors").write_bytes(b"half")
            os.kill(os.getpid(), signal.SIGTERM)
            signal.pause()  # not reached: the handler raises first
        return 0

    _env_runs(monkeypatch, run)
    assert main(["env"]) == 143
    assert capsys.readouterr().err == "mumis: terminated (SIGTERM)\n"
    assert list(tmp_path.iterdir()) == []  # the staging folder was removed
    assert signal.getsignal(signal.SIGTERM) == before  # the handler was put back


def test_sigterm_in_a_real_process(tmp_path: Path) -> None:
    # `mumis` itself, stopped while its (long) training runs: exit 143, one line, nothing left.
    p = subprocess.Popen([sys.executable, "-m", "mumis", "-q", "train", "--dataset", "digits", "--epochs",
                          "500", "--out", str(tmp_path / "r")], cwd=tmp_path, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        while not any(".partial-" in q.name for q in tmp_path.iterdir()):
            assert p.poll() is None, p.communicate()[1]
            time.sleep(0.02)
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=60)
    finally:
        p.kill()
    assert p.returncode == 143 and err == "mumis: terminated (SIGTERM)\n", err
    assert list(tmp_path.iterdir()) == []


def test_an_ignored_hangup_stays_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    # `nohup mumis ...`: SIGHUP is ignored before mumis starts, and must stay so while it runs
    seen = {}

    def run(args: argparse.Namespace) -> int:
        seen["hup"], seen["term"] = signal.getsignal(signal.SIGHUP), signal.getsignal(signal.SIGTERM)
        return 0

    _env_runs(monkeypatch, run)
    old = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        assert main(["env"]) == 0
    finally:
        signal.signal(signal.SIGHUP, old)
    assert seen["hup"] is signal.SIG_IGN and seen["term"] is cli._terminate


def test_quiet_after_the_verb_reaches_the_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen: list[bool] = []

    def fake_train_run(**kw: object) -> None:
        seen.append(bool(kw["progress"]))
        raise ConfigError("stop here")

    monkeypatch.setattr("mumis.runs.train_run", fake_train_run)  # where `mumis train` takes it
    out = str(tmp_path / "r")
    assert main(["train", "--out", out]) == 2
    assert main(["train", "--out", out, "-q"]) == 2
    assert main(["-q", "train", "--out", out]) == 2
    assert seen == [True, False, False]

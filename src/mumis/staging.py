"""Staging folders of run directories (and temp files of atomic writes): named after their
process, locked while it lives.

`utils.staged_run_dir` writes a run into `.NAME.partial-p<pid>-h<host>-<random>` beside `NAME`
and renames it into place when complete. A run killed with SIGKILL (or a power cut) cannot remove
its staging folder, so the next run that writes a run directory in the same folder removes the
ones whose owner is gone. A folder counts as stale only when all of these hold:

- its name has our pattern, with this host's tag (a run on another machine sharing the folder
  over the network is never judged by our process table);
- its process id is not a live process here (zombies count as dead);
- nobody holds the `flock` its owner takes on it (the kernel drops the lock when the owner dies,
  also across PID namespaces of containers that share the folder).

Anything else, including staging folders of older mumis versions (no pid in the name), is left
alone: we never delete a folder we cannot prove is debris of our own dead run. The temp files of
`utils.atomic_write_bytes` (`.NAME.p<pid>-h<host>-<random>.tmp`) follow the same rules, checked
by the next write of the same file.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import signal
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

INFIX = ".partial-"
#: Any staging folder named by this module: groups pid and host tag.
_ANY_STAGE = re.compile(rf"^\..+{re.escape(INFIX)}p(\d+)-h([0-9a-f]{{8}})-.+$")
_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))


def host_tag() -> str:
    """8 hex digits naming this machine (its host name, hashed: names may hold any character)."""
    return hashlib.sha256(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:8]


def stage_prefix(out: Path) -> str:
    return f".{out.name}{INFIX}p{os.getpid()}-h{host_tag()}-"


def pid_alive(pid: int) -> bool:
    """True when `pid` is a running process here (or when that cannot be told)."""
    if os.name != "posix":
        return True  # no cheap check: treat as alive, so nothing is deleted
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # another user's process (or a pid we cannot ask about): keep its folder
    try:  # a zombie (dead, not yet reaped by its parent) keeps its pid but does no more work
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def _lock(fd: int) -> bool:
    """Take an exclusive, non-blocking flock on `fd`; False when someone else holds it."""
    try:
        import fcntl
    except ImportError:  # not posix
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # held by a live run, or a file system without locks: treat both as alive
        return False
    return True


def _unlocked(path: Path, directory: bool) -> int | None:
    """An fd holding the lock of `path` when no live process holds it, else None."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | (getattr(os, "O_DIRECTORY", 0) if directory else 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return None
    if _lock(fd):
        return fd
    os.close(fd)
    return None


def _remove_stale(parent: Path, pattern: re.Pattern[str], directory: bool) -> list[Path]:
    """Remove the entries of `parent` matching `pattern` (groups: pid, host tag) whose owner is
    gone: this host's tag, a dead pid other than ours, and no lock held on them."""
    if not parent.is_dir():
        return []
    tag, me = host_tag(), os.getpid()
    removed = []
    with contextlib.suppress(OSError):
        for entry in list(parent.iterdir()):
            m = pattern.match(entry.name)
            if m is None or m.group(2) != tag or int(m.group(1)) == me or pid_alive(int(m.group(1))):
                continue
            if entry.is_symlink() or entry.is_dir() != directory:
                continue
            fd = _unlocked(entry, directory)
            if fd is None:
                continue
            try:
                if directory:
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
            finally:
                os.close(fd)
            removed.append(entry)
    return removed


def in_use(stage: Path) -> bool:
    """True when `stage` is a staging folder named by this module whose run may still be going
    (alive, locked, or on another host); False for debris of a dead run and for a folder named
    otherwise (older mumis versions), which a caller that owns the whole tree may remove."""
    m = _ANY_STAGE.match(stage.name)
    if m is None:
        return False
    if m.group(2) != host_tag() or int(m.group(1)) == os.getpid() or pid_alive(int(m.group(1))):
        return True
    fd = _unlocked(stage, directory=True)
    if fd is None:
        return True
    os.close(fd)
    return False


def remove_stale_stages(out: Path) -> list[Path]:
    """Remove the staging folders beside `out` (of any run directory there) left by dead runs
    of this host (see the module doc).

    Returns:
        The folders removed.
    """
    return _remove_stale(out.parent, _ANY_STAGE, directory=True)


def tmp_prefix(path: Path) -> str:
    """Prefix of the temp file an atomic write of `path` goes through (named like a stage)."""
    return f".{path.name}.p{os.getpid()}-h{host_tag()}-"


def remove_stale_tmp(path: Path) -> list[Path]:
    """Remove temp files of atomic writes of `path` by dead processes of this host (a record
    or bench.json whose write was killed between the temp file and the rename)."""
    pattern = re.compile(rf"^\.{re.escape(path.name)}\.p(\d+)-h([0-9a-f]{{8}})-.+\.tmp$")
    return _remove_stale(path.parent, pattern, directory=False)


def lock_fd(fd: int) -> None:
    """Mark an open staging folder or temp file as in use by this process (best effort)."""
    _lock(fd)


@contextlib.contextmanager
def new_stage(out: Path, mode: int) -> Iterator[Path]:
    """Create (and lock, for as long as the block runs) a staging folder for `out`."""
    stage = Path(tempfile.mkdtemp(dir=out.parent, prefix=stage_prefix(out)))
    os.chmod(stage, mode)  # mkdtemp makes 0700; a run directory is for sharing
    fd = None
    with contextlib.suppress(OSError):  # without locks, the pid in the name still protects it
        fd = os.open(stage, os.O_RDONLY)
        _lock(fd)
    try:
        yield stage
    finally:
        if fd is not None:
            os.close(fd)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Delay Ctrl-C / SIGTERM / SIGHUP until the block is done (a swap or cleanup runs whole).

    The Python handlers are swapped for a recorder, and the signals that came meanwhile are
    raised again at the end (blocking them with a signal mask would not do: the kernel hands a
    process-wide signal to another thread, torch's for instance, and Python still runs its
    handler in the main thread at once). Only in the main thread, where handlers can be set.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    old: dict[int, Any] = {}
    for s in _SIGNALS:
        with contextlib.suppress(ValueError, OSError, TypeError):
            old[s] = signal.signal(s, lambda signum, frame: pending.append(signum))
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, signal.SIG_DFL if handler is None else handler)
        for s in dict.fromkeys(pending):
            signal.raise_signal(s)


def commit_stage(stage: Path, out: Path) -> None:
    """Move the finished `stage` to `out`, replacing an existing `out` (already checked).

    The old `out` is first renamed to a stage-style name, so that a kill in between leaves only
    folders the next run recognises as debris, never a half-deleted run directory under `out`.
    """
    with signals_held():
        old = None
        if out.exists() or out.is_symlink():
            old = stage.with_name(stage.name + "-old")
            os.replace(out, old)
        os.replace(stage, out)
        if old is not None:
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink()


def discard_stage(stage: Path) -> None:
    with signals_held():
        shutil.rmtree(stage, ignore_errors=True)

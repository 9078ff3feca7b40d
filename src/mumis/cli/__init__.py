"""The `mumis` command line. One module per verb; each exposes `add_parser(sub)` and `run(args)`.

Exit codes: 0 success; 2 bad usage or bad input (one line: what was wrong, how to fix it);
1 runtime failure; 130 interrupted (Ctrl-C); 143 terminated (SIGTERM; 129 for SIGHUP). The global
flags `--debug` (print the traceback, then the same one line and the same exit code) and `-q`
(no progress bars) may come before or after the verb. SIGTERM and SIGHUP are handled like Ctrl-C:
the run stops, its staging folder is removed, and nothing half-written is left (`mumis.staging`).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import signal
import sys
import threading
import traceback
from collections.abc import Iterator, Sequence
from typing import Any, NoReturn

from ..exceptions import USER_ERRORS, MumisError

#: Verb -> module under mumis.cli. Order is the order shown in --help.
VERBS = ["demo", "train", "unlearn", "evaluate", "verify", "audit", "tune", "bench", "report", "methods", "env"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit 2 (argparse prints usage too)
        self.exit(2, f"mumis: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    from .._version import __version__

    parser = _Parser(prog="mumis", description="Machine unlearning by minimizing input sensitivity.")
    parser.add_argument("--version", action="version", version=f"mumis {__version__}")
    _add_global_flags(parser, default=False)
    sub = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)
    for verb in VERBS:
        importlib.import_module(f"{__name__}.{verb}").add_parser(sub)
    for verb_parser in dict.fromkeys(sub.choices.values()):
        # SUPPRESS: absent after the verb, the value given before it (or False) stays
        _add_global_flags(verb_parser, default=argparse.SUPPRESS)
    return parser


def _add_global_flags(p: argparse.ArgumentParser, default: Any) -> None:
    if "--debug" not in p._option_string_actions:
        p.add_argument("--debug", action="store_true", default=default,
                       help="on an error, print the traceback too (the exit code stays the same)")
    if not {"-q", "--quiet"} & set(p._option_string_actions):
        p.add_argument("-q", "--quiet", action="store_true", default=default, help="no progress bars")


class Terminated(KeyboardInterrupt):
    """SIGTERM / SIGHUP raised in the main thread, so that cleanup runs as for Ctrl-C."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _terminate(signum: int, frame: Any) -> None:
    signal.signal(signum, signal.SIG_IGN)  # a second SIGTERM must not cut the cleanup short
    raise Terminated(signum)


@contextlib.contextmanager
def _signals_as_exceptions() -> Iterator[None]:
    """Turn SIGTERM / SIGHUP into `Terminated` while a verb runs (then restore the handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return
    # an ignored signal stays ignored (`nohup mumis bench ...` must survive the hang-up)
    names = [n for n in ("SIGTERM", "SIGHUP")
             if hasattr(signal, n) and signal.getsignal(getattr(signal, n)) is not signal.SIG_IGN]
    old = {n: signal.signal(getattr(signal, n), _terminate) for n in names}
    try:
        yield
    finally:
        for n, h in old.items():
            signal.signal(getattr(signal, n), h)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verb is None:
        parser.print_help()
        return 2
    dist_run = _under_torchrun()
    ok = False
    try:
        with _signals_as_exceptions():
            if dist_run:
                _join_torchrun(args.verb)
            rc = args.func(args)
        ok = True
        return int(rc or 0)
    except Terminated as e:
        print(f"mumis: terminated ({signal.Signals(e.signum).name})", file=sys.stderr)
        return 128 + e.signum
    except KeyboardInterrupt:
        print("mumis: interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as e:  # --debug: the traceback, then the same line and exit code
        _traceback_if(args.debug)
        print(f"mumis: error: {e}", file=sys.stderr)
        return 2
    except MumisError as e:
        _traceback_if(args.debug)
        print(f"mumis: error: {e}" + ("" if args.debug else " (run with --debug for details)"),
              file=sys.stderr)
        return 1
    except Exception as e:  # noqa: BLE001  runtime failure: one line unless --debug
        _traceback_if(args.debug)
        print(f"mumis: failed: {type(e).__name__}: {e}"
              + ("" if args.debug else " (run with --debug for the traceback)"), file=sys.stderr)
        return 1
    finally:
        if dist_run:
            from ..distributed import shutdown

            shutdown(wait=ok)


def _traceback_if(debug: bool) -> None:
    if debug:
        traceback.print_exc(file=sys.stderr)


#: Verbs that run under torchrun (one process per device); the others refuse WORLD_SIZE > 1.
DISTRIBUTED_VERBS = ("train", "unlearn")


def _under_torchrun() -> bool:
    import os

    return os.environ.get("WORLD_SIZE", "1").strip() not in ("", "0", "1")


def _join_torchrun(verb: str) -> None:
    from ..exceptions import ConfigError

    if verb not in DISTRIBUTED_VERBS:
        raise ConfigError(f"`mumis {verb}` does not run under torchrun yet (WORLD_SIZE > 1); run it as one "
                          f"process (verbs that do: {', '.join(DISTRIBUTED_VERBS)})")
    from ..distributed import init_from_env

    init_from_env()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""The `mumis` command line. One module per verb; each exposes `add_parser(sub)` and `run(args)`.

Exit codes: 0 success; 2 bad usage or bad input (one line: what was wrong, how to fix it);
1 runtime failure (`--debug` shows the traceback).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn

from ..exceptions import USER_ERRORS, MumisError

#: Verb -> module under mumis.cli. Order is the order shown in --help.
VERBS = ["demo", "train", "unlearn", "evaluate", "tune", "bench", "report", "methods", "env"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit 2 (argparse prints usage too)
        self.exit(2, f"mumis: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = _Parser(prog="mumis", description="Machine unlearning by minimizing input sensitivity.")
    parser.add_argument("--version", action="version", version=f"mumis {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)
    for verb in VERBS:
        importlib.import_module(f"{__name__}.{verb}").add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verb is None:
        parser.print_help()
        return 2
    dist_run = _under_torchrun()
    ok = False
    try:
        if dist_run:
            _join_torchrun(args.verb)
        rc = args.func(args)
        ok = True
        return int(rc or 0)
    except USER_ERRORS as e:
        if args.debug:
            raise
        print(f"mumis: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mumis: interrupted", file=sys.stderr)
        return 130
    except MumisError as e:
        if args.debug:
            raise
        print(f"mumis: error: {e} (run with --debug for details)", file=sys.stderr)
        return 1
    except Exception as e:  # noqa: BLE001  runtime failure: one line unless --debug
        if args.debug:
            raise
        print(f"mumis: failed: {type(e).__name__}: {e} (run with --debug for the traceback)",
              file=sys.stderr)
        return 1
    finally:
        if dist_run:
            from ..distributed import shutdown

            shutdown(wait=ok)


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

"""`mumis report`: tables (Markdown, CSV, LaTeX) and an HTML page from a bench directory.

    mumis report runs/bench/smoke [--format md,csv,tex,html]

Reads only the bench's records and run files; writes DIR/report/tables.md, tables.csv,
tables.tex and report.html, and prints the Markdown tables.
"""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report", help="tables and an HTML page from a `mumis bench` directory",
        description=__doc__.splitlines()[0],
    )
    p.add_argument("dir", metavar="DIR", help="the --out folder of `mumis bench`")
    p.add_argument("--format", default="md,csv,tex,html", metavar="FMT[,FMT]",
                   help="comma-separated: md, csv, tex, html (default: all four)")
    p.add_argument("--precision", type=int, default=2, help="decimals in the tables (default 2)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..exceptions import ConfigError
    from ..reporting import parse_formats, write_report
    from ._checks import check_output_dir

    fmts = parse_formats(args.format)
    if not 0 <= args.precision <= 10:
        raise ConfigError(f"--precision must be in 0..10, got {args.precision}")
    folder = Path(args.dir)
    if not folder.is_dir():
        raise ConfigError(f"{args.dir!r} is not a folder; give the --out folder of `mumis bench`")
    check_output_dir(folder / "report", "report folder")
    written = write_report(args.dir, formats=fmts, precision=args.precision)
    if not getattr(args, "quiet", False) and "md" in written:
        print(written["md"].read_text())
    for f, path in written.items():
        print(f"{f}: {path}")
    return 0

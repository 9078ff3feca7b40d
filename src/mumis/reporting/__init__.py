"""Reports of a bench directory: Markdown, CSV and LaTeX tables and a self-contained HTML page.

    from mumis.reporting import write_report
    paths = write_report("runs/bench/smoke", formats=("md", "html"))

Reads only the bench's records (and, for the dynamics plots, its runs' `history.jsonl`). The
records of sequential scenarios have their own tables and curves (`reporting.sequence`; in the
md and html, and with csv in `report/sequences.csv`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..exceptions import ConfigError
from ..registry import did_you_mean
from .tables import Table, build_tables, to_csv, to_latex, to_markdown

FORMATS = ("md", "csv", "tex", "html")
#: Format -> file name under DIR/report/.
FILES = {"md": "tables.md", "csv": "tables.csv", "tex": "tables.tex", "html": "report.html"}


def parse_formats(text: str | Sequence[str]) -> list[str]:
    """`"md,csv"` or a list -> the formats, checked (ConfigError with did-you-mean)."""
    items = [s.strip() for s in (text.split(",") if isinstance(text, str) else text) if s.strip()]
    if not items:
        raise ConfigError(f"no report format given; choose from {', '.join(FORMATS)}")
    for f in items:
        if f not in FORMATS:
            raise ConfigError(f"unknown report format {f!r}.{did_you_mean(f, list(FORMATS))} "
                              f"Choose from: {', '.join(FORMATS)} (comma-separated)")
    return list(dict.fromkeys(items))


def write_report(
    out: str | Path, *, formats: Sequence[str] = FORMATS, precision: int = 2
) -> dict[str, Path]:
    """Write the report of bench directory `out` into `out/report/`.

    Args:
        out: a `mumis bench` output directory.
        formats: any of "md", "csv", "tex", "html".
        precision: decimals in the md, tex and html tables (CSV keeps full precision).
    Returns:
        format -> written file.
    Raises:
        ConfigError: unknown format, or `out` holds no records.
    """
    from ..bench.runner import BENCH_FILE, read_records
    from ..utils import atomic_write_text, read_json

    fmts = parse_formats(formats)
    out = Path(out)
    _check_records_readable(out)  # read_records skips unreadable ones (a bench redoes them)
    records = read_records(out)
    bench = read_json(out / BENCH_FILE) if (out / BENCH_FILE).is_file() else None
    from .sequence import SEQUENCES_CSV, build_sequence_tables, sequence_csv, sequence_markdown

    # the sequential scenarios' records get their own tables (method x request) and curves
    seq = build_sequence_tables(records, bench)
    tables = build_tables([r for r in records if "sequence" not in r], bench)
    name = ((bench or {}).get("config") or {}).get("name") or out.name
    title = f"mumis bench: {name}"
    written: dict[str, Path] = {}
    for f in fmts:
        path = out / "report" / FILES[f]
        if f == "md":
            text = to_markdown(tables, title=title, precision=precision) + sequence_markdown(seq, precision)
        elif f == "csv":
            text = to_csv(tables)
        elif f == "tex":
            text = to_latex(tables, precision=precision)
        else:
            from .html import render_html

            text = render_html(out, tables, records, title=title, precision=precision, sequences=seq)
        atomic_write_text(path, text)
        written[f] = path
        if f == "csv" and seq:  # the sequence tables' columns differ: a file of their own
            atomic_write_text(out / "report" / SEQUENCES_CSV, sequence_csv(seq))
            written["csv (sequences)"] = out / "report" / SEQUENCES_CSV
    return written


def _check_records_readable(out: Path) -> None:
    """DataError naming the first record file that is not a readable bench record: a report
    must never drop a row silently (`mumis bench --resume` redoes such a cell)."""
    import json

    from ..bench.runner import RECORD_FORMAT
    from ..exceptions import DataError

    redo = f"redo that cell with `mumis bench --config FILE --out {str(out)!r} --resume`, or delete it"
    for f in sorted((out / "records").glob("*.json")) if (out / "records").is_dir() else []:
        try:
            rec = json.loads(f.read_bytes().decode("utf-8"))
        except (OSError, ValueError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise DataError(f"bench record {str(f)!r} is unreadable ({type(e).__name__}: "
                            f"{str(e).splitlines()[0][:80]}); {redo}") from None
        if not isinstance(rec, dict) or rec.get("format") != RECORD_FORMAT:
            raise DataError(f"bench record {str(f)!r} is not a {RECORD_FORMAT} record; {redo}")


__all__ = ["FILES", "FORMATS", "Table", "build_tables", "parse_formats", "to_csv", "to_latex",
           "to_markdown", "write_report"]

"""A self-contained HTML page of a bench: inline CSS, the tables, and plots as base64 PNGs.

Plots need matplotlib (`pip install mumis[plot]`); without it the page says so and keeps the
tables.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
from pathlib import Path
from typing import Any

from . import plots
from .tables import Table, _header, _seeds_note, has_floor, notes

_CSS = """
body { font-family: system-ui, -apple-system, Segoe UI, sans-serif; margin: 2em auto; max-width: 1100px;
       color: #222; line-height: 1.4; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
tr.reference td { background: #eef5ff; font-weight: 600; } tr.context td { background: #f7f7f7; }
img { max-width: 100%; display: block; margin: 0.5em 0; }
.howto { background: #f3f8ee; padding: 0.5em 1em; border-left: 4px solid #6a6; }
.note { color: #555; font-size: 0.85em; } .warn { background: #fff4e0; padding: 0.5em 1em; border-left: 4px solid #f0a000; }
"""


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


HOW_TO_READ = ("How to read this: every row is a model, every number its value; the retrain row "
               "is the target, a model trained without the forget set, and each gap is a mean "
               "distance to it (0 = the same numbers).")
HOW_TO_READ_FLOOR = (" Two retrained models with different seeds already differ: the retrain (seed X) "
                     "rows say by how much (the retraining floor, drawn as a shaded band on the "
                     "charts). A number marked * is within the floor, as close to retrain as "
                     "another retrained model is; an unmarked one is further than that.")
HOW_TO_READ_NO_FLOOR = (" These records have a single retrained model, so there is no floor to read "
                        "the gaps against; add `retrain_seeds: [0, 1]` to the bench config to see "
                        "how far two retrained models differ.")


def how_to_read(tables: list[Table]) -> str:
    """The paragraph at the top of report.html."""
    return HOW_TO_READ + (HOW_TO_READ_FLOOR if has_floor(tables) else HOW_TO_READ_NO_FLOOR)


def table_html(table: Table, precision: int = 2) -> str:
    """One table as an HTML `<table>` (the oracle's row has class `reference`)."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in _header(table))
    rows = []
    for r in table.rows:
        cells = [f"<td>{html.escape(r.method)}</td>"] + [
            f"<td>{html.escape(r.cell(k, precision))}</td>" for k, _ in table.columns]
        cls = ' class="reference"' if r.reference else ' class="context"' if r.context else ""
        rows.append(f"<tr{cls}>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _read_history(path: Path) -> list[dict[str, Any]]:
    rows = []
    for line in path.read_text().splitlines():
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


def mumis_runs(out: Path, records: list[dict[str, Any]], table: Table) -> dict[str, list[dict[str, Any]]]:
    """label -> runs (label, history, stop_step) of the MU-Mis cells (every variant: mumis,
    mumis_published, mumis_v1) of one table, in the table's row order, from the runs'
    `history.jsonl` files (cells whose history is missing are left out)."""
    found: dict[str, list[dict[str, Any]]] = {}
    rank = {row.method: i for i, row in enumerate(table.rows)}
    for r in sorted(records, key=lambda r: (rank.get(r["method"], len(rank)), r.get("seed", 0))):
        if (not str(r.get("method_name") or "").startswith("mumis") or r["dataset"] != table.dataset or r["model"] != table.model
                or r["scenario"] != table.scenario or not r.get("run_dir")):
            continue
        hist = out / r["run_dir"] / "history.jsonl"
        if not hist.is_file():
            continue
        found.setdefault(r["method"], []).append(
            {"label": f"seed {r.get('seed', 0)}", "history": _read_history(hist), "stop_step": r.get("steps")})
    return found


def table_samples(records: list[dict[str, Any]], table: Table) -> dict[str, dict[str, Any]]:
    """Row label -> its records' `samples`, pooled over seeds (rows in the table's order; rows
    whose records carry no samples are left out)."""
    pooled: dict[str, dict[str, dict[str, list[float]]]] = {}
    for r in sorted(records, key=lambda r: r.get("seed", 0)):
        if (r["dataset"], r["model"], r["scenario"]) != (table.dataset, table.model, table.scenario):
            continue
        for quantity, by_split in (r.get("samples") or {}).items():
            for split, values in by_split.items():
                (pooled.setdefault(r["method"], {}).setdefault(quantity, {})
                 .setdefault(split, []).extend(values))
    return {row.method: pooled[row.method] for row in table.rows if row.method in pooled}


def render_html(out: str | Path, tables: list[Table], records: list[dict[str, Any]], *,
                title: str = "mumis bench", precision: int = 2, sequences: list[Any] | None = None) -> str:
    """The page: per table the numbers, a bar chart of accuracies and gaps, the recovery audits
    (when the records have them), input-sensitivity histograms, membership-inference score
    distributions and MU-Mis dynamics.

    Args:
        out: the bench directory (its runs' history files feed the dynamics plots).
        tables: from `build_tables`.
        records: the records the tables came from.
        title: the page title.
        precision: decimals in the tables.
        sequences: the sequential scenarios' tables (`reporting.sequence`), after the others.
    Returns:
        The HTML text.
    """
    out = Path(out)
    have_plots = plots.available()
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="note">{len(records)} records from {html.escape(str(out))}; generated {now} by '
        "<code>mumis report</code>.</p>",
        f'<p class="howto">{html.escape(how_to_read(tables))}</p>',
    ]
    if not have_plots:
        parts.append('<p class="warn">matplotlib is not installed, so this page has no plots; '
                     "install it (<code>pip install mumis[plot]</code>) and run <code>mumis report</code> "
                     "again.</p>")
    for t in tables:
        parts += [f"<h2>{html.escape(t.title)}</h2>", f'<p class="note">{html.escape(_seeds_note(t))}</p>',
                  table_html(t, precision)]
        if have_plots:
            parts.append(_img(plots.accuracy_gap_chart(t), f"accuracy and gap per method, {t.title}"))
            if plots.has_recovery(t):
                parts.append(_img(plots.recovery_chart(t), f"recovery audits per method, {t.title}"))
            samples = table_samples(records, t)
            if samples:
                parts.append(_img(plots.sensitivity_chart(t.title, samples),
                                  f"input sensitivity histograms, {t.title}"))
                parts.append(_img(plots.mia_score_chart(t.title, samples),
                                  f"membership-inference score distributions, {t.title}"))
            for label, runs in mumis_runs(out, records, t).items():
                parts.append(f"<h3>MU-Mis dynamics: {html.escape(label)}</h3>")
                parts.append(_img(plots.dynamics_chart(f"{t.title}, {label}", runs),
                                  f"MU-Mis dynamics, {label}, {t.title}"))
    if sequences:
        from .sequence import sequence_html

        parts.append(sequence_html(sequences, precision, plots=have_plots))
    parts += [f'<p class="note">{html.escape(notes(tables))}</p>', "</body></html>"]
    return "\n".join(parts) + "\n"


__all__ = ["how_to_read", "mumis_runs", "render_html", "table_html", "table_samples"]

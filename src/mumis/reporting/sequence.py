"""The report of a bench's sequential scenarios (`mumis.bench.sequence`): per sequence, one table
of method x request and one curve per main metric over the request index.

Read only from the records' `sequence` blocks and evaluations (mean over seeds, as the other
tables). Columns: the request's spec, its new and overlapping samples, everything forgotten so
far; the forget accuracy of the latest request (its forgotten classes' test accuracy for a
class-wise request, else its forget-set accuracy), the remaining accuracy (the kept classes'
test accuracy, else the retain accuracy), the test accuracy, the mean accuracy on the earlier
requests' samples (what came back of them: `earlier` in the records), KL to retrain (where the
`divergence` group ran), gap (paper) and the time. The retrain rows are the yardstick: the
model retrained without every request so far.
"""

from __future__ import annotations

import html
import math
import statistics
from dataclasses import dataclass, field
from typing import Any

from ..bench.config import REFERENCE_LABEL
from .tables import Stat, _md_line, _order, record_value

#: (key, header) of a sequence table's metric columns; "latest_forget_acc", "remaining_acc",
#: "earlier_acc" and "first_acc" are derived per record (`seq_value`).
SEQ_COLUMNS = (("latest_forget_acc", "forget acc (this request)"), ("remaining_acc", "remaining acc"),
               ("test_acc", "test acc"), ("earlier_acc", "earlier requests' acc"),
               ("kl_to_retrain", "KL to retrain"), ("gap_paper", "gap (paper)"), ("time_s", "time (s)"))
#: The sequence tables' CSV, beside tables.csv under DIR/report/.
SEQUENCES_CSV = "sequences.csv"
#: The curves: one panel each, x = the request index.
CURVES = (("remaining_acc", "remaining accuracy (%)"), ("latest_forget_acc", "forget accuracy, this request (%)"),
          ("first_acc", "accuracy on request 1's samples (%)"), ("earlier_acc", "earlier requests' accuracy (%)"),
          ("kl_to_retrain", "KL to retrain (nats)"), ("gap_paper", "gap (paper) to retrain"))


def _classwise(rec: dict[str, Any]) -> bool:
    return "test_remaining_acc" in ((rec.get("evaluation") or {}).get("model") or {})


def seq_value(rec: dict[str, Any], key: str) -> Any:
    """A sequence column's value in one record (the derived keys, else `record_value`)."""
    cw = _classwise(rec)
    earlier = (rec.get("sequence") or {}).get("earlier") or []
    if key == "latest_forget_acc":
        return record_value(rec, "test_forgotten_acc" if cw else "forget_acc")
    if key == "remaining_acc":
        return record_value(rec, "test_remaining_acc" if cw else "retain_acc")
    if key == "earlier_acc":
        accs = [e["acc"] for e in earlier if isinstance(e.get("acc"), (int, float)) and math.isfinite(e["acc"])]
        return statistics.fmean(accs) if accs else None
    if key == "first_acc":  # request 1's samples: its own forget accuracy at request 1, then `earlier`
        return seq_value(rec, "latest_forget_acc") if not earlier else earlier[0].get("acc")
    return record_value(rec, key)


@dataclass
class SeqRow:
    method: str
    request: int
    spec: str
    seeds: list[int]
    counts: dict[str, Stat]  # num_new, overlap, num_forgotten
    values: dict[str, Stat]
    reference: bool = False


@dataclass
class SeqTable:
    dataset: str
    model: str
    name: str
    specs: list[str]
    rows: list[SeqRow] = field(default_factory=list)

    @property
    def title(self) -> str:
        return f"{self.dataset} / {self.model} / sequence {self.name}: {' -> '.join(self.specs)}"

    def methods(self) -> list[str]:
        return list(dict.fromkeys(r.method for r in self.rows))


def build_sequence_tables(records: list[dict[str, Any]], bench: dict[str, Any] | None = None) -> list[SeqTable]:
    """One table per (dataset, model, sequence) of the records that carry a `sequence` block;
    rows: the retrain first, then the methods in the config's order, each over its requests."""
    grid = (bench or {}).get("config") or {}
    labels = [m["label"] for m in grid.get("methods", []) if isinstance(m, dict) and "label" in m]
    order = [q.get("name") for q in grid.get("sequences", []) if isinstance(q, dict)]
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in records:
        if isinstance(r.get("sequence"), dict):
            groups.setdefault((r["dataset"], r["model"], r["sequence"]["name"]), []).append(r)
    keys = sorted(groups, key=lambda k: (k[0], k[1], order.index(k[2]) if k[2] in order else len(order), k[2]))
    tables = []
    for d, m, name in keys:
        recs = groups[(d, m, name)]
        specs: dict[int, str] = {int(r["sequence"]["request"]): r["sequence"]["spec"] for r in recs}
        t = SeqTable(d, m, name, [specs[k] for k in sorted(specs)])
        by: dict[tuple[str, int], list[dict[str, Any]]] = {}
        for r in recs:
            by.setdefault((r["method"], int(r["sequence"]["request"])), []).append(r)
        names = {n for n, _ in by}
        fixed = [REFERENCE_LABEL] if REFERENCE_LABEL in names else []
        for n in fixed + _order([x for x in names if x not in fixed], labels):
            for k in sorted(k for x, k in by if x == n):
                rs = sorted(by[(n, k)], key=lambda r: r.get("seed", 0))
                t.rows.append(SeqRow(
                    method=n, request=k, spec=specs[k], seeds=[int(r.get("seed", 0)) for r in rs],
                    counts={c: Stat.of([r["sequence"].get(c) for r in rs]) for c in ("num_new", "overlap", "num_forgotten")},
                    values={c: Stat.of([seq_value(r, c) for r in rs]) for c, _ in (*SEQ_COLUMNS, *CURVES)},
                    reference=rs[0].get("role") == "reference"))
        tables.append(t)
    return tables


def _header() -> list[str]:
    return ["method", "request", "spec", "new", "overlap", "forgotten so far", *(h for _, h in SEQ_COLUMNS)]


def _cells(r: SeqRow, precision: int) -> list[str]:
    counts = [r.counts[c].text(0) for c in ("num_new", "overlap", "num_forgotten")]
    return [r.method, str(r.request), r.spec, *counts, *(r.values[k].text(precision) for k, _ in SEQ_COLUMNS)]


SEQ_NOTES = ("Sequential scenarios: request k continues from request k-1's unlearned model and is compared "
             "with the model retrained without requests 1..k (the retrain rows). forget acc (this request): "
             "the test accuracy of the request's forgotten classes (class-wise) or its forget-set accuracy "
             "(random, indices); remaining acc: the kept classes' test accuracy, or the retain accuracy; "
             "earlier requests' acc: the mean accuracy on the earlier requests' samples (their forgotten "
             "classes' test samples, or their forget samples): what came back of them, the target being "
             "the retrain row's; new / overlap: the request's samples not / already forgotten by earlier "
             "requests.")


def sequence_markdown(tables: list[SeqTable], precision: int = 2) -> str:
    """The sequence tables as Markdown (empty string without sequential records)."""
    if not tables:
        return ""
    out = []
    for t in tables:
        n = max((len(r.seeds) for r in t.rows), default=0)
        head = _header()
        out += [f"### {t.title} ({f'mean ± std over {n} seeds' if n > 1 else '1 seed'})", "", _md_line(head),
                "|" + "|".join("---" for _ in head) + "|"]
        out += [_md_line(_cells(r, precision)) for r in t.rows]
        out.append("")
    out.append(SEQ_NOTES)
    return "\n".join(out) + "\n"


def sequence_csv(tables: list[SeqTable]) -> str:
    """Long CSV: one row per (dataset, model, sequence, method, request), `KEY_mean` / `KEY_std`."""
    import csv
    import io

    keys = ["num_new", "overlap", "num_forgotten", *(k for k, _ in SEQ_COLUMNS), "first_acc"]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["dataset", "model", "sequence", "method", "request", "spec", "n_seeds", "seeds"]
               + [f"{k}_{s}" for k in keys for s in ("mean", "std")])
    for t in tables:
        for r in t.rows:
            cells: list[Any] = [t.dataset, t.model, t.name, r.method, r.request, r.spec, len(r.seeds),
                                " ".join(map(str, r.seeds))]
            for k in keys:
                st = r.counts.get(k) or r.values[k]
                cells += ["" if st.mean is None else repr(st.mean), "" if st.std is None else repr(st.std)]
            w.writerow(cells)
    return buf.getvalue()


def sequence_html(tables: list[SeqTable], precision: int = 2, *, plots: bool = True) -> str:
    """The sequence tables and their curves as HTML (empty string without sequential records)."""
    from .html import _img

    parts = []
    for t in tables:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in _header())
        rows = [f'<tr{" class=reference" if r.reference else ""}>'
                + "".join(f"<td>{html.escape(c)}</td>" for c in _cells(r, precision)) + "</tr>" for r in t.rows]
        parts += [f"<h2>{html.escape(t.title)}</h2>",
                  f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"]
        if plots:
            parts.append(_img(sequence_chart(t), f"metrics over the requests, {t.title}"))
    if parts:
        parts.append(f'<p class="note">{html.escape(SEQ_NOTES)}</p>')
    return "\n".join(parts)


def sequence_chart(table: SeqTable) -> bytes:
    """One panel per metric of `CURVES` over the request index, a line per method (the retrain
    black and dashed: the yardstick); mean over seeds with std error bars. PNG bytes."""
    from .plots import _grid, _png

    fig, axes = _grid(len(CURVES), 3, 4.2, 3.0)
    xs = list(range(1, len(table.specs) + 1))
    for ax, (key, label) in zip(axes, CURVES, strict=True):
        for i, name in enumerate(table.methods()):
            rows = {r.request: r for r in table.rows if r.method == name}
            pts = [(k, rows[k].values[key]) for k in xs if k in rows and rows[k].values[key].mean is not None]
            if not pts:
                continue
            ref = rows[pts[0][0]].reference
            errs = [s.std or 0.0 for _, s in pts]
            ax.errorbar([k for k, _ in pts], [s.mean for _, s in pts], yerr=errs if any(errs) else None,
                        marker="o", markersize=3, linewidth=1.6 if ref else 1, capsize=2, label=name,
                        color="black" if ref else f"C{i % 10}", linestyle="--" if ref else "-")
        ax.set_xticks(xs, [f"r{k}\n{s}" for k, s in zip(xs, table.specs, strict=True)], fontsize=7)
        ax.set_title(label, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(table.title, fontsize=10)
    return _png(fig)


__all__ = ["CURVES", "SEQUENCES_CSV", "SEQ_COLUMNS", "SEQ_NOTES", "SeqRow", "SeqTable", "build_sequence_tables", "seq_value",
           "sequence_chart", "sequence_csv", "sequence_html", "sequence_markdown"]

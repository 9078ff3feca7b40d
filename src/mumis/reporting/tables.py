"""Benchmark tables as in the MU-Mis paper: one per (dataset, model, scenario), mean +- std over seeds.

Rows are methods, the retrained oracle first and the original model (before unlearning) second; columns are the forget, remaining and test
accuracy (class-wise and sub-class: `test_forgotten_acc`, `test_remaining_acc`, `test_acc`;
random and index forgetting: `forget_acc`, `retain_acc`, `test_acc`), `mia_efficacy`, for the
scenarios that are not whole classes the loss rank test (`rank_auc`, `rank_p`,
`rank_detectable`) where the records have it, the two Avg. Gaps, where the records have them the recovery audits (the forget accuracy after
BatchNorm re-estimation and after the relearning attack, and `gap_recovery`), and the
unlearning time (training time for the oracle). Everything is read from the bench records
(`mumis.bench.read_records`); nothing is recomputed.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..bench.config import FLOOR_ROLE, ORIGINAL_LABEL, REFERENCE_LABEL

#: (key, header) of the accuracy columns: forget, remaining, test.
CLASSWISE_COLUMNS = (("test_forgotten_acc", "forget acc"), ("test_remaining_acc", "remaining acc"),
                     ("test_acc", "test acc"))
RANDOM_COLUMNS = (("forget_acc", "forget acc"), ("retain_acc", "remaining acc"), ("test_acc", "test acc"))
#: Columns every table has after the accuracies.
COMMON_COLUMNS = (("mia_efficacy", "MIA-efficacy"), ("gap_paper", "gap (paper)"),
                  ("gap_salun", "gap (SalUn)"), ("time_s", "time (s)"))
#: The loss rank test's columns (`loss_rank` group), after MIA-efficacy, in the tables of the
#: scenarios that are not whole classes (random, indices, subclass) whose records carry them.
RANK_COLUMNS = (("rank_auc", "loss rank AUC"), ("rank_p", "rank p"),
                ("rank_detectable", "rank detectable"))
#: Columns printed with 3 significant digits (p-values) instead of `precision` decimals.
SIGNIFICANT_COLUMNS = ("rank_p",)
#: Recovery audit columns (only in tables whose records carry them): class-wise / random.
RECOVERY_CLASSWISE_COLUMNS = (("bn_reestimated_test_forgotten_acc", "forget acc, BN re-est."),
                              ("relearn_test_forgotten_acc", "forget acc, relearned"),
                              ("probe_forget_acc", "forget, feature probe"),
                              ("gap_recovery", "gap (recovery)"))
RECOVERY_RANDOM_COLUMNS = (("bn_reestimated_forget_acc", "forget acc, BN re-est."),
                           ("relearn_forget_acc", "forget acc, relearned"),
                           ("probe_forget_acc", "forget, feature probe"),
                           ("gap_recovery", "gap (recovery)"))
_TOP_LEVEL = ("gap_paper", "gap_salun", "gap_recovery", "time_s")
_TEX_PM = r" \pm "


@dataclass
class Stat:
    """Mean and sample standard deviation of one column over seeds (None when no value)."""

    mean: float | None
    std: float | None
    n: int

    @classmethod
    def of(cls, values: Sequence[Any]) -> Stat:
        xs = [float(v) for v in values
              if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)]
        if not xs:
            return cls(None, None, 0)
        return cls(statistics.fmean(xs), statistics.stdev(xs) if len(xs) > 1 else None, len(xs))

    def text(self, precision: int = 2, pm: str = " ± ", significant: bool = False) -> str:
        """`mean ± std` with `precision` decimals, or 3 significant digits (p-values)."""
        if self.mean is None:
            return "n/a"
        spec = "#.3g" if significant else f".{precision}f"
        s = f"{self.mean:{spec}}"
        return s + (f"{pm}{self.std:{spec}}" if self.std is not None else "")


#: Marks a cell whose distance to retrain is within the retraining floor in every seed.
WITHIN_MARK = "*"


@dataclass
class Row:
    method: str  # the label
    method_name: str | None  # the registered method (None for the oracle)
    seeds: list[int]
    values: dict[str, Stat]
    reference: bool = False
    context: bool = False  # the oracle or the original: a yardstick, not an unlearning method
    floor: bool = False  # a further retrained model (`retrain_seeds`): the floor row
    #: column -> within the retraining floor in every seed (True), in not every one (False);
    #: absent: no floor in the records
    within: dict[str, bool] = field(default_factory=dict)

    def cell(self, key: str, precision: int = 2, pm: str = " ± ", mark: str = " " + WITHIN_MARK) -> str:
        """A column's text, marked when within the floor (never on the retrained models' rows)."""
        text = self.values[key].text(precision, pm, significant=key in SIGNIFICANT_COLUMNS)
        return text + mark if self.within.get(key) and not (self.reference or self.floor) else text


@dataclass
class Table:
    dataset: str
    model: str
    scenario: str
    classwise: bool
    columns: list[tuple[str, str]]
    rows: list[Row] = field(default_factory=list)
    #: column -> the retraining floor (largest retrain-vs-retrain distance, mean over seeds);
    #: empty without `retrain_seeds`
    floor: dict[str, Stat] = field(default_factory=dict)

    @property
    def title(self) -> str:
        return f"{self.dataset} / {self.model} / {self.scenario}"


def record_value(rec: dict[str, Any], key: str) -> Any:
    """A column's value in one record: a metric of the evaluated model, a gap or time_s."""
    if key in _TOP_LEVEL:
        return rec.get(key)
    return ((rec.get("evaluation") or {}).get("model") or {}).get(key)


def _floor_metrics(rec: dict[str, Any]) -> dict[str, Any]:
    return ((rec.get("evaluation") or {}).get("floor") or {}).get("metrics") or {}


def _within(recs: list[dict[str, Any]], key: str) -> bool | None:
    """True when every record has the column within its floor, False when one has not, None:
    no floor flag for it."""
    flags = [_floor_metrics(r).get(key, {}).get("within") for r in recs]
    if not flags or any(f is None for f in flags):
        return None
    return all(flags)


def _table_floor(recs: list[dict[str, Any]], cols: list[tuple[str, str]]) -> dict[str, Stat]:
    """Per column, the floor (its largest retrain-vs-retrain distance) averaged over seeds; the
    floor depends only on the retrained models, so any record of a seed gives it."""
    per_seed: dict[int, dict[str, Any]] = {}
    for r in recs:
        fm = _floor_metrics(r)
        if fm:
            per_seed.setdefault(int(r.get("seed", 0)), fm)
    if not per_seed:
        return {}
    return {k: Stat.of([fm.get(k, {}).get("max") for fm in per_seed.values()]) for k, _ in cols
            if any(k in fm for fm in per_seed.values())}


def _order(values: list[str], preferred: Sequence[str] | None) -> list[str]:
    pref = [v for v in (preferred or []) if v in values]
    return pref + sorted(v for v in values if v not in pref)


def build_tables(records: list[dict[str, Any]], bench: dict[str, Any] | None = None) -> list[Table]:
    """Group records into tables (dataset x model x scenario) with one row per method.

    Args:
        records: bench records (`mumis.bench.read_records`).
        bench: the bench directory's `bench.json` (its grid gives the order of tables and rows).
    Returns:
        Tables in grid order; rows: the oracle first, then the methods in the config's order.
    """
    grid = (bench or {}).get("config") or {}
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault((r["dataset"], r["model"], r["scenario"]), []).append(r)
    ds = _order(sorted({k[0] for k in groups}), grid.get("datasets"))
    ms = _order(sorted({k[1] for k in groups}), grid.get("models"))
    ss = _order(sorted({k[2] for k in groups}), grid.get("scenarios"))
    labels = [m["label"] for m in grid.get("methods", []) if isinstance(m, dict) and "label" in m]
    tables = []
    for d in ds:
        for m in ms:
            for s in ss:
                recs = groups.get((d, m, s))
                if not recs:
                    continue
                classwise = any("test_remaining_acc" in ((r.get("evaluation") or {}).get("model") or {})
                                for r in recs)
                cols = list(CLASSWISE_COLUMNS if classwise else RANDOM_COLUMNS) + list(COMMON_COLUMNS)
                if _kind(s) != "class" and _carry(recs, RANK_COLUMNS[0][0]):
                    at = [k for k, _ in cols].index("mia_efficacy") + 1
                    cols[at:at] = RANK_COLUMNS
                audit = RECOVERY_CLASSWISE_COLUMNS if classwise else RECOVERY_RANDOM_COLUMNS
                if any(audit[1][0] in ((r.get("evaluation") or {}).get("model") or {}) for r in recs):
                    # before the time column; the probe only where records carry it (older benches do not)
                    cols[-1:-1] = [c for c in audit if c[0] != "probe_forget_acc"
                                   or any(c[0] in ((r.get("evaluation") or {}).get("model") or {}) for r in recs)]
                table = Table(dataset=d, model=m, scenario=s, classwise=classwise, columns=cols,
                              floor=_table_floor(recs, cols))
                by_method: dict[str, list[dict[str, Any]]] = {}
                for r in recs:
                    by_method.setdefault(r["method"], []).append(r)
                # The oracle, the further retrained models (the floor rows), then the original
                # (no unlearning) for context, then the methods.
                floors = sorted({r["method"] for r in recs if r.get("role") == FLOOR_ROLE})
                fixed = [n for n in (REFERENCE_LABEL, *floors, ORIGINAL_LABEL) if n in by_method]
                order = fixed + _order([n for n in by_method if n not in fixed], labels)
                for name in order:
                    rs = sorted(by_method[name], key=lambda r: r.get("seed", 0))
                    table.rows.append(Row(
                        method=name, method_name=rs[0].get("method_name"),
                        seeds=[int(r.get("seed", 0)) for r in rs],
                        values={k: Stat.of([record_value(r, k) for r in rs]) for k, _ in cols},
                        reference=rs[0].get("role") == "reference",
                        context=rs[0].get("role") in ("reference", "original", FLOOR_ROLE),
                        floor=rs[0].get("role") == FLOOR_ROLE,
                        within={k: w for k, _ in cols if (w := _within(rs, k)) is not None},
                    ))
                tables.append(table)
    return tables


def _kind(scenario: str) -> str:
    return scenario.split(":", 1)[0].strip()


def _carry(recs: list[dict[str, Any]], key: str) -> bool:
    """True when any record's evaluated model has `key` (records of older benches may not)."""
    return any(key in ((r.get("evaluation") or {}).get("model") or {}) for r in recs)


def _header(table: Table) -> list[str]:
    return ["method"] + [f"{label} ({key})" for key, label in table.columns]


def _seeds_note(table: Table) -> str:
    n = max((len(r.seeds) for r in table.rows), default=0)
    return f"mean ± std over {n} seeds" if n > 1 else "1 seed"


def _md_line(cells: Sequence[str]) -> str:
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"


def to_markdown(tables: list[Table], *, title: str = "", precision: int = 2) -> str:
    """All tables as Markdown, each under a `###` heading."""
    out = [f"# {title}", ""] if title else []
    for t in tables:
        head = _header(t)
        out += [f"### {t.title} ({_seeds_note(t)})", "", _md_line(head),
                "|" + "|".join("---" for _ in head) + "|"]
        out += [_md_line([r.method] + [r.cell(k, precision) for k, _ in t.columns]) for r in t.rows]
        out.append("")
    out.append(notes(tables))
    return "\n".join(out) + "\n"


NOTES = ("Accuracies in %. Class-wise / sub-class tables: forget acc = test_forgotten_acc, remaining "
         "acc = test_remaining_acc; random tables: forget acc = forget_acc, remaining acc = retain_acc. "
         "MIA-efficacy: SalUn's, higher = more forgotten (target: the retrain row). gap (paper) / gap "
         "(SalUn): mean |difference to retrain| (MU-Mis paper / SalUn conventions). Recovery "
         "audits (where shown): forget acc after re-estimating BatchNorm statistics on unlabelled "
         "retain images (BN re-est.; n/a without BatchNorm) and after a short fine-tuning attack on "
         "a retain slice (relearned); the target is the retrain row, a higher value means the "
         "forgotten data came back; gap (recovery): mean |difference to retrain| of the two. "
         "original: the "
         "model before unlearning (what doing nothing scores). time (s): unlearning time; for "
         "retrain and original their training time.")


FLOOR_NOTES = ("retrain (seed X): a model retrained with another seed, compared with the retrain "
               "row like a method; its distances are the retraining floor. " + WITHIN_MARK + ": the "
               "row's distance to retrain in that column (|difference| for accuracies and "
               "MIA-efficacy, the gap itself for gaps) is within the floor, i.e. no larger than "
               "the largest retrain-vs-retrain distance, in every seed; an unmarked number is "
               "further from retrain than another retrained model is.")


RANK_NOTES = ("loss rank AUC: the Mann-Whitney U of the forget samples' losses against unseen "
              "samples of their classes (the bench's holdout when it has one, else the test split), as "
              "an AUC in %: 50 = the two loss distributions alike, above 50 = the forget samples still "
              "fit better (target: the retrain row; it is near 50 when the forget set is drawn like "
              "the unseen samples). rank p: its two-sided p-value (mean over seeds; not a distance: "
              "never within the floor). rank detectable: the smallest |AUC - 50| the test detects with "
              "80 % power at alpha 0.05 for these sizes; a p above 0.05 says the shift is below that, "
              "not that there is none.")


def has_rank(tables: list[Table]) -> bool:
    """True when any table shows the loss rank test's columns."""
    return any(k == RANK_COLUMNS[0][0] for t in tables for k, _ in t.columns)


def has_floor(tables: list[Table]) -> bool:
    """True when any table's records carry the retraining floor (`retrain_seeds`)."""
    return any(t.floor for t in tables)


def notes(tables: list[Table]) -> str:
    """The notes under the tables (with the floor's when the records have one)."""
    return (NOTES + (" " + RANK_NOTES if has_rank(tables) else "")
            + (" " + FLOOR_NOTES if has_floor(tables) else ""))


def to_csv(tables: list[Table]) -> str:
    """Long CSV: one row per (dataset, model, scenario, method), `KEY_mean` and `KEY_std` columns.

    Column sets differ between class-wise and random tables, so every metric key of either
    appears (empty where a table does not use it).
    """
    keys: list[str] = []
    for t in tables:
        keys += [k for k, _ in t.columns if k not in keys]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    floor = has_floor(tables)
    stats = ("mean", "std", "within") if floor else ("mean", "std")
    w.writerow(["dataset", "model", "scenario", "method", "method_name", "n_seeds", "seeds"]
               + [f"{k}_{s}" for k in keys for s in stats])
    for t in tables:
        for r in t.rows:
            cells: list[Any] = [t.dataset, t.model, t.scenario, r.method, r.method_name or "",
                                len(r.seeds), " ".join(map(str, r.seeds))]
            for k in keys:
                st = r.values.get(k)
                cells += ["" if st is None or st.mean is None else repr(st.mean),
                          "" if st is None or st.std is None else repr(st.std)]
                if floor:
                    wf = r.within.get(k)
                    cells.append("" if wf is None or r.reference or r.floor else str(wf).lower())
            w.writerow(cells)
    return buf.getvalue()


def _tex_escape(s: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("$", r"\$"), ("#", r"\#"),
                 ("_", r"\_"), ("{", r"\{"), ("}", r"\}"), ("~", r"\textasciitilde{}"),
                 ("^", r"\textasciicircum{}")):
        s = s.replace(a, b)
    return s.replace(r"\textbackslash\{\}", r"\textbackslash{}")


def to_latex(tables: list[Table], *, precision: int = 2) -> str:
    """One booktabs `table` environment per table (needs \\usepackage{booktabs})."""
    out = ["% generated by `mumis report`; needs \\usepackage{booktabs}"]
    for t in tables:
        out += [r"\begin{table}[t]", r"\centering",
                rf"\caption{{{_tex_escape(t.title)} ({_tex_escape(_seeds_note(t))})}}",
                r"\begin{tabular}{l" + "r" * len(t.columns) + "}", r"\toprule",
                " & ".join(["Method"] + [_tex_escape(label) for _, label in t.columns]) + r" \\",
                r"\midrule"]
        for i, r in enumerate(t.rows):
            cells = [_tex_escape(r.method)]
            for k, _ in t.columns:
                st = r.values[k]
                cells.append("n/a" if st.mean is None
                             else "$" + r.cell(k, precision, pm=_TEX_PM, mark="^{*}") + "$")
            out.append(" & ".join(cells) + r" \\")
            if r.context and i + 1 < len(t.rows) and not t.rows[i + 1].context:
                out.append(r"\midrule")
        out += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(out)


__all__ = ["CLASSWISE_COLUMNS", "COMMON_COLUMNS", "FLOOR_NOTES", "NOTES", "RANDOM_COLUMNS", "RANK_COLUMNS",
           "RANK_NOTES", "RECOVERY_CLASSWISE_COLUMNS", "RECOVERY_RANDOM_COLUMNS", "Row", "Stat", "Table",
           "WITHIN_MARK", "build_tables", "has_floor", "has_rank", "notes", "record_value", "to_csv",
           "to_latex", "to_markdown"]

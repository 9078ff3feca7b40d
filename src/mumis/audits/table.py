"""The plain-text table `mumis audit` prints: the epsilon score and the LiRA numbers side by side."""

from __future__ import annotations

import math
from typing import Any


def _fmt(v: Any, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{v:.{digits}f}"


def format_table(result: dict[str, Any]) -> str:
    """A plain-text table of the rows: the epsilon score and the LiRA numbers side by side."""
    head, lines, notes = table_cells(result)
    widths = [max(len(h), *(len(c[i]) for c in lines)) for i, h in enumerate(head)]
    fmt_line = lambda cs: "  ".join(c.ljust(w) for c, w in zip(cs, widths, strict=True)).rstrip()  # noqa: E731
    out = [fmt_line(head), fmt_line(["-" * w for w in widths]), *(fmt_line(c) for c in lines)]
    return "\n".join(out + [""] + notes)


def table_cells(result: dict[str, Any]) -> tuple[list[str], list[list[str]], list[str]]:
    """The table's header, its rows of cells and its notes (the text and the HTML page share them)."""
    eps, lira = result.get("epsilon", {}), result.get("lira", {})
    acc = result["accuracy"]
    names = list(acc)  # "reference_retrain" first: the models every row is compared with
    head = ["model", "forget", "retain", "test"]
    if eps:
        head += ["F", "score", "eps_med", "capped"]
    if lira:
        head += ["tpr@1%", "tpr@0.1%", "auc"]
    lines = []
    for name in names:
        a = acc[name]
        shown = "reference" if name == "reference_retrain" else name
        cells = [shown, _fmt(a["forget_acc"]["mean"]), _fmt(a["retain_acc"]["mean"]), _fmt(a["test_acc"]["mean"])]
        if name == "reference_retrain":
            lines.append(cells + ["-"] * (len(head) - len(cells)))
            continue
        if eps:
            e = eps.get(name, {})
            cells += ([_fmt(e["forget_quality"], 3), _fmt(e["final_score"], 3), _fmt(e["epsilon_median"]),
                       _fmt(e["epsilon_capped_frac"])] if "forget_quality" in e else ["n/a"] * 4)
        if lira:
            r = lira.get(name, {})
            mark = "" if r.get("side", "above") == "above" else " (-)"
            cells += ([_fmt(r["tpr_at_1pct_fpr_best"]) + mark, _fmt(r["tpr_at_0_1pct_fpr_best"]) + mark,
                       _fmt(r["auc"])] if "auc" in r else ["n/a"] * 3)
        lines.append(cells)
    n = result["settings"]["models"]
    notes = [f"{n} models per row against the {n} retrained models of the reference row; accuracies in % (means)."]
    if eps:
        notes.append("F: the NeurIPS 2023 challenge's forgetting quality (1 = indistinguishable; with few models "
                     "even retraining scores far below 1), score = F x retain ratio x test ratio; eps_med: "
                     "median per-example epsilon; capped: share of examples at the cap (told apart).")
    if lira:
        k = result["settings"]["shadows"]
        notes.append(f"tpr@: LiRA ({k} shadows) telling this row's forget-set outputs from the retrained "
                     "models' (U-LiRA style); equal to the FPR = indistinguishable; auc 50 = chance; (-): told "
                     "apart on the other side (outputs further from trained-on than a retrained model's).")
    if "retrain" in names:
        notes.append("retrain: another N retrained models (other seeds), the floor to read every row against.")
    for name in names:
        why = (eps.get(name) or lira.get(name) or {}).get("skipped")
        if why:
            notes.append(f"{name}: n/a, {why}.")
    return head, lines, notes

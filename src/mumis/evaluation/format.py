"""Text renderings of evaluations: the report's Markdown table and the demo's comparison table."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from ..exceptions import ConfigError
from .gaps import gap_paper_keys, gap_recovery_keys, gap_salun_keys
from .keys import MEANING, METRIC_KEYS, NOT_DISTANCES

if TYPE_CHECKING:
    from .report import EvaluationReport

#: Keys printed with 4 decimals (small values in nats).
_FOUR_DECIMALS = ("kl_to_retrain", "js_to_retrain")
#: Keys printed with 3 significant digits (p-values: 0.0312, 1.00, 4.57e-12).
SIGNIFICANT = ("rank_p",)


def fmt_value(v: Any, key: str = "", precision: int = 2) -> str:
    """One cell: 'n/a' for None / NaN, divergences with 4 decimals, p-values with 3 significant
    digits, others with `precision`."""
    if v is None:
        return "n/a"
    if isinstance(v, float) and math.isnan(v):
        return "n/a"
    if isinstance(v, (int, float)):
        if key in SIGNIFICANT:
            return f"{v:#.3g}"
        return f"{v:.4f}" if key in _FOUR_DECIMALS else f"{v:.{precision}f}"
    return str(v)


def markdown_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    out = [line(head), "|" + "|".join("---" for _ in head) + "|"]
    return "\n".join(out + [line(r) for r in rows])


def plain_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(head, *rows, strict=True)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*head), fmt.format(*("-" * w for w in widths)),
                      *(fmt.format(*r) for r in rows)]).rstrip()


def _sensitivity_markdown(sens: dict[str, Any], model_name: str, reference_name: str) -> str:
    first = next(iter(sens.values()))
    lines = [f"Input sensitivity (L2 norm of d logit / d input; up to {first['n_per_split']} "
             f"samples per split, seed {first['seed']}): median [q25, q75]", ""]
    rows = []

    def cell(q: dict[str, Any]) -> str:
        return "n/a" if q["median"] is None else f"{q['median']:.4g} [{q['q25']:.4g}, {q['q75']:.4g}]"

    for who, summ in sens.items():
        name = model_name if who == "model" else reference_name
        for split, s in summ.items():
            if isinstance(s, dict):
                rows.append([name, split, str(s["n"]), cell(s["target"]), cell(s["irrelevant"])])
    head = ["model", "split", "n", "target class", "irrelevant classes (mean)"]
    lines.append(markdown_table(head, rows))
    return "\n".join(lines)


def _metric_rows(rep: EvaluationReport) -> list[list[str]]:
    """One row per metric key the model has: key, value(s), meaning; then the gaps. With a
    floor: each further reference's value, then the floor and "within the floor" yes/no."""
    from .floor import floor_text, within_text

    m, ref = rep.model_metrics, rep.reference_metrics
    floor = rep.floor
    others = [r["metrics"] for r in floor["references"]] if floor else []

    def floor_cells(k: str) -> list[str]:
        if not floor:
            return []
        e = floor["metrics"].get(k)
        return ["", ""] if e is None else [floor_text(e, lambda v: fmt_value(v, k)), within_text(e)]

    rows = []
    for k in METRIC_KEYS:
        if k not in m:
            continue
        row = [k, fmt_value(m[k], k)]
        if ref is not None:
            d = abs(m[k] - ref[k]) if k in ref else None
            # a further retrain's divergence to itself is not measured; its distance is the floor
            row += [fmt_value(ref.get(k), k), *(fmt_value(o.get(k), k) for o in others),
                    "" if k in NOT_DISTANCES else fmt_value(d, k)]
        rows.append(row + floor_cells(k) + [MEANING[k]])
    if ref is not None:
        blank = [""] * (2 + len(others))
        keys = ", ".join(gap_paper_keys(rep.classwise))
        rows.append(["gap_paper", fmt_value(rep.gap_paper), *blank, *floor_cells("gap_paper"),
                     MEANING["gap_paper"].format(keys=keys)])
        keys = ", ".join(gap_salun_keys(rep.classwise))
        rows.append(["gap_salun", fmt_value(rep.gap_salun), *blank, *floor_cells("gap_salun"),
                     MEANING["gap_salun"].format(keys=keys)])
        if rep.recovery is not None:
            keys = ", ".join(gap_recovery_keys(rep.classwise))
            rows.append(["gap_recovery", fmt_value(rep.gap_recovery), *blank, *floor_cells("gap_recovery"),
                         MEANING["gap_recovery"].format(keys=keys)])
    return rows


def report_markdown(rep: EvaluationReport, *, model_name: str = "model",
                    reference_name: str = "retrain") -> str:
    """`EvaluationReport.to_markdown`: the metric table, then notes and the sensitivity table."""
    sizes = ", ".join(f"{k} {v}" for k, v in rep.sizes.items())
    lines = [f"Evaluation: {rep.kind} forgetting ({sizes}); seed {rep.seed}", ""]
    head = ["metric", model_name]
    if rep.reference_metrics:
        others = [r["name"] for r in rep.floor["references"]] if rep.floor else []
        head += [reference_name, *others, "abs diff"]
        if rep.floor:
            head += [f"floor ({others[0]} vs {reference_name})" if len(others) == 1
                     else f"floor (mean ± sd of {len(others)} vs {reference_name})", "within floor"]
    head += ["meaning"]
    lines.append(markdown_table(head, _metric_rows(rep)))
    if rep.floor:
        lines += ["", f"Floor: the distance of another retrained model to {reference_name}, "
                  f"key by key; {rep.floor['rule']}."]
    rank = rep.mia_details.get("model", {}).get("rank_auc")
    notes = [] if rank is None else [f"- rank_*: {rank['n_forget']} forget samples against "
                                     f"{rank['n_unseen']} unseen ones ({rank['unseen']}); {rank['test']}"]
    notes += [f"- {name} {k}: {d['note'] if 'note' in d else d['skipped']}"
             for name, dd in rep.mia_details.items() for k, d in dd.items()
             if "note" in d or "skipped" in d]
    if rep.recovery is not None:
        notes += [f"- recovery audits: {rep.recovery['summary']}"]
        notes += [f"- {who} recovery: {n}" for who in ("model", "reference")
                  for n in (rep.recovery.get(who) or {}).get("notes", [])]
    if notes:
        lines += ["", "Notes:", *notes]
    if rep.sensitivity:
        lines += ["", _sensitivity_markdown(rep.sensitivity, model_name, reference_name)]
    return "\n".join(lines)


def comparison_table(
    rows: Mapping[str, Mapping[str, Any] | EvaluationReport],
    keys: Sequence[str],
    *,
    fmt: Literal["md", "plain"] = "md",
    precision: int = 2,
) -> str:
    """One row per method, one column per metric key: the table `mumis demo` prints.

    Args:
        rows: name -> a report dict (`EvaluationReport.to_dict()`, whose `model` values and
            top-level gaps are read), a flat {key: value} dict, or an `EvaluationReport`.
        keys: the metric keys to show, in order (e.g. `("forget_acc", "test_acc", "gap_salun")`).
        fmt: 'md' for Markdown, 'plain' for aligned text.
        precision: decimals of every number (divergences get 4).
    Returns:
        The table as a string; a missing value shows as 'n/a'.
    """
    if fmt not in ("md", "plain"):
        raise ConfigError(f"fmt must be 'md' or 'plain', got {fmt!r}")
    body = []
    for name, r in rows.items():
        d = r if isinstance(r, Mapping) else r.to_dict()
        flat = dict(d["model"]) if isinstance(d.get("model"), Mapping) else dict(d)
        for g in ("gap_paper", "gap_salun", "gap_recovery"):
            if g in d and g not in flat:
                flat[g] = d[g]
        body.append([name] + [fmt_value(flat.get(k), k, precision) for k in keys])
    head = ["method", *keys]
    return markdown_table(head, body) if fmt == "md" else plain_table(head, body)

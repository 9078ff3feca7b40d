"""`audit.html`: one self-contained page of an audit (inline CSS, base64 PNGs, nothing external).

The printed table, the LiRA ROC curves of every row on one log-FPR plot, and a histogram of the
per-example epsilons per row. matplotlib is imported lazily and never through pyplot; without it
the page is written without figures and says so. Nothing run-specific (times, paths) goes in, so
identical audits give byte-identical pages.
"""

from __future__ import annotations

import base64
import html
import io
from typing import Any

from .epsilon import EPSILON_CAP
from .table import table_cells

PAGE_FILE = "audit.html"
_CSS = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
        "table{border-collapse:collapse;font-size:14px}td,th{border:1px solid #ccc;padding:3px 8px;"
        "text-align:right}td:first-child,th:first-child{text-align:left}th{background:#f3f3f3}"
        ".note{color:#555;font-size:13px}img{max-width:100%;display:block;margin:1em 0}")
HOW_TO_READ = (
    "How to read this: every row is a set of models (the method's unlearned models, the untouched "
    "originals, and, as the floor, another set of retrained models) compared with the reference "
    "row's retrained models. LiRA: a ROC curve on the chance diagonal (TPR = FPR) means the row's "
    "forget-set outputs cannot be told from a retrained model's; a curve far above it at low FPR "
    "(the left of the log axis) means some examples are still recognisably trained-on; one below "
    "it, that the outputs overshoot (further from trained-on than a retrained model's), which an "
    "attacker sees as well (the table's (-) mark). Read every "
    "row against the retrain row: with few models even retraining is not exactly on the diagonal. "
    "Epsilon: per-example epsilons near 0 are indistinguishable; a pile at the cap is told apart."
)


def plots_available() -> bool:
    """True when matplotlib can be imported (the page then carries its figures)."""
    from ..reporting.plots import available

    return available()


def _figure(width: float, height: float, ncols: int = 1) -> tuple[Any, Any]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(1, ncols, squeeze=False)[0]


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})  # no version string in the bytes
    return buf.getvalue()


def roc_figure(lira: dict[str, Any]) -> bytes | None:
    """Every row's ROC curve on one plot, log-scale FPR (1e-3..1), with the chance diagonal."""
    rows = {name: r for name, r in lira.items() if "roc" in r}
    if not rows:
        return None
    fig, (ax,) = _figure(6.0, 4.6)
    grid = [10 ** (-3 + 3 * i / 100) for i in range(101)]
    ax.plot(grid, grid, color="grey", linestyle="--", linewidth=1, label="chance (TPR = FPR)")
    for name, r in rows.items():
        # the step curve's corners; FPR 0 cannot sit on a log axis, so it is drawn at the axis edge
        fpr = [max(f, 1e-3) for f in r["roc"]["fpr"]]
        ax.step(fpr, r["roc"]["tpr"], where="post", linewidth=1.5, label=f"{name} (AUC {r['auc']:.1f})")
    ax.set_xscale("log")
    ax.set_xlim(1e-3, 1.0)
    ax.set_ylim(0.0, 1.02)
    ax.set_xlabel("false positive rate (retrained models flagged)")
    ax.set_ylabel("true positive rate (row's models flagged)")
    ax.set_title("LiRA ROC on the forget set, each row vs the reference retrained models", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="upper left")
    return _png(fig)


def epsilon_figure(eps: dict[str, Any]) -> bytes | None:
    """One histogram of per-example epsilons per row, on one shared scale."""
    rows = {name: r for name, r in eps.items() if r.get("per_example")}
    if not rows:
        return None
    top = max(max(r["per_example"]) for r in rows.values())
    hi = top if top > 0 else 1.0
    bins = [hi * i / 25 for i in range(26)]
    fig, axes = _figure(max(4.0, 3.2 * len(rows)), 3.0, len(rows))
    for ax, (name, r) in zip(axes, rows.items(), strict=True):
        ax.hist(r["per_example"], bins=bins, color="#4878a8")
        ax.set_title(f"{name} (median {r['epsilon_median']:.2f})", fontsize=9)
        ax.set_xlabel(f"per-example epsilon ({EPSILON_CAP:g} = the cap: told apart)", fontsize=8)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("forget examples", fontsize=8)
    return _png(fig)


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _table_html(result: dict[str, Any]) -> str:
    head, rows, notes = table_cells(result)
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    note = "".join(f'<p class="note">{html.escape(n)}</p>' for n in notes)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>{note}"


def render_audit_page(result: dict[str, Any], *, with_plots: bool | None = None) -> str:
    """The page of an audit result (as `run_audit` returns it); `with_plots` None: when matplotlib
    can be imported."""
    plots = plots_available() if with_plots is None else with_plots
    st = result["settings"]
    title = f"mumis audit: {result['dataset']}, forget {result['forget_spec']}, {', '.join(result['methods'])}"
    what = (f"{result['num_forget']} forget examples; {st['models']} models per row; model {result['model']}, "
            f"recipe {result['recipe']}; seed {result['seed']}.")
    parts = [f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
             f"<style>{_CSS}</style></head><body>", f"<h1>{html.escape(title)}</h1>",
             f'<p class="note">{html.escape(what)}</p>', f"<p>{html.escape(HOW_TO_READ)}</p>",
             _table_html(result)]
    if not plots:
        parts.append('<p class="note">No figures: matplotlib is not installed (pip install matplotlib).</p>')
    else:
        if "lira" in result and (png := roc_figure(result["lira"])) is not None:
            k = st.get("shadows")
            parts += [f"<h2>LiRA ROC curves ({k} shadows)</h2>", _img(png, "LiRA ROC curves, log-scale FPR")]
        if "epsilon" in result and (png := epsilon_figure(result["epsilon"])) is not None:
            parts += ["<h2>Per-example epsilons</h2>", _img(png, "histograms of per-example epsilons")]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"



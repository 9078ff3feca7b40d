"""Plots of a bench (PNG bytes). matplotlib is imported lazily, never through pyplot, so no
global backend or figure state is touched; `available()` says whether it can be imported.
"""

from __future__ import annotations

import importlib
import io
from typing import Any

from .tables import Table


def available() -> bool:
    """True when matplotlib can be imported."""
    try:
        importlib.import_module("matplotlib.figure")
        importlib.import_module("matplotlib.backends.backend_agg")
    except ImportError:
        return False
    return True


def _figure(width: float, height: float, ncols: int) -> tuple[Any, Any]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, axes


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def accuracy_gap_chart(table: Table) -> bytes:
    """Grouped bars per method: the three accuracy columns and the two gaps (side by side, or
    one above the other for more than 6 methods), mean with std error bars over seeds.

    Returns:
        PNG bytes.
    """
    import numpy as np

    acc = table.columns[:3]
    gaps = [(k, label) for k, label in table.columns if k in ("gap_paper", "gap_salun")]
    names = [r.method for r in table.rows]
    x = np.arange(len(names))
    if len(names) <= 6:
        fig, (ax1, ax2) = _figure(max(7.0, 1.3 * len(names) + 4), 3.4, 2)
    else:  # many methods: one panel above the other, so the page does not scale the chart down
        fig, (ax1, ax2) = _grid(2, 1, max(8.0, 0.6 * len(names) + 2), 3.0)
    for ax, cols, title in ((ax1, acc, "accuracy (%)"), (ax2, gaps, "gap to retrain")):
        w = 0.8 / max(len(cols), 1)
        for j, (k, label) in enumerate(cols):
            means = [r.values[k].mean if r.values[k].mean is not None else np.nan for r in table.rows]
            errs = [r.values[k].std or 0.0 for r in table.rows]
            ax.bar(x + (j - (len(cols) - 1) / 2) * w, means, w, yerr=errs if any(errs) else None,
                   label=label, capsize=2)
        _floor_bands(ax, table, cols, x, w, around_retrain=cols is acc)
        ax.set_xticks(x, names, rotation=30, ha="right", fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(table.title, fontsize=10)
    return _png(fig)


def _floor_bands(ax: Any, table: Table, cols: list[tuple[str, str]], x: Any, w: float, *,
                 around_retrain: bool) -> None:
    """The retraining floor over every bar: a shaded box from the retrain row's value - floor to
    + floor for values (accuracies), from 0 to the floor for distances (gaps); a bar whose top is
    inside its box is within the floor. Nothing without a floor in the records (`retrain_seeds`)."""
    from matplotlib.patches import Rectangle

    ref = next((r for r in table.rows if r.reference), None)
    first = True
    for j, (k, _) in enumerate(cols):
        f = table.floor.get(k)
        centre = ref.values[k].mean if around_retrain and ref is not None else 0.0
        if f is None or f.mean is None or centre is None:
            continue
        lo, hi = (centre - f.mean, centre + f.mean) if around_retrain else (0.0, f.mean)
        for xi in x:
            left = xi + (j - (len(cols) - 1) / 2) * w - w / 2
            ax.add_patch(Rectangle((left, lo), w, max(hi - lo, 1e-6), facecolor="0.3", alpha=0.3,
                                   edgecolor="black", linewidth=0.6, linestyle="--", zorder=3,
                                   label="retraining floor" if first else None))
            first = False


def has_recovery(table: Table) -> bool:
    """True when the table has the recovery audit columns (records made with them)."""
    return any(k == "gap_recovery" for k, _ in table.columns)


def recovery_chart(table: Table) -> bytes:
    """Forget accuracy per method as evaluated, after BatchNorm re-estimation and after the
    relearning attack (mean with std error bars over seeds); the retrained model's values are
    the yardstick (a bar above the retrain row's means the forgotten data came back).

    Returns:
        PNG bytes (a table without the audit columns gets an empty panel saying so).
    """
    import numpy as np

    audits = [(k, label) for k, label in table.columns if k.startswith(("bn_reestimated_", "relearn_"))]
    # A column no row measured (BatchNorm re-estimation on models without BatchNorm) is left out.
    shown = [(k, label) for k, label in audits if any(r.values[k].mean is not None for r in table.rows)]
    cols = [table.columns[0]] + shown
    names = [r.method for r in table.rows]
    x = np.arange(len(names))
    fig, (ax,) = _figure(max(7.0, 0.9 * len(names) + 3), 3.2, 1)
    w = 0.8 / len(cols)
    for j, (k, label) in enumerate(cols):
        means = [r.values[k].mean if r.values[k].mean is not None else np.nan for r in table.rows]
        errs = [r.values[k].std or 0.0 for r in table.rows]
        ax.bar(x + (j - (len(cols) - 1) / 2) * w, means, w, yerr=errs if any(errs) else None,
               label=label, capsize=2)
    ref = next((r for r in table.rows if r.reference), None)
    if ref is not None and ref.values[cols[-1][0]].mean is not None:
        ax.axhline(ref.values[cols[-1][0]].mean, color="C3", linestyle="--", linewidth=0.8,
                   label=f"{ref.method}, relearned")
    _floor_bands(ax, table, cols, x, w, around_retrain=True)
    if len(cols) == 1:
        ax.text(0.5, 0.5, "no recovery audit measured in these records", ha="center",
                va="center", transform=ax.transAxes)
    ax.set_xticks(x, names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("forget accuracy (%)", fontsize=8)
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    missing = "" if len(shown) == len(audits) else " (no BatchNorm: nothing to re-estimate)"
    fig.suptitle(f"{table.title}: does the forgotten data come back?{missing}", fontsize=10)
    return _png(fig)


def dynamics_chart(title: str, runs: list[dict[str, Any]]) -> bytes:
    """MU-Mis dynamics: the loss, forget accuracy, S_target and S_irrelevant over steps, per run
    (all read on the monitor subset).

    Args:
        title: the figure's title.
        runs: one dict per run: `label`, `history` (rows with step, loss, forget_acc, s_target,
            s_irrelevant) and `stop_step` (marked with a dashed line; None: not marked).
    Returns:
        PNG bytes.
    """
    panels = (("loss", "loss (monitor subset)"), ("forget_acc", "forget accuracy (%, monitor subset)"),
              ("s_target", "S_target"), ("s_irrelevant", "S_irrelevant"))
    fig, axes = _figure(13.0, 3.0, 4)
    for ax, (key, label) in zip(axes, panels, strict=True):
        for i, run in enumerate(runs):
            rows = [h for h in run["history"] if key in h and h.get(key) is not None and "step" in h]
            color = f"C{i % 10}"
            ax.plot([h["step"] for h in rows], [h[key] for h in rows], color=color, marker=".",
                    markersize=3, linewidth=1, label=run["label"])
            if run.get("stop_step") is not None:
                ax.axvline(run["stop_step"], color=color, linestyle="--", linewidth=0.8)
        ax.set_xlabel("step", fontsize=8)
        ax.set_title(label, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{title} (dashed: stopping step)", fontsize=10)
    return _png(fig)


def _grid(n: int, ncols: int, panel_w: float, panel_h: float) -> tuple[Any, list[Any]]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    nrows = max(1, -(-n // ncols))
    fig = Figure(figsize=(panel_w * ncols, panel_h * nrows + 0.5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = list(fig.subplots(nrows, ncols, squeeze=False).ravel())
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _log10(values: Any, floor: float) -> Any:
    """log10 of the finite values (records store inf as +-1e308 and NaN as null: left out)."""
    import numpy as np

    v = np.asarray([np.nan if x is None else x for x in values], dtype=float)
    v = v[np.isfinite(v) & (np.abs(v) < 1e308)]
    return np.log10(np.maximum(v, floor))


def _bins(arrays: list[Any], n: int = 40) -> Any:
    import numpy as np

    xs = np.concatenate([a for a in arrays if len(a)]) if any(len(a) for a in arrays) else np.zeros(1)
    lo, hi = float(xs.min()), float(xs.max())
    return np.linspace(lo, hi if hi > lo else lo + 1.0, n + 1)


def sensitivity_chart(title: str, samples: dict[str, dict[str, Any]],
                      before: str = "original", reference: str = "retrain") -> bytes:
    """Input sensitivity S_y(x) (log10) of the forget set and of trained vs unseen data.

    Args:
        title: the figure's title.
        samples: row label -> that row's `samples` (`EvaluationReport.samples()`, seeds pooled);
            the rows `before` (the original model) and `reference` (the oracle) are drawn as
            yardsticks when present.
    Returns:
        PNG bytes: left, the original's trained (retain) vs unseen (test) samples; middle, the
        forget set before unlearning, after the retraining and after MU-Mis when present;
        right, the forget set's distribution per row (box: quartiles, whiskers 5-95 %).
    """
    import numpy as np

    def sens(label: str, split: str) -> Any:
        return _log10((samples.get(label) or {}).get("sensitivity_target", {}).get(split, []), 1e-12)

    fig, (ax1, ax2, ax3) = _figure(13.0, max(3.2, 0.28 * len(samples) + 1.2), 3)
    pairs = [(f"{before}: trained (retain)", sens(before, "retain")),
             (f"{before}: unseen (test)", sens(before, "test"))]
    after = [(f"forget, {lab}", sens(lab, "forget")) for lab in (before, reference)
             if lab in samples]
    after += [(f"forget, {lab}", sens(lab, "forget")) for lab in samples
              if lab not in (before, reference) and lab.startswith("mumis")][:2]
    for ax, series, sub in ((ax1, pairs, "trained vs unseen"), (ax2, after, "forget set: before / after")):
        series = [(label, v) for label, v in series if len(v)]
        bins = _bins([v for _, v in series])
        for label, v in series:
            ax.hist(v, bins=bins, histtype="step", density=True, linewidth=1.2, label=label)
        if series:
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, f"no {before} record", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(sub, fontsize=9)
        ax.set_xlabel("log10 S_y(x)", fontsize=8)
        ax.grid(alpha=0.3)
    labels = [lab for lab in samples if len(sens(lab, "forget"))]
    data = [sens(lab, "forget") for lab in labels]
    if data:
        ax3.boxplot(data, orientation="horizontal", whis=(5, 95), showfliers=False)
        ax3.set_yticks(np.arange(1, len(labels) + 1), labels, fontsize=7)
        ax3.invert_yaxis()
        # Window: the yardsticks' range +- 1.5 decades, so one collapsed model (sensitivity ~0)
        # does not squash every other box; rows outside it are marked at the edge.
        marks = [d for lab, d in zip(labels, data, strict=True) if lab in (reference, before)] or data
        lo = min(float(np.percentile(d, 5)) for d in marks) - 1.5
        hi = max(float(np.percentile(d, 95)) for d in marks) + 1.5
        ax3.set_xlim(lo, hi)
        for i, d in enumerate(data, start=1):
            med = float(np.median(d))
            if not lo <= med <= hi:
                ax3.text(lo if med < lo else hi, i, f" median 1e{med:.0f} ", fontsize=6, va="center",
                         ha="left" if med < lo else "right", color="C3")
        if reference in labels:
            ax3.axvline(float(np.median(data[labels.index(reference)])), color="C3", linestyle="--",
                        linewidth=0.8, label=f"{reference} median")
            ax3.legend(fontsize=7)
    ax3.set_title("forget set per method", fontsize=9)
    ax3.set_xlabel("log10 S_y(x)", fontsize=8)
    ax3.grid(axis="x", alpha=0.3)
    fig.suptitle(f"{title}: target-class input sensitivity", fontsize=10)
    return _png(fig)


def mia_score_chart(title: str, samples: dict[str, dict[str, Any]]) -> bytes:
    """The loss attack's score distributions: per-sample cross-entropy (log10) on the forget
    set vs unseen test samples, one panel per row (the attack separates what differs).

    Args:
        title: the figure's title.
        samples: row label -> that row's `samples` (seeds pooled).
    Returns:
        PNG bytes.
    """
    labels = [lab for lab in samples if (samples[lab] or {}).get("loss")]
    fig, axes = _grid(len(labels), min(4, max(1, len(labels))), 3.2, 2.3)
    for ax, lab in zip(axes, labels, strict=True):
        loss = samples[lab]["loss"]
        series = [(split, _log10(loss.get(split, []), 1e-8)) for split in ("forget", "test")]
        series = [(split, v) for split, v in series if len(v)]
        bins = _bins([v for _, v in series])
        for split, v in series:
            ax.hist(v, bins=bins, histtype="step", density=True, linewidth=1.2, label=split)
        if not series:
            ax.text(0.5, 0.5, "no finite losses\n(the model diverged)", ha="center", va="center",
                    transform=ax.transAxes, fontsize=8)
        ax.set_title(lab, fontsize=9)
        ax.set_xlabel("log10 loss", fontsize=7)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    if labels:
        axes[0].legend(fontsize=7)
    fig.suptitle(f"{title}: loss-attack scores, log10 cross-entropy (forget vs test; losses below "
                 "1e-8 at -8)", fontsize=10)
    return _png(fig)


__all__ = ["accuracy_gap_chart", "available", "dynamics_chart", "has_recovery", "mia_score_chart",
           "recovery_chart", "sensitivity_chart"]

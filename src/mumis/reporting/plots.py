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
    """Grouped bars per method: the three accuracy columns (left) and the two gaps (right),
    mean with std error bars over seeds.

    Returns:
        PNG bytes.
    """
    import numpy as np

    acc = table.columns[:3]
    gaps = [(k, label) for k, label in table.columns if k in ("gap_paper", "gap_salun")]
    names = [r.method for r in table.rows]
    x = np.arange(len(names))
    fig, (ax1, ax2) = _figure(max(7.0, 1.3 * len(names) + 4), 3.4, 2)
    for ax, cols, title in ((ax1, acc, "accuracy (%)"), (ax2, gaps, "gap to retrain")):
        w = 0.8 / max(len(cols), 1)
        for j, (k, label) in enumerate(cols):
            means = [r.values[k].mean if r.values[k].mean is not None else np.nan for r in table.rows]
            errs = [r.values[k].std or 0.0 for r in table.rows]
            ax.bar(x + (j - (len(cols) - 1) / 2) * w, means, w, yerr=errs if any(errs) else None,
                   label=label, capsize=2)
        ax.set_xticks(x, names, rotation=30, ha="right", fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(table.title, fontsize=10)
    return _png(fig)


def dynamics_chart(title: str, runs: list[dict[str, Any]]) -> bytes:
    """MU-Mis dynamics: forget accuracy, S_target and S_irrelevant over steps, per run.

    Args:
        title: the figure's title.
        runs: one dict per run: `label`, `history` (rows with step, forget_acc, s_target,
            s_irrelevant) and `stop_step` (marked with a dashed line; None: not marked).
    Returns:
        PNG bytes.
    """
    panels = (("forget_acc", "forget accuracy (%, monitor subset)"), ("s_target", "S_target"),
              ("s_irrelevant", "S_irrelevant"))
    fig, axes = _figure(10.0, 3.0, 3)
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


__all__ = ["accuracy_gap_chart", "available", "dynamics_chart"]

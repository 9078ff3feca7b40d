"""Input-sensitivity diagnostics: the MU-Mis paper's evidence, measured on any model.

The MU-Mis paper (Machine Unlearning by Minimizing input Sensitivity) observes that a trained
model's target-class input sensitivity `S_y(x) = ||d f_y(x) / dx||` is larger on its training
samples than on unseen ones, relative to the sensitivity of the irrelevant classes; unlearning
should bring the forget samples' profile to that of unseen (test) samples. This module summarises
the per-sample target-class sensitivity and the mean irrelevant-class sensitivity on a fixed,
seeded subsample of the forget, retain and test splits. The gradients themselves come from
`mumis.functional.sensitivity_profile`, the one place mumis computes input gradients.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..exceptions import ConfigError
from ..functional import sensitivity_profile
from .accuracy import eval_mode

Pair = tuple[torch.Tensor, torch.Tensor]
STAT_NAMES = ("mean", "median", "q25", "q75")


def subsample_indices(n: int, k: int, seed: int) -> np.ndarray:
    """min(n, k) distinct indices of range(n), drawn with `default_rng(seed)`, sorted."""
    if n <= k:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False))


def summarize(values: np.ndarray) -> dict[str, float | int | None]:
    """Mean, median and quartiles of the finite values of a 1-D array (None each when there are
    none), and `nonfinite`: how many were inf or NaN (a diverged model's gradients overflow)."""
    finite = values[np.isfinite(values)]
    bad = {"nonfinite": int(len(values) - len(finite))} if len(finite) < len(values) else {}
    if len(finite) == 0:
        return {**dict.fromkeys(STAT_NAMES), **bad}
    q25, med, q75 = np.percentile(finite, [25, 50, 75])
    return {"mean": float(finite.mean()), "median": float(med), "q25": float(q25),
            "q75": float(q75), **bad}


@dataclass
class SensitivityDiagnostics:
    """Per-sample sensitivities of a subsample of each split, and their summary.

    Attributes:
        n_per_split: the requested subsample size per split (a smaller split is used whole).
        seed: seed of the subsample.
        values: split name -> {"target": (n,) S_y(x), "irrelevant": (n,) mean_{k != y} S_k(x)}.
    """

    n_per_split: int
    seed: int
    values: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """JSON-ready summary: sample counts and statistics per split and per quantity."""
        out: dict[str, Any] = {"n_per_split": self.n_per_split, "seed": self.seed, "norm": "l2"}
        for name, v in self.values.items():
            out[name] = {"n": len(v["target"]), "target": summarize(v["target"]),
                         "irrelevant": summarize(v["irrelevant"])}
        return out


def sensitivity_diagnostics(
    model: nn.Module,
    splits: dict[str, Pair],
    *,
    n_per_split: int = 500,
    seed: int = 0,
    batch_size: int = 128,
    device: torch.device | str | None = None,
) -> SensitivityDiagnostics:
    """Target-class and mean irrelevant-class input sensitivity on a seeded subsample per split.

    Args:
        model: a classifier returning logits (N, K); used in eval mode, restored afterwards.
        splits: name -> (x, y), e.g. {"forget": ..., "retain": ..., "test": ...}.
        n_per_split: samples drawn per split (all of a smaller split).
        seed: seed of the subsample (`numpy.random.default_rng`); each split uses `seed`.
        batch_size: samples per gradient batch.
        device: where to compute (default: the model's device).
    Returns:
        SensitivityDiagnostics with the per-sample values (for plots) and `summary()`.
    Raises:
        ConfigError: `n_per_split` is below 1.
    """
    if n_per_split < 1:
        raise ConfigError(f"n_per_split must be at least 1, got {n_per_split}")
    diag = SensitivityDiagnostics(n_per_split=n_per_split, seed=seed)
    with eval_mode(model):
        for name, (x, y) in splits.items():
            idx = torch.as_tensor(subsample_indices(len(y), n_per_split, seed), dtype=torch.long)
            if len(idx) == 0:
                diag.values[name] = {"target": np.zeros(0), "irrelevant": np.zeros(0)}
                continue
            target, irrelevant = sensitivity_profile(
                model, x[idx], y[idx], batch_size=batch_size, device=device
            )
            diag.values[name] = {"target": target.double().numpy(),
                                 "irrelevant": irrelevant.double().numpy()}
    return diag


def plot_sensitivity_histograms(
    diag: SensitivityDiagnostics,
    path: str | Path | None = None,
    *,
    bins: int = 40,
    title: str | None = None,
) -> Any:
    """Histograms of target-class and irrelevant-class sensitivity, one colour per split.

    matplotlib is imported here only (it is an optional dependency, `mumis[plot]`). The x axis
    is logarithmic when every value is positive, as sensitivities span orders of magnitude.

    Args:
        diag: the diagnostics to plot.
        path: where to save the figure (any format matplotlib knows from the suffix).
        bins: number of histogram bins.
        title: an optional figure title.
    Returns:
        The matplotlib `Figure`, or None (with a warning) when matplotlib is not installed.
    """
    try:
        from matplotlib.figure import Figure
    except ImportError:
        warnings.warn("matplotlib is not installed (pip install 'mumis[plot]'); no plot made",
                      stacklevel=2)
        return None
    # A bare Figure (no pyplot): no global state, no GUI backend needed.
    fig = Figure(figsize=(10, 4), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, key, label in zip(axes, ("target", "irrelevant"),
                              ("target-class sensitivity $S_y(x)$",
                               "mean irrelevant-class sensitivity"), strict=True):
        arrays = {n: v[key] for n, v in diag.values.items() if len(v[key])}
        if not arrays:
            continue
        allv = np.concatenate(list(arrays.values()))
        log = bool((allv > 0).all()) and allv.max() > allv.min()
        edges = (np.geomspace(allv.min(), allv.max(), bins + 1) if log
                 else np.linspace(allv.min(), allv.max() + 1e-12, bins + 1))
        for name, v in arrays.items():
            ax.hist(v, bins=edges, alpha=0.5, label=f"{name} (n={len(v)})")
        if log:
            ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("samples")
        ax.legend()
    if title:
        fig.suptitle(title)
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
    return fig

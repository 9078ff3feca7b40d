"""`evaluate(model, splits, reference=...)`: every EVALUATION.md metric, against the retrain.

Each split is run through each model once (`compute_logits`: batched, `no_grad`, eval mode,
modes restored); accuracies, the three membership-inference attacks and the divergences are
derived from those logits, the sensitivity diagnostics from `mumis.functional`. The report
names every number with the EVALUATION.md keys, puts the reference's value and the absolute
difference beside it, and states each attack's orientation.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from .config import check_seed
from .data.splits import Pair, Splits, check_splits
from .exceptions import ConfigError, DataError
from .metrics.accuracy import accuracy, compute_logits, per_class_accuracy
from .metrics.divergence import js_to_retrain, kl_to_retrain
from .metrics.mia import (
    ORIENTATION,
    AttackResult,
    entropy_attack,
    loss_attack_accuracy,
    loss_attack_auc,
    mia_efficacy,
    per_sample_loss,
    prediction_entropy,
    true_label_confidence,
)
from .metrics.recovery import (
    RecoveryConfig,
    audit_slices,
    batchnorm_layers,
    reestimate_batchnorm,
    relearn,
)
from .metrics.sensitivity import sensitivity_diagnostics, subsample_indices
from .models.adapters import OutputKey, check_output_key
from .models.checks import logits_model
from .registry import did_you_mean
from .utils import hash_arrays, to_jsonable

#: Metric groups `evaluate(metrics=...)` accepts; "mia" = the three attacks; "recovery" = the
#: BatchNorm re-estimation and relearning audits (`mumis.metrics.recovery`).
METRIC_GROUPS = ("accuracy", "mia", "mia_efficacy", "mia_entropy", "mia_loss", "divergence",
                 "sensitivity", "recovery")
#: What `evaluate` computes by default ("divergence" only when a reference is given).
DEFAULT_METRICS: tuple[str, ...] = ("accuracy", "mia", "divergence", "sensitivity")
#: Scalar metric keys in display order (EVALUATION.md names).
METRIC_KEYS = ("forget_acc", "unlearn_acc", "retain_acc", "test_acc", "test_remaining_acc",
               "test_forgotten_acc", "mia_efficacy", "mia_entropy", "mia_loss_acc",
               "mia_loss_auc", "kl_to_retrain", "js_to_retrain",
               *(f"{a}_{k}" for a in ("bn_reestimated", "relearn")
                 for k in ("forget_acc", "test_acc", "test_remaining_acc", "test_forgotten_acc")))
#: The accuracies each recovery audit measures (prefixed with `bn_reestimated_` / `relearn_`);
#: test_remaining / test_forgotten only for class-wise and sub-class forgetting.
RECOVERY_ACCURACIES = ("forget_acc", "test_acc", "test_remaining_acc", "test_forgotten_acc")
#: gap_recovery: mean abs difference to retrain over these (where both models have them; the
#: BatchNorm keys are n/a on a model without BatchNorm), class-wise / sub-class and random.
GAP_RECOVERY_CLASSWISE = ("bn_reestimated_test_forgotten_acc", "relearn_test_forgotten_acc")
GAP_RECOVERY_RANDOM = ("bn_reestimated_forget_acc", "relearn_forget_acc")
RECOVERY_ORIENTATION = ("ideal = the retrained model's value under the same audit; a value above "
                        "it means forgotten knowledge came back")
#: MU-Mis paper's Avg. Gap, class-wise / sub-class forgetting.
GAP_PAPER_CLASSWISE = ("test_remaining_acc", "test_forgotten_acc", "test_acc")
#: MU-Mis paper's Avg. Gap, random / index forgetting.
GAP_PAPER_RANDOM = ("retain_acc", "forget_acc", "test_acc")
#: SalUn's Avg. Gap (UA, RA, TA, MIA-Efficacy).
GAP_SALUN = ("unlearn_acc", "retain_acc", "test_acc", "mia_efficacy")

MEANING: dict[str, str] = {
    "forget_acc": "accuracy on the forget samples (%)",
    "unlearn_acc": "100 - forget_acc (SalUn's UA)",
    "retain_acc": "accuracy on the retain samples (%)",
    "test_acc": "accuracy on the whole test set (%)",
    "test_remaining_acc": "test accuracy on the classes kept (%)",
    "test_forgotten_acc": "test accuracy on the forgotten class(es) (%)",
    "mia_efficacy": "% forget called non-member by SalUn's SVC; higher = more forgotten",
    "mia_entropy": "% forget called member by SSD's entropy LR; lower = more forgotten",
    "mia_loss_acc": "CV accuracy of loss LR, forget vs test; ideal = retrain's, ~50",
    "mia_loss_auc": "AUC of -loss, forget vs test; ideal = retrain's, ~50",
    "kl_to_retrain": "mean KL(P_retrain, P_model) on forget, nats; 0 = identical",
    "js_to_retrain": "mean Jensen-Shannon to retrain on forget, nats; 0 = identical",
    "gap_paper": "MU-Mis Avg. Gap: mean abs diff over {keys}",
    "gap_salun": "SalUn Avg. Gap: mean abs diff over unlearn_acc, retain_acc, test_acc, mia_efficacy",
    "gap_recovery": "mean abs diff to retrain over {keys} (where both are measured)",
    **{f"bn_reestimated_{k}": f"{k} after re-estimating BatchNorm statistics on unlabelled images; "
       "ideal = retrain's" for k in ("forget_acc", "test_acc", "test_remaining_acc",
                                     "test_forgotten_acc")},
    **{f"relearn_{k}": f"{k} after a short fine-tuning attack on a retain slice; ideal = retrain's"
       for k in ("forget_acc", "test_acc", "test_remaining_acc", "test_forgotten_acc")},
}


# ------------------------------------------------------------------------------------- gaps
def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def gap(
    model: Mapping[str, Any], reference: Mapping[str, Any], keys: Iterable[str]
) -> float | None:
    """Mean absolute difference over `keys`; None when a key is missing or not finite."""
    keys = list(keys)
    if not keys or not all(_finite(model.get(k)) and _finite(reference.get(k)) for k in keys):
        return None
    return sum(abs(float(model[k]) - float(reference[k])) for k in keys) / len(keys)


def gap_paper_keys(classwise: bool) -> tuple[str, ...]:
    """The accuracies the MU-Mis paper's Avg. Gap averages over, for this kind of forgetting."""
    return GAP_PAPER_CLASSWISE if classwise else GAP_PAPER_RANDOM


def gap_paper(
    model: Mapping[str, Any], reference: Mapping[str, Any], *, classwise: bool
) -> float | None:
    """MU-Mis paper's Avg. Gap: over (test_remaining_acc, test_forgotten_acc, test_acc) for
    class-wise / sub-class forgetting, over (retain_acc, forget_acc, test_acc) otherwise."""
    return gap(model, reference, gap_paper_keys(classwise))


def gap_salun(model: Mapping[str, Any], reference: Mapping[str, Any]) -> float | None:
    """SalUn's Avg. Gap: over (unlearn_acc, retain_acc, test_acc, mia_efficacy)."""
    return gap(model, reference, GAP_SALUN)


def gap_recovery_keys(classwise: bool) -> tuple[str, ...]:
    """The audited accuracies gap_recovery may average over, for this kind of forgetting."""
    return GAP_RECOVERY_CLASSWISE if classwise else GAP_RECOVERY_RANDOM


def gap_recovery(
    model: Mapping[str, Any], reference: Mapping[str, Any], *, classwise: bool
) -> float | None:
    """Mean abs difference to retrain of the forgotten data's accuracy after each recovery audit
    (`gap_recovery_keys`), over the keys both have finite (the BatchNorm audit is n/a without
    BatchNorm); None when no audit was measured. Not part of gap_paper / gap_salun."""
    keys = [k for k in gap_recovery_keys(classwise)
            if _finite(model.get(k)) and _finite(reference.get(k))]
    return gap(model, reference, keys) if keys else None


# ----------------------------------------------------------------------------------- report
@dataclass
class EvaluationReport:
    """The metrics of one model (and of the reference), with their provenance.

    Attributes:
        model: EVALUATION.md key -> value for the evaluated model.
        reference: the same for the reference (retrained) model, or None.
        kind: the forgetting scenario ('class', 'subclass', 'random', 'indices').
        classwise: True when test_remaining / test_forgotten exist.
        num_classes: classes of the label space.
        sizes: samples per split.
        per_class_acc: {"model": [...], "reference": [...]}: test accuracy per class (%).
        mia_details: {"model": {key: details}, ...}: attack-set sizes, folds, notes.
        sensitivity: {"model": summary, "reference": summary} or None.
        seed: seed of every subsample.
        recovery: the recovery audits' settings, data and per-model notes (None when the
            'recovery' group was not computed).
    """

    model: dict[str, float]
    reference: dict[str, float] | None
    kind: str
    classwise: bool
    num_classes: int
    sizes: dict[str, int]
    per_class_acc: dict[str, list[float | None]]
    mia_details: dict[str, dict[str, Any]]
    sensitivity: dict[str, Any] | None
    seed: int
    fingerprint: str = ""
    recovery: dict[str, Any] | None = None
    # Kept for reuse as a reference and for plots; never serialised.
    forget_logits: torch.Tensor | None = field(default=None, repr=False)
    sensitivity_values: dict[str, Any] = field(default_factory=dict, repr=False)
    # The model's per-sample cross-entropy on the same seeded subsample per split as the
    # sensitivity diagnostics (the loss attack's feature: members have small losses).
    loss_values: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def samples(self, digits: int = 5) -> dict[str, dict[str, list[float]]]:
        """JSON-ready per-sample values of the model for plots (rounded to `digits` significant
        digits): `loss` and, when measured, `sensitivity_target` / `sensitivity_irrelevant`,
        each split -> list, on a seeded subsample of each split (`sensitivity_samples`)."""
        def rounded(a: np.ndarray) -> list[float]:
            return [float(f"{float(v):.{digits}g}") for v in a]

        out: dict[str, dict[str, list[float]]] = {
            "loss": {k: rounded(v) for k, v in self.loss_values.items()}}
        diag = self.sensitivity_values.get("model")
        if diag is not None:
            for q in ("target", "irrelevant"):
                out[f"sensitivity_{q}"] = {k: rounded(v[q]) for k, v in diag.values.items()}
        return out

    @property
    def diff(self) -> dict[str, float] | None:
        """|model - reference| for every key both have (NaN where either is NaN)."""
        if self.reference is None:
            return None
        return {k: abs(v - self.reference[k]) for k, v in self.model.items() if k in self.reference}

    @property
    def gap_paper(self) -> float | None:
        return None if self.reference is None else gap_paper(
            self.model, self.reference, classwise=self.classwise)

    @property
    def gap_salun(self) -> float | None:
        return None if self.reference is None else gap_salun(self.model, self.reference)

    @property
    def gap_recovery(self) -> float | None:
        """Recovery audits' gap to retrain (`gap_recovery`); None without a reference or audits."""
        return None if self.reference is None else gap_recovery(
            self.model, self.reference, classwise=self.classwise)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: `model` (+ `reference`, `diff`, `gap_paper`, `gap_salun` with a
        reference), then per-class accuracy, MIA details and orientation, sensitivity summary."""
        out: dict[str, Any] = {"model": dict(self.model)}
        if self.reference is not None:
            out["reference"] = dict(self.reference)
            out["diff"] = self.diff
            out["gap_paper"] = self.gap_paper
            out["gap_salun"] = self.gap_salun
            out["gap_paper_keys"] = list(gap_paper_keys(self.classwise))
            if self.recovery is not None:
                out["gap_recovery"] = self.gap_recovery
                out["gap_recovery_keys"] = list(gap_recovery_keys(self.classwise))
        out["kind"] = self.kind
        out["sizes"] = dict(self.sizes)
        out["seed"] = self.seed
        out["per_class_acc"] = self.per_class_acc
        out["orientation"] = {k: v for k, v in ORIENTATION.items() if k in self.model}
        if self.recovery is not None:
            out["orientation"].update({k: RECOVERY_ORIENTATION for k in self.model
                                       if k.startswith(("bn_reestimated_", "relearn_"))})
        out["mia_details"] = self.mia_details
        if self.sensitivity is not None:
            out["sensitivity"] = self.sensitivity
        if self.recovery is not None:
            out["recovery"] = self.recovery
        return to_jsonable(out)

    def to_markdown(self, *, model_name: str = "model", reference_name: str = "retrain") -> str:
        """A Markdown table: metric, model value, reference value, |diff|, meaning."""
        sizes = ", ".join(f"{k} {v}" for k, v in self.sizes.items())
        lines = [f"Evaluation: {self.kind} forgetting ({sizes}); seed {self.seed}", ""]
        ref = self.reference
        head = ["metric", model_name] + ([reference_name, "abs diff"] if ref else []) + ["meaning"]
        rows = []
        for k in METRIC_KEYS:
            if k not in self.model:
                continue
            row = [k, _fmt(self.model[k], k)]
            if ref is not None:
                d = abs(self.model[k] - ref[k]) if k in ref else None
                row += [_fmt(ref.get(k), k), _fmt(d, k)]
            rows.append(row + [MEANING[k]])
        if ref is not None:
            keys = ", ".join(gap_paper_keys(self.classwise))
            rows.append(["gap_paper", _fmt(self.gap_paper, "gap_paper"), "", "",
                         MEANING["gap_paper"].format(keys=keys)])
            rows.append(["gap_salun", _fmt(self.gap_salun, "gap_salun"), "", "",
                         MEANING["gap_salun"]])
            if self.recovery is not None:
                keys = ", ".join(gap_recovery_keys(self.classwise))
                rows.append(["gap_recovery", _fmt(self.gap_recovery, "gap_recovery"), "", "",
                             MEANING["gap_recovery"].format(keys=keys)])
        lines.append(_markdown_table(head, rows))
        notes = [f"- {name} {k}: {d['note'] if 'note' in d else d['skipped']}"
                 for name, dd in self.mia_details.items() for k, d in dd.items()
                 if "note" in d or "skipped" in d]
        if self.recovery is not None:
            notes += [f"- recovery audits: {self.recovery['summary']}"]
            notes += [f"- {who} recovery: {n}" for who in ("model", "reference")
                      for n in (self.recovery.get(who) or {}).get("notes", [])]
        if notes:
            lines += ["", "Notes:", *notes]
        if self.sensitivity:
            lines += ["", _sensitivity_markdown(self.sensitivity, model_name, reference_name)]
        return "\n".join(lines)


def _fmt(v: Any, key: str = "", precision: int = 2) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float) and math.isnan(v):
        return "n/a"
    if isinstance(v, (int, float)):
        return f"{v:.4f}" if key in ("kl_to_retrain", "js_to_retrain") else f"{v:.{precision}f}"
    return str(v)


def _markdown_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    out = [line(head), "|" + "|".join("---" for _ in head) + "|"]
    return "\n".join(out + [line(r) for r in rows])


def _plain_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(head, *rows, strict=True)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*head), fmt.format(*("-" * w for w in widths)),
                      *(fmt.format(*r) for r in rows)]).rstrip()


def _sensitivity_markdown(sens: dict[str, Any], model_name: str, reference_name: str) -> str:
    first = next(iter(sens.values()))
    lines = [f"Input sensitivity (L2 norm of d logit / d input; up to {first['n_per_split']} "
             f"samples per split, seed {first['seed']}): median [q25, q75]", ""]
    rows = []
    for who, summ in sens.items():
        name = model_name if who == "model" else reference_name
        for split, s in summ.items():
            if not isinstance(s, dict):
                continue
            def cell(q: dict[str, Any]) -> str:
                return "n/a" if q["median"] is None else (
                    f"{q['median']:.4g} [{q['q25']:.4g}, {q['q75']:.4g}]")
            rows.append([name, split, str(s["n"]), cell(s["target"]), cell(s["irrelevant"])])
    head = ["model", "split", "n", "target class", "irrelevant classes (mean)"]
    lines.append(_markdown_table(head, rows))
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
        d = r.to_dict() if isinstance(r, EvaluationReport) else r
        flat = dict(d["model"]) if isinstance(d.get("model"), Mapping) else dict(d)
        for g in ("gap_paper", "gap_salun", "gap_recovery"):
            if g in d and g not in flat:
                flat[g] = d[g]
        body.append([name] + [_fmt(flat.get(k), k, precision) for k in keys])
    head = ["method", *keys]
    return _markdown_table(head, body) if fmt == "md" else _plain_table(head, body)


# ---------------------------------------------------------------------------------- compute
def _groups(metrics: str | Sequence[str]) -> set[str]:
    names = [metrics] if isinstance(metrics, str) else list(metrics)
    if "all" in names:
        names = list(METRIC_GROUPS)
    for m in names:
        if m not in METRIC_GROUPS:
            raise ConfigError(
                f"unknown metric group {m!r}.{did_you_mean(m, list(METRIC_GROUPS))} "
                f"Choose from: {', '.join(METRIC_GROUPS)} (or 'all')"
            )
    groups = set(names)
    if "mia" in groups:
        groups |= {"mia_efficacy", "mia_entropy", "mia_loss"}
    return groups


def _fingerprint(splits: Splits) -> str:
    """Identity of a split (kind, sizes, forget samples) to check a reused reference report."""
    return hash_arrays(splits.kind, len(splits.forget[1]), len(splits.retain[1]),
                       len(splits.test[1]), splits.forget[0], splits.forget[1])


class _Logits:
    """Logits of one model per split, computed on first use and then kept."""

    def __init__(self, model: nn.Module, splits: Splits, batch_size: int) -> None:
        self.model, self.splits, self.batch_size = model, splits, batch_size
        self._cache: dict[str, torch.Tensor] = {}

    def __call__(self, name: str) -> torch.Tensor:
        if name not in self._cache:
            if name in ("test_remaining", "test_forgotten"):
                self._classwise_from_test()
            if name not in self._cache:
                pair: Pair | None = getattr(self.splits, name)
                if pair is None:
                    raise ConfigError(
                        f"split {name!r} is not available for {self.splits.kind} forgetting")
                self._cache[name] = compute_logits(self.model, pair[0], batch_size=self.batch_size)
        return self._cache[name]

    def _classwise_from_test(self) -> None:
        # For class forgetting test_remaining / test_forgotten are the test images whose label is
        # (not) forgotten; slice the test logits instead of running the model again, after
        # checking the tensors really are those subsets (Splits built by hand may differ).
        s = self.splits
        if s.kind != "class" or s.test_remaining is None or s.test_forgotten is None:
            return
        x, y = s.test
        mask = torch.isin(y, torch.as_tensor(s.forgotten_classes, dtype=y.dtype))
        for name, m in (("test_remaining", ~mask), ("test_forgotten", mask)):
            px, py = getattr(s, name)
            if len(py) != int(m.sum()) or not (torch.equal(py, y[m]) and torch.equal(px, x[m])):
                return
        test = self("test")
        self._cache["test_remaining"], self._cache["test_forgotten"] = test[~mask], test[mask]


def _evaluate_one(
    model: nn.Module, splits: Splits, groups: set[str], *, seed: int, batch_size: int
) -> tuple[dict[str, float], list[float | None], dict[str, Any], _Logits]:
    logits = _Logits(model, splits, batch_size)
    values: dict[str, float] = {}
    per_class: list[float | None] = []
    details: dict[str, Any] = {}
    fy, ry, ty = splits.forget[1], splits.retain[1], splits.test[1]
    if "accuracy" in groups:
        values["forget_acc"] = accuracy(logits("forget"), fy)
        values["unlearn_acc"] = 100.0 - values["forget_acc"]
        values["retain_acc"] = accuracy(logits("retain"), ry)
        values["test_acc"] = accuracy(logits("test"), ty)
        if splits.classwise:
            rem_y, fgt_y = splits.test_remaining[1], splits.test_forgotten[1]  # type: ignore[index]
            values["test_remaining_acc"] = accuracy(logits("test_remaining"), rem_y)
            values["test_forgotten_acc"] = accuracy(logits("test_forgotten"), fgt_y)
        per_class = per_class_accuracy(logits("test"), ty, splits.num_classes)

    def record(key: str, res: AttackResult) -> None:
        values[key] = res.value
        details[key] = res.details

    if "mia_efficacy" in groups:
        # SalUn: non-members = the test set; class-wise, the test set without forgotten classes.
        non = "test_remaining" if splits.classwise else "test"
        non_y = splits.test_remaining[1] if splits.classwise else ty  # type: ignore[index]
        record("mia_efficacy", mia_efficacy(
            true_label_confidence(logits("retain"), ry),
            true_label_confidence(logits(non), non_y),
            true_label_confidence(logits("forget"), fy)))
    if "mia_entropy" in groups:
        record("mia_entropy", entropy_attack(
            prediction_entropy(logits("retain")), prediction_entropy(logits("test")),
            prediction_entropy(logits("forget"))))
    if "mia_loss" in groups:
        fl, tl = per_sample_loss(logits("forget"), fy), per_sample_loss(logits("test"), ty)
        record("mia_loss_acc", loss_attack_accuracy(fl, tl, seed=seed))
        record("mia_loss_auc", loss_attack_auc(fl, tl))
    return values, per_class, details, logits


@dataclass
class _RecoverySpec:
    """The recovery audits of one evaluation: settings and the retain slices (or given images)."""

    cfg: RecoveryConfig
    seed: int
    bn_images: torch.Tensor  # (N, ...) unlabelled
    relearn_data: Pair
    bn_source: str
    key: str  # identity of the settings and data, to check a reused reference report

    @classmethod
    def make(cls, splits: Splits, cfg: RecoveryConfig, seed: int,
             images: torch.Tensor | None) -> _RecoverySpec:
        rx, ry = splits.retain
        if len(ry) < 2:
            raise DataError(f"the recovery audits fine-tune on retain samples and need at least 2; "
                            f"this split has {len(ry)}: leave 'recovery' out of metrics")
        bn_idx, rl_idx = audit_slices(len(ry), cfg, seed)
        if images is None:
            bn_images, source = rx[bn_idx], f"a seeded slice of {len(bn_idx)} retain images"
        else:
            if not isinstance(images, torch.Tensor) or not images.dtype.is_floating_point:
                raise DataError("recovery_images must be a floating-point tensor of unlabelled "
                                f"inputs shaped like the data, got {type(images).__name__}")
            if tuple(images.shape[1:]) != tuple(rx.shape[1:]) or len(images) < 2:
                raise DataError(f"recovery_images must hold at least 2 inputs of shape "
                                f"{tuple(rx.shape[1:])}; got a tensor of shape {tuple(images.shape)}")
            bn_images, source = images, f"{len(images)} images given by the caller"
        key = hash_arrays(str(sorted(cfg.to_dict().items())), seed, bn_images, rl_idx)
        return cls(cfg, seed, bn_images, (rx[rl_idx], ry[rl_idx]), source, key)

    def describe(self) -> dict[str, Any]:
        c = self.cfg
        summary = (
            f"BatchNorm running statistics reset and re-estimated (cumulative average, BatchNorm "
            f"layers in train mode, no gradient, no weight change) on {self.bn_source}; relearning "
            f"attack: {c.relearn_steps} SGD steps (lr {c.relearn_lr:g}, momentum "
            f"{c.relearn_momentum:g}, batch {c.relearn_batch_size}, seed {self.seed}) of "
            f"cross-entropy fine-tuning on {len(self.relearn_data[1])} labelled retain samples, "
            "BatchNorm in train mode, dropout off; the same for the model and the reference")
        return {"summary": summary, "settings": c.to_dict(), "seed": self.seed,
                "bn_data": self.bn_source, "relearn_samples": len(self.relearn_data[1]),
                "key": self.key}


def _audited_accuracies(audited: nn.Module, splits: Splits, prefix: str,
                        batch_size: int) -> dict[str, float]:
    logits = _Logits(audited, splits, batch_size)
    names = ("forget", "test", "test_remaining", "test_forgotten")[:4 if splits.classwise else 2]
    return {f"{prefix}_{n}_acc": accuracy(logits(n), getattr(splits, n)[1]) for n in names}


def _recovery(model: nn.Module, splits: Splits, spec: _RecoverySpec,
              batch_size: int) -> tuple[dict[str, float], dict[str, Any]]:
    """The recovery audits of one model: accuracies after each, and notes (n/a, stops, time)."""
    import time

    c = spec.cfg
    n_bn = len(batchnorm_layers(model))
    notes: list[str] = []
    t0 = time.perf_counter()
    bn_model = reestimate_batchnorm(model, spec.bn_images, batch_size=c.bn_batch_size)
    if bn_model is None:
        names = ("forget", "test", "test_remaining", "test_forgotten")[:4 if splits.classwise else 2]
        values = {f"bn_reestimated_{n}_acc": math.nan for n in names}
        notes.append("no BatchNorm layer with running statistics: bn_reestimated_* are n/a")
    else:
        values = _audited_accuracies(bn_model, splits, "bn_reestimated", batch_size)
        del bn_model
    t1 = time.perf_counter()
    x, y = spec.relearn_data
    out = relearn(model, x, y, steps=c.relearn_steps, lr=c.relearn_lr,
                  momentum=c.relearn_momentum, batch_size=c.relearn_batch_size, seed=spec.seed)
    if out.note:
        notes.append(f"relearning attack: {out.note}")
    values.update(_audited_accuracies(out.model, splits, "relearn", batch_size))
    t2 = time.perf_counter()
    return values, {"batchnorm_layers": n_bn, "relearn_steps": out.steps, "notes": notes,
                    "bn_time_s": t1 - t0, "relearn_time_s": t2 - t1}


def evaluate(
    model: nn.Module,
    splits: Splits,
    *,
    reference: nn.Module | EvaluationReport | None = None,
    metrics: str | Sequence[str] = DEFAULT_METRICS,
    seed: int = 0,
    batch_size: int = 256,
    sensitivity_samples: int = 500,
    recovery: RecoveryConfig | dict[str, Any] | None = None,
    recovery_images: torch.Tensor | None = None,
    output_key: OutputKey | None = None,
) -> EvaluationReport:
    """Evaluate an (unlearned) model on a scenario's splits, against the retrained reference.

    Args:
        model: classifier returning logits (N, K); evaluated on its own device in eval mode
            (every submodule's mode is restored afterwards; weights are never changed).
        splits: forget / retain / test (and test_remaining / test_forgotten) of the scenario.
        reference: the model retrained without the forget set; or the `EvaluationReport` of an
            earlier `evaluate(reference, splits, metrics=...)` call on the same splits, so a
            benchmark evaluates the reference once (its kept forget-set logits give the
            divergences).
        metrics: groups to compute, from `METRIC_GROUPS` ('accuracy', 'mia' = 'mia_efficacy' +
            'mia_entropy' + 'mia_loss', 'divergence', 'sensitivity', 'recovery') or 'all'.
            'divergence' is computed only when a reference is given. 'recovery' runs the
            BatchNorm re-estimation and relearning audits (`mumis.metrics.recovery`) on copies
            of the model and of the reference: `bn_reestimated_*` and `relearn_*` accuracies
            (forget, test, and class-wise test_remaining / test_forgotten), and `gap_recovery`.
        seed: seed of the loss attack's subsampling and folds and of the sensitivity subsample.
        batch_size: samples per forward pass.
        sensitivity_samples: samples per split (forget, retain, test) for the sensitivity
            diagnostics.
        recovery: settings of the recovery audits (`RecoveryConfig` or a dict of its fields;
            default: 600 retain images for BatchNorm, 30 SGD steps at lr 0.01, momentum 0.9,
            batch 64 on 1000 retain samples).
        recovery_images: unlabelled held-out images for the BatchNorm re-estimation instead
            of the seeded retain slice.
        output_key: where the logits are when forward() returns more than a tensor (for the
            model and a reference model): an int index, a dict key or attribute name, or a
            function `output -> logits`, as in `mumis.unlearn`.
    Returns:
        EvaluationReport; `to_dict()` gives the EVALUATION.md keys, `to_markdown()` a table.
    Raises:
        ConfigError: unknown metric group, a bad recovery setting, or a reference report made
            on other splits, without the metrics asked for or with other recovery settings.
        DataError: recovery_images not shaped like the data.
        ModelError: a model does not take the split's inputs or return (N, K) logits with
            one column per class (one line naming the shapes, before any work).
    """
    check_splits(splits)  # a Splits that forgets something (a tuple gets a clear error)
    check_seed(seed)
    if reference is not None and not isinstance(reference, nn.Module | EvaluationReport):
        raise ConfigError(f"reference must be the retrained nn.Module or its EvaluationReport, got "
                          f"{type(reference).__name__}; for a run directory pass "
                          "mumis.checkpoint.load_checkpoint(DIR)[0]")
    groups = _groups(metrics)
    check_output_key(output_key)
    probe_x = splits.forget[0]  # non-empty: check_splits
    model = logits_model(model, probe_x, output_key=output_key, num_classes=splits.num_classes)
    if isinstance(reference, nn.Module):
        reference = logits_model(reference, probe_x, output_key=output_key,
                                 num_classes=splits.num_classes, name="reference")
    fingerprint = _fingerprint(splits)
    values, per_class, details, logits = _evaluate_one(model, splits, groups, seed=seed,
                                                        batch_size=batch_size)
    spec = None
    if "recovery" in groups:
        spec = _RecoverySpec.make(splits, RecoveryConfig.of(recovery), seed, recovery_images)
        audit_values, audit_notes = _recovery(model, splits, spec, batch_size)
        values.update(audit_values)
    forget_logits = logits("forget")  # kept: this report may serve as a reference later
    report = EvaluationReport(
        model=values, reference=None, kind=splits.kind, classwise=splits.classwise,
        num_classes=splits.num_classes,
        sizes={"forget": len(splits.forget[1]), "retain": len(splits.retain[1]),
               "test": len(splits.test[1]),
               **({"test_remaining": len(splits.test_remaining[1]),  # type: ignore[index]
                   "test_forgotten": len(splits.test_forgotten[1])}  # type: ignore[index]
                  if splits.classwise else {})},
        per_class_acc={"model": per_class} if per_class else {},
        mia_details={"model": details} if details else {}, sensitivity=None, seed=seed,
        fingerprint=fingerprint, forget_logits=forget_logits,
        recovery=None if spec is None else {**spec.describe(), "model": audit_notes},
    )
    sens_splits = {"forget": splits.forget, "retain": splits.retain, "test": splits.test}
    if "accuracy" in groups:
        for name, (_, y) in sens_splits.items():
            idx = torch.as_tensor(subsample_indices(len(y), sensitivity_samples, seed), dtype=torch.long)
            report.loss_values[name] = per_sample_loss(logits(name)[idx], y[idx])
    if "sensitivity" in groups:
        diag = sensitivity_diagnostics(model, sens_splits, n_per_split=sensitivity_samples,
                                       seed=seed)
        report.sensitivity = {"model": diag.summary()}
        report.sensitivity_values["model"] = diag
    if reference is None:
        return report

    if isinstance(reference, EvaluationReport):
        ref = reference
        if ref.fingerprint != fingerprint:
            raise ConfigError("the reference report was computed on other splits; evaluate the "
                              "reference on the same splits (same forget spec and seed)")
        missing = [k for k in values if k not in ref.model]
        if missing:
            raise ConfigError(f"the reference report lacks {', '.join(missing)}; evaluate the "
                              "reference with the same metrics")
        if spec is not None and (ref.recovery or {}).get("key") != spec.key:
            raise ConfigError("the reference report's recovery audits used other settings or "
                              "data; evaluate the reference with the same recovery settings")
        ref_values = {k: ref.model[k] for k in values}
        if spec is not None and report.recovery is not None:
            report.recovery["reference"] = (ref.recovery or {}).get("model")
        ref_forget = ref.forget_logits
        ref_per_class = ref.per_class_acc.get("model", [])
        ref_details = ref.mia_details.get("model", {})
        ref_sens = (ref.sensitivity or {}).get("model")
        if "model" in ref.sensitivity_values:
            report.sensitivity_values["reference"] = ref.sensitivity_values["model"]
    else:
        ref_values, ref_per_class, ref_details, ref_logits = _evaluate_one(
            reference, splits, groups, seed=seed, batch_size=batch_size)
        ref_forget = ref_logits("forget")
        if spec is not None and report.recovery is not None:
            ref_audit, report.recovery["reference"] = _recovery(reference, splits, spec, batch_size)
            ref_values.update(ref_audit)
        ref_sens = None
        if "sensitivity" in groups:
            rdiag = sensitivity_diagnostics(reference, sens_splits,
                                            n_per_split=sensitivity_samples, seed=seed)
            ref_sens = rdiag.summary()
            report.sensitivity_values["reference"] = rdiag
    if "divergence" in groups:
        if ref_forget is None:
            raise ConfigError("the reference report kept no forget-set logits; pass the "
                              "reference model instead")
        mine = logits("forget")
        report.model["kl_to_retrain"] = kl_to_retrain(mine, ref_forget)
        report.model["js_to_retrain"] = js_to_retrain(mine, ref_forget)
        # The reference's divergence to itself is 0 by definition (keeps the table complete).
        ref_values["kl_to_retrain"] = ref_values["js_to_retrain"] = 0.0
    report.reference = ref_values
    if ref_per_class:
        report.per_class_acc["reference"] = ref_per_class
    if ref_details:
        report.mia_details["reference"] = ref_details
    if ref_sens is not None and report.sensitivity is not None:
        report.sensitivity["reference"] = ref_sens
    return report

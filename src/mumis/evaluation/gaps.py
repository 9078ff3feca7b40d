"""Gaps to the retrained reference: mean absolute differences over fixed sets of metric keys.

Two conventions (docs/evaluation.md): `gap_paper` (MU-Mis paper's Avg. Gap, accuracies only)
and `gap_salun` (SalUn's Avg. Gap, with MIA-Efficacy); `gap_recovery` summarises the audits.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from .keys import (
    GAP_PAPER_CLASSWISE,
    GAP_PAPER_RANDOM,
    GAP_RECOVERY_CLASSWISE,
    GAP_RECOVERY_RANDOM,
    GAP_SALUN,
    GAP_SALUN_CLASSWISE,
)


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


def gap_salun_keys(classwise: bool) -> tuple[str, ...]:
    """The keys SalUn's Avg. Gap averages over: TA is test_remaining_acc for class-wise forgetting."""
    return GAP_SALUN_CLASSWISE if classwise else GAP_SALUN


def gap_salun(
    model: Mapping[str, Any], reference: Mapping[str, Any], *, classwise: bool = False
) -> float | None:
    """SalUn's Avg. Gap: over (unlearn_acc, retain_acc, TA, mia_efficacy), TA = test_acc for
    random / index forgetting and test_remaining_acc for class-wise / sub-class forgetting (SalUn's
    code removes the forgotten class from its test set)."""
    return gap(model, reference, gap_salun_keys(classwise))


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


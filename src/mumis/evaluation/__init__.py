"""Evaluation of an unlearned model against the retrained reference (docs/evaluation.md).

- `keys`: the metric keys, groups and what each means; `gaps`: gap_paper, gap_salun, gap_recovery.
- `compute`: each split's logits once, then accuracies and attacks (`mumis.metrics`) from them;
  `rank`: the loss rank test of the forget set against unseen samples of its classes.
- `audits`: the recovery audits inside an evaluation; `report`: `EvaluationReport`.
- `format`: the Markdown report and the demo's comparison table; `pipeline`: `evaluate`.
"""

from .format import comparison_table
from .gaps import (
    gap,
    gap_paper,
    gap_paper_keys,
    gap_recovery,
    gap_recovery_keys,
    gap_salun,
    gap_salun_keys,
)
from .keys import (
    DEFAULT_METRICS,
    GAP_PAPER_CLASSWISE,
    GAP_PAPER_RANDOM,
    GAP_RECOVERY_CLASSWISE,
    GAP_RECOVERY_RANDOM,
    GAP_SALUN,
    GAP_SALUN_CLASSWISE,
    MEANING,
    METRIC_GROUPS,
    METRIC_KEYS,
    RECOVERY_ACCURACIES,
    RECOVERY_ORIENTATION,
)
from .pipeline import evaluate
from .report import EvaluationReport

__all__ = [
    "DEFAULT_METRICS", "GAP_PAPER_CLASSWISE", "GAP_PAPER_RANDOM", "GAP_RECOVERY_CLASSWISE",
    "GAP_RECOVERY_RANDOM", "GAP_SALUN", "GAP_SALUN_CLASSWISE", "MEANING", "METRIC_GROUPS", "METRIC_KEYS",
    "RECOVERY_ACCURACIES", "RECOVERY_ORIENTATION", "EvaluationReport", "comparison_table",
    "evaluate", "gap", "gap_paper", "gap_paper_keys", "gap_recovery", "gap_recovery_keys",
    "gap_salun", "gap_salun_keys",
]

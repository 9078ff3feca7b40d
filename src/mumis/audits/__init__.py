"""Membership audits of unlearned models against a *distribution* of retrained models.

- `epsilon`: the NeurIPS 2023 Machine Unlearning challenge's forgetting quality (per-example
  epsilon from threshold attacks, binned 2^-k) and its utility-adjusted final score.
- `lira`: a per-example likelihood-ratio audit (LiRA shadows, U-LiRA-style positives and
  negatives) with TPR at 1 % and 0.1 % FPR.
- `driver`: trains what both need and runs them; `rundir`: as a run directory (`mumis audit`);
  `settings`: what an audit runs on; `table`: the printed table; `page`: audit.html.
  docs/membership-audits.md.
"""

from .common import logit_scaled_confidence, model_confidences
from .driver import run_audit
from .epsilon import (
    EpsilonResult,
    bin_points,
    challenge_score,
    example_epsilon,
    example_epsilons,
    forget_quality,
    rule_epsilons,
)
from .lira import GaussianFit, fit_gaussians, lira_scores, roc_points, roc_summary, tpr_at_fpr, ulira
from .page import render_audit_page
from .rundir import audit_run
from .settings import AuditSettings, resolve_source
from .table import format_table

__all__ = [
    "AuditSettings", "EpsilonResult", "GaussianFit", "audit_run", "bin_points", "challenge_score",
    "example_epsilon", "example_epsilons", "fit_gaussians", "forget_quality",
    "format_table", "lira_scores", "logit_scaled_confidence", "model_confidences", "render_audit_page",
    "resolve_source", "roc_points", "roc_summary", "rule_epsilons", "run_audit", "tpr_at_fpr", "ulira",
]

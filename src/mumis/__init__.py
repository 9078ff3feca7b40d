"""mumis: machine unlearning by minimizing input sensitivity (MU-Mis), with baselines and an
honest evaluation against the retrained model.

    import mumis
    res = mumis.unlearn(model, (x_forget, y_forget), method="mumis")   # forget data only
    rep = mumis.evaluate(res.model, splits, reference=retrained)       # keys: docs/evaluation.md
"""

from ._version import __version__
from .api import UnlearnResult, get_method, list_methods, unlearn
from .evaluation import EvaluationReport, evaluate
from .receipts import receipt, verify

__all__ = [
    "EvaluationReport", "UnlearnResult", "__version__", "evaluate", "get_method", "list_methods", "receipt", "unlearn",
    "verify",
]

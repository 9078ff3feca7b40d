"""mumis: machine unlearning by minimizing input sensitivity (MU-Mis), with baselines and an
honest evaluation against the retrained model.

    import mumis
    res = mumis.unlearn(model, (x_forget, y_forget), method="mumis")   # forget data only
    rep = mumis.evaluate(res.model, splits, reference=retrained)       # keys: docs/evaluation.md
"""

__version__ = "0.1.0"

from .api import UnlearnResult, get_method, list_methods, unlearn  # noqa: E402
from .evaluation import EvaluationReport, evaluate  # noqa: E402
from .receipts import receipt, verify  # noqa: E402

__all__ = [
    "EvaluationReport", "UnlearnResult", "__version__", "evaluate", "get_method", "list_methods", "receipt", "unlearn",
    "verify",
]

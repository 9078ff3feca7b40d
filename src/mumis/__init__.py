"""mumis: machine unlearning by minimizing input sensitivity (MU-Mis), with baselines and an
honest evaluation against the retrained model.

    import mumis
    res = mumis.unlearn(model, (x_forget, y_forget), method="mumis")
    rep = mumis.evaluate(res.model, splits, reference=retrained)
"""

__version__ = "0.1.0"

from .api import UnlearnResult, get_method, list_methods, unlearn  # noqa: E402

__all__ = ["UnlearnResult", "__version__", "get_method", "list_methods", "unlearn"]

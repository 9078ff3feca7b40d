"""Unlearning methods: the base contract and one file per method."""

from . import mumis  # noqa: F401  (registers mumis, mumis_published, mumis_v1)
from . import ssd  # noqa: F401
from . import scrub  # noqa: F401
from . import salun  # noqa: F401
from . import bad_teacher  # noqa: F401
from . import retrain  # noqa: F401
from . import finetune  # noqa: F401
from . import grad_ascent  # noqa: F401
from . import neggrad_plus  # noqa: F401
from . import random_label  # noqa: F401
from . import l1_sparse  # noqa: F401
from . import boundary_shrink  # noqa: F401
from . import jit  # noqa: F401
from .base import METHODS, RunContext, RunOutput, UnlearningMethod, register_method
from .mumis import MuMis, MuMisPublished, MuMisV1

__all__ = [
    "METHODS", "MuMis", "MuMisPublished", "MuMisV1", "RunContext", "RunOutput",
    "UnlearningMethod", "register_method",
]

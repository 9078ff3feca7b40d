"""Unlearning methods: the base contract (`base`), the loop of the loss-based ones (`_loop`), and
one file per method, each imported here so that it registers."""

from . import (
    amun,  # noqa: F401  (registers amun, amun_retain)
    bad_teacher,  # noqa: F401
    boundary_shrink,  # noqa: F401
    finetune,  # noqa: F401
    grad_ascent,  # noqa: F401
    jit,  # noqa: F401
    l1_sparse,  # noqa: F401
    mumis,  # noqa: F401
    mumis_variants,  # noqa: F401  (mumis_published, mumis_v1)
    neggrad_plus,  # noqa: F401
    random_label,  # noqa: F401
    retrain,  # noqa: F401
    salun,  # noqa: F401
    scrub,  # noqa: F401
    ssd,  # noqa: F401
)
from ._loop import Batch, LoopState, LossMethod, Pass
from .base import METHODS, RunContext, RunOutput, UnlearningMethod, register_method
from .mumis import MuMis
from .mumis_variants import MuMisPublished, MuMisV1

__all__ = [
    "METHODS", "Batch", "LoopState", "LossMethod", "MuMis", "MuMisPublished", "MuMisV1", "Pass", "RunContext",
    "RunOutput", "UnlearningMethod", "register_method",
]

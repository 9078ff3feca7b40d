"""Unlearning methods: the base contract and one file per method."""

from . import (
    bad_teacher,  # noqa: F401
    boundary_shrink,  # noqa: F401
    finetune,  # noqa: F401
    grad_ascent,  # noqa: F401
    jit,  # noqa: F401
    l1_sparse,  # noqa: F401
    mumis,  # noqa: F401  (registers mumis, mumis_published, mumis_v1)
    neggrad_plus,  # noqa: F401
    random_label,  # noqa: F401
    retrain,  # noqa: F401
    salun,  # noqa: F401
    scrub,  # noqa: F401
    ssd,  # noqa: F401
)
from .base import METHODS, RunContext, RunOutput, UnlearningMethod, register_method
from .mumis import MuMis, MuMisPublished, MuMisV1

__all__ = [
    "METHODS", "MuMis", "MuMisPublished", "MuMisV1", "RunContext", "RunOutput",
    "UnlearningMethod", "register_method",
]

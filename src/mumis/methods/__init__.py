"""Unlearning methods: the base contract and one file per method."""

from . import mumis  # noqa: F401  (registers mumis, mumis_published, mumis_v1)
from .base import METHODS, RunContext, RunOutput, UnlearningMethod, register_method
from .mumis import MuMis, MuMisPublished, MuMisV1

__all__ = [
    "METHODS", "MuMis", "MuMisPublished", "MuMisV1", "RunContext", "RunOutput",
    "UnlearningMethod", "register_method",
]

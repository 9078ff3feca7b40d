"""The published MU-Mis and its first version, as registered variants of `MuMis` (methods/mumis.py).

Each is `MuMis` with other defaults (`config.redefault` keeps the field's help and range);
everything else, the objective and the loop, is `MuMis`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..config import redefault
from ._mumis_monitor import StopRule
from .base import register_method
from .mumis import MuMis, MuMisConfig


@dataclass
class MuMisPublishedConfig(MuMisConfig):
    """The published method as written: unbounded loss, random c', S' growth stopping rule."""

    lr: float = redefault(MuMisConfig, "lr", 1e-4, help="learning rate")
    normalise: bool = redefault(MuMisConfig, "normalise", False)
    update: Literal["last", "after_batchnorm", "all"] = redefault(MuMisConfig, "update", "all")
    batchnorm_filters: Literal["fixed_norm", "free"] = redefault(MuMisConfig, "batchnorm_filters", "free")
    irrelevant_cap: float | None = redefault(MuMisConfig, "irrelevant_cap", None,
                                             help="None: the published, unbounded irrelevant term")
    stop: StopRule = redefault(MuMisConfig, "stop", "published")


@register_method
class MuMisPublished(MuMis):
    """MU-Mis exactly as published (for comparison; see docs/mumis-study.md for its failure modes)."""

    name = "mumis_published"
    summary = "MU-Mis as published: unbounded objective, S'-based stopping rule"
    Config = MuMisPublishedConfig
    needs_holdout = "no"
    batchnorm_note = ("eval mode, as the paper states; every weight moves, so on BatchNorm networks a "
                      "re-estimation of the statistics can bring much of the forgotten class back (docs/mumis.md)")


@dataclass
class MuMisV1Config(MuMisPublishedConfig):
    """First version (2024): full-batch gradient descent, stop on the mean loss decrease."""

    batch_size: int = redefault(MuMisConfig, "batch_size", 0)
    stop: StopRule = redefault(MuMisConfig, "stop", "v1")


@register_method
class MuMisV1(MuMis):
    """MU-Mis, first version (2024): full batch, loss-decrease stopping rule."""

    name = "mumis_v1"
    summary = "MU-Mis first version: full batch, stop when the mean loss decrease reaches delta"
    Config = MuMisV1Config
    needs_holdout = "no"

"""Tiny deterministic fixtures for tests and examples: trained digits models and their splits."""

from __future__ import annotations

import copy
import functools

from torch import nn

from ..data import Splits, load_dataset, make_splits, resolve_manifest
from ..models import build_model
from ..training import make_train_config, train_model


@functools.lru_cache(maxsize=8)
def _trained_case(model: str, forget: str, seed: int) -> tuple[nn.Module, nn.Module, Splits]:
    bundle = load_dataset("digits")
    manifest = resolve_manifest(forget, bundle, seed=seed)
    splits = make_splits(bundle, manifest)
    mean, std = bundle.channel_stats()
    cfg = make_train_config("quick", dataset="digits", model=model)
    models = []
    for x, y in ((bundle.x_train, bundle.y_train), splits.retain):
        m = build_model(model, input_shape=bundle.input_shape, num_classes=10, mean=mean, std=std, seed=seed)
        train_model(m, x, y, cfg, seed=seed, device="cpu", progress=False)
        models.append(m.eval())
    return models[0], models[1], splits


def trained_digits_case(
    model: str = "mlp", forget: str = "class:3", seed: int = 0
) -> tuple[nn.Module, nn.Module, Splits]:
    """(original, retrained, splits) on digits with the quick recipe; copies of a cached case."""
    original, retrained, splits = _trained_case(model, forget, seed)
    return copy.deepcopy(original), copy.deepcopy(retrained), splits

"""The conformance suite's tiny cases and run helpers (see `mumis.testing.conformance`)."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..api import UnlearnResult, unlearn
from ..methods import METHODS, UnlearningMethod

#: Budget settings applied wherever a method's Config has the key (a run of a few steps).
GENERIC_FAST: dict[str, Any] = {
    "max_steps": 5, "monitor_every": 1, "monitor_samples": 16, "epochs": 1, "batch_size": 16,
}
#: Per-method extra fast settings (checked strictly: every key must be a valid setting).
FAST_SETTINGS: dict[str, dict[str, Any]] = {}
#: A fast run must take at most this long on the tiny case (generous: CPUs are shared).
TIME_LIMIT_S = 20.0


# --------------------------------------------------------------------------- the tiny case
@dataclass
class TinyCase:
    """A small MLP trained on 80 digits; forget = 40 of them, retain = the other 40."""

    model: nn.Module
    forget: tuple[torch.Tensor, torch.Tensor]
    retain: tuple[torch.Tensor, torch.Tensor]


@functools.lru_cache(maxsize=1)
def _tiny_case() -> TinyCase:
    from ..data import load_dataset
    from ..models import build_model

    bundle = load_dataset("digits")
    g = torch.Generator().manual_seed(0)
    idx = torch.randperm(len(bundle.y_train), generator=g)[:80]
    x, y = bundle.x_train[idx], bundle.y_train[idx]  # (80, 1, 8, 8), (80,)
    model = build_model("mlp", input_shape=bundle.input_shape, num_classes=10,
                        mean=[float(x.mean())], std=[float(x.std())], hidden=[32], seed=0)
    # Memorise the 80 samples, so that forgetting has something to undo and forget accuracy
    # does not stop the methods at step 0.
    _memorise(model, x, y)
    return TinyCase(model=model, forget=(x[:40], y[:40]), retain=(x[40:], y[40:]))


def _memorise(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    """Full-batch Adam in train mode (well under a second), then eval mode."""
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    model.train()
    for _ in range(60):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()


def tiny_case() -> TinyCase:
    """A deep copy of the cached tiny case (checks may change it freely)."""
    return copy.deepcopy(_tiny_case())


@functools.lru_cache(maxsize=1)
def _tiny_bn_case() -> TinyCase:
    """The tiny case's data with a BatchNorm MLP (trained in train mode, so its running
    statistics are real ones), for the BatchNorm mode declarations."""
    case = _tiny_case()
    x, y = torch.cat([case.forget[0], case.retain[0]]), torch.cat([case.forget[1], case.retain[1]])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Flatten(), nn.Linear(x[0].numel(), 32), nn.BatchNorm1d(32),
                              nn.ReLU(), nn.Linear(32, 10))
    _memorise(model, x, y)
    return TinyCase(model=model, forget=case.forget, retain=case.retain)


# --------------------------------------------------------------------------- helpers
def fast_settings(name: str) -> dict[str, Any]:
    """Settings for a run of a few steps: generic budget keys the Config has, then per-method ones."""
    cls = METHODS.get(name)
    valid = {f.name for f in dataclasses.fields(cls.Config)}
    out = {k: v for k, v in GENERIC_FAST.items() if k in valid}
    out.update(FAST_SETTINGS.get(name, {}))
    out.update(cls.fast_settings())  # the method's declared fast settings (base class: none)
    return out


def _fail(msg: str) -> None:
    raise AssertionError(msg)


def _run(name: str, case: TinyCase, **kw: Any) -> UnlearnResult:
    """One fast CPU run on `case` (retain passed only to methods that declare they need it)."""
    cls = METHODS.get(name)
    kw.setdefault("retain", case.retain if cls.requires_retain else None)
    kw.setdefault("device", "cpu")
    return unlearn(case.model, case.forget, method=name, **{**fast_settings(name), **kw})


def _weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _snapshot(model: nn.Module) -> dict[str, Any]:
    """Everything `unlearn` must leave as it found it on the caller's model."""
    return {
        "modes": [m.training for m in model.modules()],
        "flags": [p.requires_grad for p in model.parameters()],
        "hooks": [(len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks))
                  for m in model.modules()],
    }


def _same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _odd_state(model: nn.Module) -> None:
    """Put the caller's model in a state a careless method would disturb: train mode with one
    sub-module in eval mode, and one frozen parameter."""
    model.train()
    children = list(model.modules())
    children[-1].eval()
    list(model.parameters())[0].requires_grad_(False)


@contextlib.contextmanager
def _patched(cls: type, attr: str, value: Any) -> Iterator[None]:
    """Set a class attribute for the block; restore (or remove) it afterwards."""
    had = attr in cls.__dict__
    old = cls.__dict__.get(attr)
    setattr(cls, attr, value)
    try:
        yield
    finally:
        if had:
            setattr(cls, attr, old)
        else:
            delattr(cls, attr)


@contextlib.contextmanager
def registered(cls: type[UnlearningMethod]) -> Iterator[type[UnlearningMethod]]:
    """Register a method for the block only (test helper for dummy methods)."""
    from ..methods import register_method

    register_method(cls)
    try:
        yield cls
    finally:
        # The registry has no public removal (registrations are meant to be permanent).
        METHODS._items.pop(cls.name, None)

"""Conformance checks every registered unlearning method must pass (scikit-learn's
`parametrize_with_checks`, for `mumis.methods`).

Each check is a function `check(name)` that runs the method through the front door
(`mumis.unlearn`) on a tiny trained model and raises AssertionError on a violation of the
method contract (README, "Unlearning"): strict settings, declared data needs, the caller's model left untouched
(or changed in place only when asked, with modes restored even on error), determinism under a
seed, no use of the global RNG, finite weights, a history, timing and a stop reason.

In a test file:

    from mumis.testing.conformance import parametrize_with_checks

    @parametrize_with_checks()
    def test_conformance(method, check):
        check(method)

Runs use `fast_settings(name)`: generic budget keys (`max_steps=5`, ...) kept only where the
method's Config has them, then `FAST_SETTINGS[name]`, then the class's `fast_settings()`
classmethod if it defines one.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import yaml
from torch import nn

from ..api import UnlearnResult, unlearn
from ..config import build_config, config_to_dict
from ..exceptions import ConfigError
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
    own = getattr(cls, "fast_settings", None)
    if callable(own):
        out.update(own())
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


# --------------------------------------------------------------------------- the checks
def check_declaration(name: str) -> None:
    """Name, paper, summary, a dataclass Config with defaults and help for every setting."""
    cls = METHODS.get(name)
    if cls.name != name:
        _fail(f"{name}: registered under {name!r} but its name attribute is {cls.name!r}")
    for attr in ("paper", "summary"):
        if not getattr(cls, attr):
            _fail(f"{name}: class attribute {attr!r} is empty; every method cites its paper and says what it does")
    if not dataclasses.is_dataclass(getattr(cls, "Config", None)):
        _fail(f"{name}: Config must be a dataclass of the method's settings")
    try:
        cls()
    except Exception as e:  # noqa: BLE001
        _fail(f"{name}: the default settings do not build ({type(e).__name__}: {e})")
    if cls.defaults() != config_to_dict(cls.Config()):
        _fail(f"{name}: defaults() disagrees with Config()")
    missing = [k for k, v in cls.setting_docs().items() if not v]
    if missing:
        _fail(f"{name}: settings without help text (field(metadata={{'help': ...}})): {', '.join(missing)}")
    for k in FAST_SETTINGS.get(name, {}):
        if k not in cls.defaults():
            _fail(f"{name}: FAST_SETTINGS key {k!r} is not a setting of the method")


def check_strict_config(name: str) -> None:
    """An unknown setting is a ConfigError naming the valid ones, at construction and via unlearn."""
    cls = METHODS.get(name)
    valid = list(cls.defaults())
    for attempt in (lambda: cls(not_a_setting=1),
                    lambda: _run(name, tiny_case(), not_a_setting=1)):
        try:
            attempt()
        except ConfigError as e:
            msg = str(e)
            if "not_a_setting" not in msg or not all(k in msg for k in valid):
                _fail(f"{name}: the error for an unknown setting must name it and list the valid ones; got: {msg}")
        else:
            _fail(f"{name}: an unknown setting was accepted silently")


def check_config_roundtrip(name: str) -> None:
    """The resolved config is plain YAML/JSON data that builds the same Config again."""
    cls = METHODS.get(name)
    res = _run(name, tiny_case())
    text = yaml.safe_dump(res.config)
    json.dumps(res.config)
    again: Any = build_config(cls.Config, yaml.safe_load(text), what=name)
    if config_to_dict(again) != res.config:
        _fail(f"{name}: the resolved config does not survive a YAML round trip")
    for k, v in fast_settings(name).items():
        if res.config[k] != (list(v) if isinstance(v, tuple) else v):
            _fail(f"{name}: setting {k}={v!r} was given but the resolved config has {res.config[k]!r}")


def check_data_needs(name: str) -> None:
    """Retain data is refused by forget-only methods and required by methods that declare it."""
    cls = METHODS.get(name)
    case = tiny_case()
    wrong = None if cls.requires_retain else case.retain
    try:
        _run(name, case, retain=wrong)
    except ConfigError as e:
        if "retain" not in str(e):
            _fail(f"{name}: the data-needs error should mention retain data; got: {e}")
    else:
        what = "ran without retain data" if cls.requires_retain else "accepted retain data"
        _fail(f"{name}: {what}, against its declaration requires_retain={cls.requires_retain}")


def check_caller_model_untouched(name: str) -> None:
    """Weights, buffers, modes, requires_grad flags, hooks and data of the caller stay as they were;
    the returned model is a different object."""
    case = tiny_case()
    _odd_state(case.model)
    before, state = _weights(case.model), _snapshot(case.model)
    data = [t.clone() for t in (*case.forget, *case.retain)]
    res = _run(name, case)
    if res.model is case.model:
        _fail(f"{name}: returned the caller's model object although inplace=False")
    if not _same_weights(before, _weights(case.model)):
        _fail(f"{name}: changed the caller's weights although inplace=False")
    if _snapshot(case.model) != state:
        _fail(f"{name}: changed the caller's train/eval modes, requires_grad flags or hooks")
    if not all(torch.equal(a, b) for a, b in zip(data, (*case.forget, *case.retain), strict=True)):
        _fail(f"{name}: changed the caller's data tensors")
    if _snapshot(res.model)["modes"] != state["modes"]:
        _fail(f"{name}: the returned model's train/eval modes differ from the caller's")


def check_inplace(name: str) -> None:
    """inplace=True returns the caller's object, changed, with modes and flags restored."""
    case = tiny_case()
    _odd_state(case.model)
    state = _snapshot(case.model)
    res = _run(name, case, inplace=True)
    if res.model is not case.model:
        _fail(f"{name}: inplace=True must return the caller's model object")
    if _snapshot(case.model) != state:
        _fail(f"{name}: inplace=True left the model's modes, requires_grad flags or hooks changed")


def check_state_restored_on_error(name: str) -> None:
    """A run that fails mid-way (after changing weights, modes and flags) restores modes and flags
    of an inplace model, and leaves a non-inplace caller's model wholly untouched."""
    cls = METHODS.get(name)

    class Boom(RuntimeError):
        pass

    def failing_run(self: UnlearningMethod, model: nn.Module, ctx: Any) -> Any:
        model.train()
        with torch.no_grad():
            for p in model.parameters():
                p.add_(1.0)
                p.requires_grad_(not p.requires_grad)
        raise Boom("mid-run failure")

    with _patched(cls, "run", failing_run):
        for inplace in (True, False):
            case = tiny_case()
            _odd_state(case.model)
            before, state = _weights(case.model), _snapshot(case.model)
            try:
                _run(name, case, inplace=inplace)
            except Boom:
                pass
            else:
                _fail(f"{name}: the error raised inside run() was swallowed")
            if _snapshot(case.model) != state:
                _fail(f"{name}: after an error (inplace={inplace}) the model's modes, requires_grad "
                      "flags or hooks were not restored")
            if not inplace and not _same_weights(before, _weights(case.model)):
                _fail(f"{name}: after an error the caller's weights changed although inplace=False")


def check_deterministic(name: str) -> None:
    """Two CPU runs with the same seed give bitwise identical weights and the same history length."""
    a, b = _run(name, tiny_case(), seed=3), _run(name, tiny_case(), seed=3)
    if not _same_weights(_weights(a.model), _weights(b.model)):
        _fail(f"{name}: two runs with seed=3 gave different weights; use ctx.generator for every random choice")
    if (a.steps, a.stop_reason, len(a.history)) != (b.steps, b.stop_reason, len(b.history)):
        _fail(f"{name}: two runs with seed=3 took different paths ({a.steps} vs {b.steps} steps)")


def check_global_rng_untouched(name: str) -> None:
    """The method draws from its seeded generator, never from (or into) torch's global RNG."""
    case = tiny_case()  # built first: the tiny case itself may seed torch while training
    state = torch.random.get_rng_state()
    try:
        _run(name, case)
        if not torch.equal(state, torch.random.get_rng_state()):
            _fail(f"{name}: used torch's global RNG; draw from ctx.generator instead")
    finally:
        torch.random.set_rng_state(state)


def check_finite_and_changed(name: str) -> None:
    """After a run every weight is finite; a run that took steps changed the weights."""
    case = tiny_case()
    before = _weights(case.model)
    res = _run(name, case)
    bad = [k for k, v in res.model.state_dict().items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        _fail(f"{name}: non-finite values in {', '.join(bad)} after a run")
    if res.steps > 0 and _same_weights(before, _weights(res.model)):
        _fail(f"{name}: reports {res.steps} steps but the weights did not change")


def check_history(name: str) -> None:
    """History is a list of JSON-safe dicts, each with an integer `step`, in order."""
    res = _run(name, tiny_case())
    if not isinstance(res.history, list) or not res.history:
        _fail(f"{name}: history must be a non-empty list of dicts (at least the starting state)")
    steps = []
    for row in res.history:
        if not isinstance(row, dict) or not isinstance(row.get("step"), int):
            _fail(f"{name}: every history row must be a dict with an integer 'step'; got {row!r}")
        steps.append(row["step"])
        json.dumps(row)
    if steps != sorted(steps):
        _fail(f"{name}: history steps are not in order: {steps}")


def check_result_fields(name: str) -> None:
    """time_s > 0, integer steps within the budget, a non-empty stop reason, the method name."""
    res = _run(name, tiny_case())
    if not (isinstance(res.time_s, float) and res.time_s > 0 and math.isfinite(res.time_s)):
        _fail(f"{name}: time_s must be a positive number of seconds; got {res.time_s!r}")
    if not isinstance(res.steps, int) or res.steps < 0:
        _fail(f"{name}: steps must be a non-negative integer; got {res.steps!r}")
    budget = res.config.get("max_steps")
    if isinstance(budget, int) and res.steps > budget:
        _fail(f"{name}: took {res.steps} steps with max_steps={budget}")
    if not isinstance(res.stop_reason, str) or not res.stop_reason.strip():
        _fail(f"{name}: stop_reason must say why the run stopped")
    if res.method != name:
        _fail(f"{name}: result.method is {res.method!r}")


def check_fast_on_tiny_data(name: str) -> None:
    """With the fast settings a run on 40 samples finishes well within TIME_LIMIT_S."""
    t0 = time.perf_counter()
    _run(name, tiny_case())
    took = time.perf_counter() - t0
    if took > TIME_LIMIT_S:
        _fail(f"{name}: a fast run on the tiny case took {took:.1f} s (> {TIME_LIMIT_S:g} s); "
              "add budget keys to FAST_SETTINGS or a fast_settings() classmethod")


def check_batchnorm_mode(name: str) -> None:
    """`batchnorm_mode` is a key of BATCHNORM_MODES and tells the truth on a BatchNorm model:
    the running statistics change iff the mode is not "eval"."""
    from ..methods.base import BATCHNORM_MODES

    cls = METHODS.get(name)
    mode = cls.batchnorm_mode
    if mode not in BATCHNORM_MODES:
        _fail(f"{name}: batchnorm_mode {mode!r} is not one of {', '.join(BATCHNORM_MODES)}")
    case = copy.deepcopy(_tiny_bn_case())
    before = {k: v.clone() for k, v in case.model.state_dict().items() if "running_" in k}
    after = _run(name, case).model.state_dict()
    changed = not all(torch.equal(v, after[k]) for k, v in before.items())
    if changed != (mode != "eval"):
        did = "changed" if changed else "left"
        _fail(f"{name}: declares batchnorm_mode {mode!r} but {did} the BatchNorm running "
              "statistics" + ("" if changed else " unchanged"))


#: Every check, in the order they run. Add new checks here; every method gets them.
CHECKS: list[Callable[[str], None]] = [
    check_declaration, check_strict_config, check_config_roundtrip, check_data_needs,
    check_caller_model_untouched, check_inplace, check_state_restored_on_error,
    check_deterministic, check_global_rng_untouched, check_finite_and_changed, check_history,
    check_result_fields, check_fast_on_tiny_data, check_batchnorm_mode,
]


def method_checks(names: list[str] | None = None) -> Iterator[tuple[str, Callable[[str], None]]]:
    """(method name, check) for every registered method (or `names`) and every check."""
    for name in names if names is not None else METHODS.names():
        for check in CHECKS:
            yield name, check


def check_method(name: str) -> None:
    """Run every check on one method (raises AssertionError at the first violation)."""
    for _, check in method_checks([name]):
        check(name)


def parametrize_with_checks(names: list[str] | None = None) -> Any:
    """A `pytest.mark.parametrize("method, check", ...)` over every method and check."""
    import pytest

    pairs = list(method_checks(names))
    ids = [f"{n}-{c.__name__.removeprefix('check_')}" for n, c in pairs]
    return pytest.mark.parametrize("method, check", pairs, ids=ids)


__all__ = [
    "CHECKS", "FAST_SETTINGS", "GENERIC_FAST", "TIME_LIMIT_S", "TinyCase", "check_method",
    "fast_settings", "method_checks", "parametrize_with_checks", "registered", "tiny_case",
    *[c.__name__ for c in CHECKS],
]

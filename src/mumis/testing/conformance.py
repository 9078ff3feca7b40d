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
method's Config has them, then `FAST_SETTINGS[name]`, then the class's declared
`fast_settings()`. What a method declares chooses extra checks (`APPLIES`):
`supports_distributed` a loss that shards across torchrun ranks, `needs_double_backward` a
model with in-place activations; every method gets every declared setting range tested.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import json
import math
import pkgutil
import time
import types
from collections.abc import Callable, Iterator
from typing import Any

import torch
import yaml
from torch import nn

from ..config import build_config, config_to_dict
from ..exceptions import ConfigError
from ..methods import METHODS, UnlearningMethod
from ._cases import (
    FAST_SETTINGS,
    GENERIC_FAST,
    TIME_LIMIT_S,
    TinyCase,
    _fail,
    _odd_state,
    _patched,
    _run,
    _same_weights,
    _snapshot,
    _tiny_bn_case,
    _weights,
    fast_settings,
    registered,
    tiny_case,
)
from .capability_checks import check_config_constraints, check_double_backward_model, check_shardable_loss


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


#: Every check, in the order they run. Add new checks here; every method gets them, except
#: those APPLIES limits to methods with a declared capability.
CHECKS: list[Callable[[str], None]] = [
    check_declaration, check_strict_config, check_config_constraints, check_config_roundtrip,
    check_data_needs, check_caller_model_untouched, check_inplace, check_state_restored_on_error,
    check_deterministic, check_global_rng_untouched, check_finite_and_changed, check_history,
    check_result_fields, check_fast_on_tiny_data, check_batchnorm_mode, check_shardable_loss,
    check_double_backward_model,
]

#: Checks that run only on methods declaring a capability (scikit-learn's estimator tags).
APPLIES: dict[Callable[[str], None], Callable[[type[UnlearningMethod]], bool]] = {
    check_shardable_loss: lambda cls: cls.supports_distributed,
    check_double_backward_model: lambda cls: cls.needs_double_backward,
}


def method_checks(names: list[str] | None = None) -> Iterator[tuple[str, Callable[[str], None]]]:
    """(method name, check) for every registered method (or `names`) and every check that
    applies to it (see APPLIES)."""
    for name in names if names is not None else METHODS.names():
        cls = METHODS.get(name)
        for check in CHECKS:
            if APPLIES.get(check, lambda _: True)(cls):
                yield name, check


def method_module_problems(package: types.ModuleType | None = None) -> list[str]:
    """What keeps a method file of `package` (default `mumis.methods`) out of the registry:
    a module the package's `__init__` does not import, or one that registers no method of its
    own (private `_modules` and `base` hold shared machinery and are skipped)."""
    import mumis.methods

    pkg = package or mumis.methods
    registered_classes = {cls for _, cls in METHODS.items()}
    problems = []
    for info in pkgutil.iter_modules(pkg.__path__):
        mod_name = info.name
        if mod_name.startswith("_") or mod_name == "base":
            continue
        if not isinstance(vars(pkg).get(mod_name), types.ModuleType):
            problems.append(f"{pkg.__name__}.{mod_name} is not imported by {pkg.__name__}/__init__.py, so its "
                            "methods are never registered (nor tested)")
            continue
        module = importlib.import_module(f"{pkg.__name__}.{mod_name}")
        own = [c for c in vars(module).values() if isinstance(c, type) and c.__module__ == module.__name__]
        if not any(c in registered_classes for c in own):
            problems.append(f"{module.__name__} registers no method; decorate its class with @register_method")
    return problems


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
    "APPLIES", "CHECKS", "FAST_SETTINGS", "GENERIC_FAST", "TIME_LIMIT_S", "TinyCase", "check_method",
    "fast_settings", "method_checks", "method_module_problems", "parametrize_with_checks", "registered", "tiny_case",
    *[c.__name__ for c in CHECKS],
]

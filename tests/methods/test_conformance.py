"""Every registered method passes the conformance suite; the suite itself catches bad methods;
every method has a YAML preset that builds its Config strictly."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from torch import nn

import mumis
from mumis.config import build_config
from mumis.exceptions import ConfigError
from mumis.methods import METHODS, RunContext, RunOutput, UnlearningMethod
from mumis.testing import conformance as conf
from mumis.testing.conformance import parametrize_with_checks, registered, tiny_case

PRESETS = Path(__file__).resolve().parents[2] / "configs" / "methods"


@parametrize_with_checks()
def test_conformance(method: str, check) -> None:  # noqa: ANN001
    check(method)


# --------------------------------------------------------------------------- dummy methods
@dataclass
class _DummyConfig:
    lr: float = field(default=0.01, metadata={"help": "learning rate"})
    max_steps: int = field(default=100, metadata={"help": "steps"})


class _NeedsRetain(UnlearningMethod):
    """Gradient descent on retain minus ascent on forget: a small, well-behaved method."""

    name = "_test_needs_retain"
    paper = "none (test double)"
    summary = "retain descent, forget ascent"
    Config = _DummyConfig
    requires_retain = True

    def run(self, model: nn.Module, ctx: RunContext) -> RunOutput:
        if ctx.retain is None:  # the front door must never let this happen
            raise RuntimeError("no retain data")
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.SGD(params, lr=self.config.lr)
        (fx, fy), (rx, ry) = ctx.forget, ctx.retain
        history = [{"step": 0}]
        for step in range(1, self.config.max_steps + 1):
            idx = torch.randint(len(ry), (8,), generator=ctx.generator)
            loss = nn.functional.cross_entropy(model(rx[idx]), ry[idx]) - nn.functional.cross_entropy(model(fx), fy)
            opt.zero_grad()
            loss.backward()
            opt.step()
            history.append({"step": step, "loss": float(loss.detach())})
        return RunOutput(steps=self.config.max_steps, stop_reason="max_steps reached", history=history)


class _ForgetOnly(_NeedsRetain):
    name = "_test_forget_only"
    requires_retain = False

    def run(self, model: nn.Module, ctx: RunContext) -> RunOutput:
        if ctx.retain is not None:
            raise RuntimeError("a forget-only method was handed retain data")
        return RunOutput(steps=0, stop_reason="nothing to do", history=[{"step": 0}])


class _UsesGlobalRng(_ForgetOnly):
    name = "_test_global_rng"

    def run(self, model: nn.Module, ctx: RunContext) -> RunOutput:
        with torch.no_grad():
            for p in model.parameters():
                p.add_(1e-3 * torch.randn(p.shape))  # global RNG: not reproducible under seed=
        return RunOutput(steps=1, stop_reason="one noisy step", history=[{"step": 0}, {"step": 1}])


class _NoStopReason(_ForgetOnly):
    name = "_test_no_stop_reason"

    def run(self, model: nn.Module, ctx: RunContext) -> RunOutput:
        return RunOutput(steps=0, stop_reason="", history=[{"step": 0}])


class _NoHelp(_ForgetOnly):
    name = "_test_no_help"

    @dataclass
    class Config:
        lr: float = 0.1


def test_requires_retain_enforced_by_front_door() -> None:
    case = tiny_case()
    with registered(_NeedsRetain):
        with pytest.raises(ConfigError, match="needs remaining data"):
            mumis.unlearn(case.model, case.forget, method=_NeedsRetain.name, max_steps=2)
        res = mumis.unlearn(case.model, case.forget, method=_NeedsRetain.name, retain=case.retain,
                            max_steps=2, device="cpu")
        assert res.steps == 2
    assert _NeedsRetain.name not in METHODS  # removed again


def test_forget_only_method_refuses_retain() -> None:
    case = tiny_case()
    with registered(_ForgetOnly):
        with pytest.raises(ConfigError, match="remaining-data-free"):
            mumis.unlearn(case.model, case.forget, method=_ForgetOnly.name, retain=case.retain)
    assert _ForgetOnly.name not in METHODS


def test_suite_passes_a_retain_method() -> None:
    """The checks handle methods that need retain data (they pass it), not only MU-Mis."""
    with registered(_NeedsRetain):
        conf.check_method(_NeedsRetain.name)


@pytest.mark.parametrize("cls, check, match", [
    (_UsesGlobalRng, conf.check_global_rng_untouched, "global RNG"),
    (_UsesGlobalRng, conf.check_deterministic, "different weights"),
    (_NoStopReason, conf.check_result_fields, "stop_reason"),
    (_NoHelp, conf.check_declaration, "without help text"),
])
def test_suite_catches_bad_methods(cls: type[UnlearningMethod], check, match: str) -> None:  # noqa: ANN001
    with registered(cls), pytest.raises(AssertionError, match=match):
        check(cls.name)


def test_registered_removes_on_error() -> None:
    with pytest.raises(RuntimeError), registered(_ForgetOnly):
        raise RuntimeError("boom")
    assert _ForgetOnly.name not in METHODS


def test_patched_run_is_restored() -> None:
    """check_state_restored_on_error patches `run` on the class; it must be put back."""
    for name in METHODS.names():
        cls = METHODS.get(name)
        before = dict(cls.__dict__)
        conf.check_state_restored_on_error(name)
        assert ("run" in cls.__dict__) == ("run" in before)
        assert cls.__dict__.get("run") is before.get("run")


@pytest.mark.parametrize("name", METHODS.names())
def test_fast_settings_are_valid_and_small(name: str) -> None:
    cls = METHODS.get(name)
    fast = conf.fast_settings(name)
    valid = {f.name for f in dataclasses.fields(cls.Config)}
    assert set(fast) <= valid
    build_config(cls.Config, fast)  # strict: a drifted key would raise here
    if "max_steps" in valid:
        assert fast["max_steps"] <= 10


def test_fast_settings_classmethod_wins() -> None:
    class _Own(_ForgetOnly):
        name = "_test_own_fast"

        @classmethod
        def fast_settings(cls) -> dict:
            return {"max_steps": 2}

    with registered(_Own):
        assert conf.fast_settings(_Own.name) == {"max_steps": 2}


# --------------------------------------------------------------------------- YAML presets
@pytest.mark.parametrize("name", METHODS.names())
def test_every_method_has_a_preset(name: str) -> None:
    path = PRESETS / f"{name}.yaml"
    assert path.is_file(), (
        f"no preset for method {name!r}; create it with `mumis methods {name} --yaml > configs/methods/{name}.yaml`"
    )


@pytest.mark.parametrize("path", sorted(PRESETS.glob("*.yaml")), ids=lambda p: p.stem)
def test_preset_builds_its_config_strictly(path: Path) -> None:
    from mumis.cli.unlearn import load_method_file, resolve_method_settings

    method, settings = load_method_file(path)
    assert method == path.stem, f"{path.name} names method {method!r}; the file name must be the method name"
    cls = METHODS.get(method)
    valid = [f.name for f in dataclasses.fields(cls.Config)]
    # Every setting present (so new settings reach the presets) and nothing else.
    assert sorted(settings) == sorted(valid), (
        f"{path.name} drifted from {cls.__name__}.Config: missing {sorted(set(valid) - set(settings))}, "
        f"unknown {sorted(set(settings) - set(valid))}; regenerate with `mumis methods {method} --yaml`"
    )
    build_config(cls.Config, settings, what=f"preset {path.name}")
    assert resolve_method_settings(None, path, {})[0] == method

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
from mumis.methods._loop import Batch, LossMethod
from mumis.methods.finetune import FinetuneConfig
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


# --------------------------------------------------------------------------- registration
def test_every_method_module_is_imported_and_registers() -> None:
    assert conf.method_module_problems() == []


def test_a_forgotten_registration_or_import_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "fake_methods"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from . import forgot_decorator  # noqa: F401\n")
    (pkg / "forgot_decorator.py").write_text(
        "from mumis.methods import UnlearningMethod\n\nclass Forgot(UnlearningMethod):\n    name = 'forgot'\n")
    (pkg / "forgot_import.py").write_text("X = 1\n")
    (pkg / "_private.py").write_text("X = 2\n")  # shared machinery: skipped
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    problems = conf.method_module_problems(importlib.import_module("fake_methods"))
    assert len(problems) == 2
    assert "fake_methods.forgot_decorator registers no method" in problems[0]
    assert "fake_methods.forgot_import is not imported by fake_methods/__init__.py" in problems[1]


# --------------------------------------------------------------------------- capabilities choose checks
def test_capabilities_choose_the_checks() -> None:
    def checks(name: str) -> set[str]:
        return {c.__name__ for _, c in conf.method_checks([name])}

    assert {"check_shardable_loss", "check_double_backward_model"} <= checks("mumis")
    assert "check_shardable_loss" in checks("finetune") and "check_double_backward_model" not in checks("finetune")
    assert not {"check_shardable_loss", "check_double_backward_model"} & checks("ssd")
    assert "check_config_constraints" in checks("ssd")


class _SumLoss(LossMethod):
    """A loss summed (not averaged) over the batch: its torchrun ranks would not add up."""

    name = "_test_sum_loss"
    paper = "none (test double)"
    summary = "sum of the forget cross-entropy"
    Config = FinetuneConfig

    def compute_loss(self, model: nn.Module, batch: Batch, ctx: RunContext) -> torch.Tensor:
        return nn.functional.cross_entropy(model(self.x[batch.idx]), self.y[batch.idx], reduction="sum")


class _PartNoise(_SumLoss):
    """Draws its noise for this rank's part, not the global batch: ranks draw differently."""

    name = "_test_part_noise"

    def compute_loss(self, model: nn.Module, batch: Batch, ctx: RunContext) -> torch.Tensor:
        x = self.x[batch.idx]
        x = x + torch.randn(x.shape, generator=ctx.generator)
        return nn.functional.cross_entropy(model(x), self.y[batch.idx])


class _Unchecked(_ForgetOnly):
    """Builds its config without `build_config`, so declared ranges are never checked."""

    name = "_test_unchecked"
    Config = FinetuneConfig

    def __init__(self, **config: object) -> None:
        self.config = FinetuneConfig(**config)  # type: ignore[arg-type]


class _NotOnTheLoop(_ForgetOnly):
    name = "_test_not_on_loop"
    supports_distributed = True


@pytest.mark.parametrize("cls, check, match", [
    (_SumLoss, conf.check_shardable_loss, "not a mean over the batch"),
    (_PartNoise, conf.check_shardable_loss, "not a mean over the batch"),
    (_NotOnTheLoop, conf.check_shardable_loss, "does not derive from LossMethod"),
    (_Unchecked, conf.check_config_constraints, "accepted epochs=0"),
])
def test_capability_checks_catch_bad_methods(cls: type[UnlearningMethod], check, match: str) -> None:  # noqa: ANN001
    with registered(cls), pytest.raises(AssertionError, match=match):
        check(cls.name)


def test_a_mean_loss_passes_the_shard_check() -> None:
    class _MeanLoss(_SumLoss):
        name = "_test_mean_loss"

        def compute_loss(self, model: nn.Module, batch: Batch, ctx: RunContext) -> torch.Tensor:
            return nn.functional.cross_entropy(model(self.x[batch.idx]), self.y[batch.idx])

    with registered(_MeanLoss):
        conf.check_shardable_loss(_MeanLoss.name)


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

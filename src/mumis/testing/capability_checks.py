"""Conformance checks chosen by what a method declares (as scikit-learn's estimator tags choose
its common checks): the declared setting ranges, a loss that shards for torchrun
(`supports_distributed`), a model with in-place activations (`needs_double_backward`).
`conformance.APPLIES` says which declaration selects which check.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Literal, get_args, get_origin

import torch
from torch import nn

from ..config import field_range
from ..exceptions import ConfigError
from ..methods import METHODS, RunContext
from ..methods._loop import Batch, LossMethod
from ..utils import make_generator
from ._cases import _fail, _memorise, _run, fast_settings, tiny_case


def bad_values(config: type) -> list[tuple[str, Any]]:
    """(setting, a value it must refuse) for every setting of a Config: just outside its
    declared range, an unknown option, or a value of the wrong kind."""
    hints = typing.get_type_hints(config)
    out: list[tuple[str, Any]] = []
    for f in dataclasses.fields(config):
        tp, r = hints[f.name], field_range(f)
        inner = [a for a in get_args(tp) if a is not type(None)] or [tp]
        if r is not None:
            value = r.outside()
            out.append((f.name, int(value) if inner[0] is int else value))
        elif get_origin(tp) is Literal:
            out.append((f.name, "not-an-option"))
        elif inner[0] in (bool, int, float) or get_origin(tp) in (tuple, list):
            out.append((f.name, "not-a-number"))
    return out


def check_config_constraints(name: str) -> None:
    """Every setting fed a bad value is one clear ConfigError naming it (at construction)."""
    cls = METHODS.get(name)
    for key, value in bad_values(cls.Config):
        try:
            cls(**{key: value})
        except ConfigError as e:
            msg = str(e)
            if key not in msg or "\n" in msg:
                _fail(f"{name}: the error for {key}={value!r} must be one line naming the setting; got: {msg}")
        else:
            _fail(f"{name}: accepted {key}={value!r}; declare the setting's range with config.setting(...)")


def _first_batch_loss(name: str, part: slice, share: float) -> torch.Tensor:
    """What one rank computes for the first batch of epoch 0: a fresh run (as each rank has its
    own), the fixed global batch `full`, and only `part` of it, weighted by `share`."""
    cls = METHODS.get(name)
    case = tiny_case()
    method: Any = cls(**fast_settings(name))
    ctx = RunContext(forget=case.forget, retain=case.retain if cls.requires_retain else None, num_classes=10,
                     generator=make_generator(0), device=torch.device("cpu"))
    method.prepare(case.model, ctx)
    opt = method.make_optimizer(method.parameters_to_update(case.model, ctx))
    method.on_epoch_start(0, opt, ctx)
    walk = method.passes(0)[0]
    full = torch.randperm(walk.n, generator=torch.Generator().manual_seed(1))[:7]
    with method.loop_mode(case.model):
        return walk.loss(case.model, Batch(full, part, 0), ctx).detach() * share


def check_shardable_loss(name: str) -> None:
    """supports_distributed: the method runs on the base loop, and its batch loss split in two
    parts (each computed as a rank would, weighted by its share) sums to the whole batch's,
    which is what makes N torchrun processes take one process's steps."""
    cls = METHODS.get(name)
    if not issubclass(cls, LossMethod):
        _fail(f"{name}: declares supports_distributed but does not derive from LossMethod, whose loop "
              "does the torchrun reduction")
    whole = _first_batch_loss(name, slice(None), 1.0)
    parts = _first_batch_loss(name, slice(0, 3), 3 / 7) + _first_batch_loss(name, slice(3, 7), 4 / 7)
    if not torch.allclose(whole, parts, rtol=1e-4, atol=1e-6):
        _fail(f"{name}: the batch loss is not a mean over the batch ({float(whole):.6g} whole vs "
              f"{float(parts):.6g} from two weighted parts); under torchrun the ranks would differ from one "
              "process (draw random numbers for batch.full, then take batch.part)")


def check_double_backward_model(name: str) -> None:
    """needs_double_backward: a model with in-place activations runs, and gets them back."""
    case = tiny_case()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(inplace=True), nn.Linear(32, 10))
    _memorise(model, torch.cat([case.forget[0], case.retain[0]]), torch.cat([case.forget[1], case.retain[1]]))
    case.model = model
    res = _run(name, case)
    if not all(m.inplace for m in res.model.modules() if isinstance(m, nn.ReLU)):
        _fail(f"{name}: the returned model lost its in-place activations")
    if not res.extra.get("inplace_converted"):
        _fail(f"{name}: result.extra['inplace_converted'] does not name the switched module")

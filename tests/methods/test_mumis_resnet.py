"""MU-Mis on normalised networks (issue 12): forgetting that survives a BatchNorm re-estimation,
defaults that do not depend on the scale of the input sensitivities, the resnet18 `norm` option
and the BatchNorm helpers."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import mumis
from mumis.data import load_dataset, make_splits, resolve_manifest
from mumis.exceptions import ModelError
from mumis.functional.batchnorm import (
    FilterNorms,
    last_layer_parameters,
    layers_feeding_batchnorm,
    parameters_after_batchnorm,
)
from mumis.metrics.recovery import reestimate_batchnorm
from mumis.models import Normalize, build_model, check_double_backward, resolve_model_kwargs

#: the behaviour before issue 12: every weight moves, raw loss, plain SGD at 1e-4
OLD = {"update": "all", "batchnorm_filters": "free", "lr": 1e-4, "normalise": False, "lower_forgotten_bias": False}


def _net(norm: str, std: float = 0.3) -> nn.Module:
    layer = (lambda c: nn.BatchNorm2d(c)) if norm == "batch" else (lambda c: nn.GroupNorm(4, c))
    return nn.Sequential(
        Normalize([0.3], [std]), nn.Conv2d(1, 16, 3, padding=1, bias=False), layer(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1, bias=False), layer(32), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))


def _train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int = 30) -> nn.Module:
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    g = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(y), generator=g).split(64):
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


def _acc(model: nn.Module, pair: tuple[torch.Tensor, torch.Tensor]) -> float:
    with torch.no_grad():
        return 100.0 * float((model.eval()(pair[0]).argmax(1) == pair[1]).float().mean())


@pytest.fixture(scope="module")
def digits():
    bundle = load_dataset("digits")
    return bundle, make_splits(bundle, resolve_manifest("class:3", bundle, seed=0))


@pytest.fixture(scope="module")
def bn_case(digits):
    bundle, splits = digits
    torch.manual_seed(0)
    return _train(_net("batch"), bundle.x_train, bundle.y_train), splits


def test_default_forgetting_survives_batchnorm_reestimation(bn_case):
    """The old behaviour forgets only against stale BatchNorm statistics: re-estimating them on
    300 unlabelled retain images brings the class back. The default keeps it forgotten, and keeps
    the remaining classes without any re-estimation."""
    original, splits = bn_case
    unlabelled = splits.retain[0][:300]
    old = mumis.unlearn(original, splits.forget, device="cpu", **OLD).model
    assert _acc(old, splits.forget) <= 1.0
    assert _acc(reestimate_batchnorm(old, unlabelled), splits.forget) >= 80.0

    res = mumis.unlearn(original, splits.forget, device="cpu")
    assert _acc(res.model, splits.forget) <= 1.0 and _acc(res.model, splits.test_forgotten) <= 3.0
    assert _acc(res.model, splits.test_remaining) >= _acc(original, splits.test_remaining) - 1.5
    again = reestimate_batchnorm(res.model, unlabelled)
    assert _acc(again, splits.forget) <= 3.0 and _acc(again, splits.test_forgotten) <= 3.0
    # only the classifier moved: its weight by the run (its bias gets no gradient: input gradients
    # ignore it), its bias only for the forgotten class, lowered after the stop; every BatchNorm
    # buffer and every conv weight is the original's
    for (name, a), b in zip(res.model.state_dict().items(), original.state_dict().values(), strict=True):
        if name == "9.bias":
            moved = (a != b).nonzero().flatten().tolist()
            assert moved == [3] and float(b[3] - a[3]) == pytest.approx(res.extra["forgotten_bias_shift"]["3"])
        else:
            assert torch.equal(a, b) == (name != "9.weight"), name


def test_default_is_scale_free_on_a_groupnorm_net(digits):
    """Sensitivities 100x smaller (inputs divided by 3 more, squared norms by ~100 on top of
    a small GroupNorm net): the fixed lr of the old behaviour moves nothing in 50 steps; the
    normalised default forgets, and takes the same steps as on the unscaled copy."""
    bundle, splits = digits
    torch.manual_seed(0)
    small = _train(_net("group"), bundle.x_train, bundle.y_train)
    tiny = copy.deepcopy(small)
    tiny[0].std.mul_(10.0)  # GroupNorm after the conv undoes the scale: same function, S_k / 10
    assert _acc(tiny, splits.test) == pytest.approx(_acc(small, splits.test), abs=0.5)
    old = mumis.unlearn(tiny, splits.forget, device="cpu", max_steps=50, **OLD)
    assert _acc(old.model, splits.forget) >= 95.0
    a = mumis.unlearn(small, splits.forget, device="cpu")
    b = mumis.unlearn(tiny, splits.forget, device="cpu")
    assert _acc(b.model, splits.forget) <= 1.0 and _acc(b.model, splits.test_forgotten) <= 3.0
    assert a.steps == b.steps
    assert _acc(b.model, splits.test_remaining) >= _acc(tiny, splits.test_remaining) - 1.5


@pytest.mark.parametrize("norm", ["batch", "group", "layer", "none"])
def test_resnet18_norm_option_builds_and_supports_double_backward(norm):
    model = build_model("resnet18", input_shape=(1, 16, 16), num_classes=4, width=4, norm=norm, seed=0).eval()
    kinds = {type(m).__name__ for m in model.modules()}
    expected = {"batch": "BatchNorm2d", "group": "GroupNorm", "layer": "GroupNorm", "none": None}[norm]
    assert (expected in kinds) if expected else not ({"BatchNorm2d", "GroupNorm"} & kinds)
    if norm == "layer":
        assert all(m.num_groups == 1 for m in model.modules() if isinstance(m, nn.GroupNorm))
    check_double_backward(model, torch.rand(2, 1, 16, 16))
    assert resolve_model_kwargs("resnet18", {"norm": norm}) == {"norm": norm}


def test_resnet18_unknown_norm_is_one_clear_error():
    with pytest.raises(ModelError, match="norm must be one of batch, group, layer, none"):
        build_model("resnet18", input_shape=(1, 16, 16), num_classes=4, width=4, norm="instance")


def test_layer_finders_on_resnets_and_a_cnn():
    x = torch.rand(2, 1, 16, 16)
    bn = build_model("resnet18", input_shape=(1, 16, 16), num_classes=4, width=4, seed=0)
    names = {id(p): n for n, p in bn.named_parameters()}
    assert [names[id(p)] for p in parameters_after_batchnorm(bn, x)] == ["fc.weight", "fc.bias"]
    assert [names[id(p)] for p in last_layer_parameters(bn, x)] == ["fc.weight", "fc.bias"]
    feeding = layers_feeding_batchnorm(bn, x)
    assert len(feeding) == sum(isinstance(m, nn.Conv2d) for m in bn.modules())  # every conv feeds a BatchNorm
    gn = build_model("resnet18", input_shape=(1, 16, 16), num_classes=4, width=4, norm="group", seed=0)
    assert parameters_after_batchnorm(gn, x) == [] and layers_feeding_batchnorm(gn, x) == []
    cnn = build_model("cnn", input_shape=(1, 16, 16), num_classes=4, seed=0)
    names = {id(p): n for n, p in cnn.named_parameters()}
    assert [names[id(p)] for p in last_layer_parameters(cnn, x)] == ["classifier.3.weight", "classifier.3.bias"]
    assert bn.training and cnn.training  # modes restored


def test_update_all_with_fixed_filter_norms_keeps_each_filter_norm(bn_case):
    original, splits = bn_case
    res = mumis.unlearn(original, splits.forget, device="cpu", update="all", lr=0.05, max_steps=5,
                        stop="none", monitor_every=5)
    for i in (1, 4):  # the two convs, each feeding a BatchNorm
        before = original[i].weight.flatten(1).norm(dim=1)
        after = res.model[i].weight.flatten(1).norm(dim=1)
        torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-6)
        assert not torch.equal(res.model[i].weight, original[i].weight)


def test_filter_norm_projection_removes_the_radial_component():
    conv = nn.Conv2d(2, 3, 3)
    fn = FilterNorms([conv])
    g = torch.randn_like(conv.weight)
    grads: dict[nn.Parameter, torch.Tensor | None] = {conv.weight: g, conv.bias: torch.ones(3)}
    fn.project(grads)
    proj = grads[conv.weight]
    assert proj is not None and grads[conv.bias] is not None
    assert (proj.flatten(1) * conv.weight.detach().flatten(1)).sum(1).abs().max() < 1e-5
    assert float(grads[conv.bias].abs().sum()) == 0.0  # type: ignore[union-attr]


def test_update_setting_names_what_moved_and_refuses_a_frozen_classifier(bn_case):
    original, splits = bn_case
    res = mumis.unlearn(original, splits.forget, device="cpu", max_steps=5, stop="none")
    assert res.extra["updated"] == ["9.weight", "9.bias"]
    res = mumis.unlearn(original, splits.forget, device="cpu", max_steps=5, stop="none", update="after_batchnorm")
    assert res.extra["updated"] == ["9.weight", "9.bias"]
    frozen = copy.deepcopy(original)
    frozen[9].requires_grad_(False)
    with pytest.raises(mumis.exceptions.ConfigError, match="update=last finds no trainable weights"):
        mumis.unlearn(frozen, splits.forget, device="cpu")


def test_batchnorm_as_affine_is_the_same_function_and_leaves_the_original() -> None:
    from mumis.functional.batchnorm import ChannelAffine, batchnorm_as_affine, has_running_batchnorm

    torch.manual_seed(0)
    net = _net("batch")
    net.train()
    with torch.no_grad():  # non-trivial running statistics
        for _ in range(3):
            net(torch.rand(32, 1, 8, 8))
    net.eval()
    before = copy.deepcopy(net.state_dict())
    affine = batchnorm_as_affine(net)
    x = torch.rand(16, 1, 8, 8)
    assert torch.allclose(affine(x), net(x), atol=1e-5)
    assert not has_running_batchnorm(affine) and has_running_batchnorm(net)
    assert sum(isinstance(m, ChannelAffine) for m in affine.modules()) == 2
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert not has_running_batchnorm(_net("group"))


def test_mumis_update_last_on_batchnorm_runs_on_the_affine_copy(digits, monkeypatch) -> None:
    """The default run on a BatchNorm model: the same classifier (to float rounding) as the base
    loop on the model itself, and a backbone with its statistics returned bit for bit."""
    import mumis.methods.mumis as mumis_module
    from mumis.methods import LossMethod, MuMis
    from mumis.methods.base import RunContext

    copies: list[nn.Module] = []
    real = mumis_module.batchnorm_as_affine
    monkeypatch.setattr(mumis_module, "batchnorm_as_affine", lambda m: copies.append(real(m)) or copies[-1])

    bundle, splits = digits
    torch.manual_seed(0)
    x, y = splits.retain[0][:600].view(-1, 1, 8, 8), splits.retain[1][:600]
    full_x = torch.cat([x, splits.forget[0].view(-1, 1, 8, 8)])
    full_y = torch.cat([y, splits.forget[1]])
    net = _train(_net("batch"), full_x, full_y, epochs=8)
    forget = (splits.forget[0].view(-1, 1, 8, 8), splits.forget[1])

    def run(use_affine: bool) -> tuple[nn.Module, object]:
        model = copy.deepcopy(net).eval()
        algo = MuMis(max_steps=8, lower_forgotten_bias=False)  # the plain run skips MuMis.run's bias step
        ctx = RunContext(forget=forget, retain=None, num_classes=10,
                         generator=torch.Generator().manual_seed(0), device=torch.device("cpu"))
        out = algo.run(model, ctx) if use_affine else LossMethod.run(algo, model, ctx)
        return model, out

    (fast, out_fast), (plain, out_plain) = run(True), run(False)
    assert len(copies) == 1  # the default run worked on the affine copy
    assert out_fast.steps == out_plain.steps
    for k, v in net.state_dict().items():
        if not k.startswith("9."):  # the classifier (last module of the Sequential)
            assert torch.equal(fast.state_dict()[k], v), k
    assert not torch.equal(fast.state_dict()["9.weight"], net.state_dict()["9.weight"])
    assert torch.allclose(fast.state_dict()["9.weight"], plain.state_dict()["9.weight"], atol=1e-4)

"""Built-in models, user factories and the double-backward check."""

from __future__ import annotations

import sys
import textwrap

import pytest
import torch
from torch import nn

from mumis.exceptions import ConfigError, ModelError
from mumis.models import (
    MODELS,
    Normalize,
    build_model,
    check_double_backward,
    find_inplace_modules,
    model_options,
    resolve_model_kwargs,
)

SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32)]
SMALL = {"mlp": {"hidden": (32,)}, "cnn": {"channels": (4, 8), "hidden": 16}, "resnet18": {"width": 4}}


def _model(name: str, shape: tuple[int, ...], k: int = 10, **kw) -> nn.Module:
    return build_model(name, input_shape=shape, num_classes=k, mean=[0.5] * shape[0],
                       std=[0.25] * shape[0], seed=0, **{**SMALL[name], **kw})


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", ["mlp", "cnn", "resnet18"])
def test_output_shape_per_dataset_shape(name, shape):
    m = _model(name, shape, k=7)
    assert m(torch.rand(3, *shape)).shape == (3, 7)
    assert isinstance(next(iter(m.children())), Normalize)  # normalisation is the first layer


@pytest.mark.parametrize("name", ["mlp", "cnn", "resnet18"])
def test_default_options_build_and_have_no_inplace_modules(name):
    m = build_model(name, input_shape=(3, 32, 32), num_classes=10)
    assert find_inplace_modules(m) == []
    assert not any(getattr(mod, "inplace", False) for mod in m.modules())


@pytest.mark.parametrize("name", ["mlp", "cnn", "resnet18"])
def test_double_backward_through_every_builtin(name):
    m = _model(name, (1, 8, 8))
    m.train()
    check_double_backward(m, torch.rand(4, 1, 8, 8))
    assert m.training  # mode restored


def test_normalize_is_per_channel():
    n = Normalize([0.0, 1.0], [1.0, 2.0])
    x = torch.ones(1, 2, 2, 2)
    assert torch.equal(n(x)[0, 0], torch.ones(2, 2))
    assert torch.equal(n(x)[0, 1], torch.zeros(2, 2))
    with pytest.raises(ModelError, match="positive"):
        Normalize([0.0], [0.0])


def test_check_names_inplace_relu_and_leaves_model_untouched():
    m = nn.Sequential(nn.Flatten(), nn.Linear(4, 8), nn.ReLU(inplace=True), nn.Linear(8, 3))
    m.train()
    m[1].weight.requires_grad_(False)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    assert find_inplace_modules(m) == ["2"]
    with pytest.raises(ModelError, match=r"2 \(ReLU\).*inplace=False"):
        check_double_backward(m, torch.rand(3, 4))
    assert m.training and not m[1].weight.requires_grad and m[3].weight.requires_grad
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())


class _FunctionalInplace(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 8)
        self.act = nn.Sigmoid()
        self.out = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.fc(x))
        h.mul_(2.0)  # overwrites what Sigmoid's backward needs
        return self.out(h)


def test_check_reports_functional_inplace_with_module_and_restores_state():
    m = _FunctionalInplace().eval()
    flags = [p.requires_grad for p in m.parameters()]
    with pytest.raises(ModelError, match=r"act \(Sigmoid\)") as e:
        check_double_backward(m, torch.rand(3, 4))
    assert "\n" not in str(e.value)
    assert not m.training and [p.requires_grad for p in m.parameters()] == flags
    assert all(p.grad is None for p in m.parameters())
    # no hooks left behind
    assert not any(mod._forward_hooks for mod in m.modules())


def test_check_rejects_non_logit_output():
    m = nn.Sequential(nn.Linear(4, 3), nn.Unflatten(1, (3, 1)))
    with pytest.raises(ModelError, match=r"\(N, K\)"):
        check_double_backward(m, torch.rand(2, 4))


def test_check_rejects_detached_input():
    class Detach(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x.detach())

    with pytest.raises(ModelError, match="does not depend on its input"):
        check_double_backward(Detach(), torch.rand(2, 4))


def test_seeded_build_is_reproducible_and_leaves_global_rng():
    state = torch.random.get_rng_state()
    a = build_model("mlp", input_shape=(1, 8, 8), num_classes=10, seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)
    b = build_model("mlp", input_shape=(1, 8, 8), num_classes=10, seed=3)
    c = build_model("mlp", input_shape=(1, 8, 8), num_classes=10, seed=4)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["net.1.weight"], sc["net.1.weight"])


def test_unknown_model_and_option():
    assert MODELS.names() == ["cnn", "mlp", "resnet18"]
    with pytest.raises(ConfigError, match="Did you mean 'resnet18'"):
        build_model("resnet19", input_shape=(3, 32, 32), num_classes=10)
    with pytest.raises(ModelError, match="unknown option 'widht'.*'width'"):
        build_model("resnet18", input_shape=(3, 32, 32), num_classes=10, widht=8)
    with pytest.raises(ModelError, match="integers"):
        resolve_model_kwargs("mlp", {"hidden": "a,b"})
    assert resolve_model_kwargs("mlp", {"hidden": "64,32"}) == {"hidden": (64, 32)}
    assert resolve_model_kwargs("cnn", {"hidden": "64"}) == {"hidden": 64}
    assert model_options("resnet18") == {"width": 64, "norm": "batch"}
    with pytest.raises(ModelError, match="4x4"):
        build_model("cnn", input_shape=(1, 3, 3), num_classes=10)


@pytest.fixture
def factory_module(tmp_path, monkeypatch):
    (tmp_path / "mumis_test_factories.py").write_text(textwrap.dedent("""
        import torch.nn as nn

        def small(*, input_shape, num_classes, hidden=8):
            c, h, w = input_shape
            return nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, hidden), nn.ReLU(),
                                 nn.Linear(hidden, num_classes))

        def with_norm(*, input_shape, num_classes, mean, std):
            m = small(input_shape=input_shape, num_classes=num_classes)
            m.seen = (list(mean), list(std))
            return m

        def not_a_module(*, input_shape, num_classes):
            return 42

        NOT_CALLABLE = 3
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "mumis_test_factories"
    sys.modules.pop("mumis_test_factories", None)


def test_user_factory(factory_module):
    m = build_model(f"{factory_module}:small", input_shape=(1, 8, 8), num_classes=5, hidden=4)
    assert m(torch.rand(2, 1, 8, 8)).shape == (2, 5)
    check_double_backward(m, torch.rand(2, 1, 8, 8))
    m2 = build_model(f"{factory_module}:with_norm", input_shape=(1, 8, 8), num_classes=5,
                     mean=[0.3], std=[0.2])
    assert m2.seen == ([0.3], [0.2])


@pytest.mark.parametrize("spec, match", [
    ("no_such_module_xyz:fn", "cannot import module 'no_such_module_xyz'"),
    ("{mod}:missing", "has no attribute 'missing'"),
    ("{mod}:NOT_CALLABLE", "not callable"),
    ("{mod}:not_a_module", "returned int, not a torch.nn.Module"),
    ("{mod}:", "package.module:function"),
])
def test_user_factory_errors(factory_module, spec, match):
    with pytest.raises(ModelError, match=match):
        build_model(spec.format(mod=factory_module), input_shape=(1, 8, 8), num_classes=5)


def test_user_factory_bad_kwargs(factory_module):
    with pytest.raises(ModelError, match="cannot be called"):
        build_model(f"{factory_module}:small", input_shape=(1, 8, 8), num_classes=5, depth=3)

"""Output adapters, in-place activation switching and the one-line shape checks."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from torch import nn

import mumis
from mumis.exceptions import ConfigError, DataError, ModelError
from mumis.functional import input_sensitivity
from mumis.models import (
    LogitsAdapter,
    check_double_backward,
    find_inplace_modules,
    out_of_place_activations,
    probe_model,
)
from mumis.models.adapters import check_output_key, describe_output, select_logits, unwrap

LOGITS = torch.arange(6.0).view(2, 3)


@dataclass
class _Output:  # a Hugging Face style output object
    logits: torch.Tensor
    hidden: torch.Tensor


class _Dict(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.fc(x)
        return {"scores": h, "features": x}


class _Tuple(_Dict):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        return self.fc(x), x


class _HF(_Dict):
    def forward(self, x: torch.Tensor) -> _Output:  # type: ignore[override]
        return _Output(logits=self.fc(x), hidden=x)


# ------------------------------------------------------------------------------ selection
@pytest.mark.parametrize(("out", "key"), [
    ((LOGITS, torch.zeros(2, 5)), 0),
    ([torch.zeros(2, 5), LOGITS], 1),
    ({"logits": LOGITS, "aux": torch.zeros(2)}, "logits"),
    (_Output(logits=LOGITS, hidden=torch.zeros(2, 4)), "logits"),
    ({"a": [LOGITS]}, lambda o: o["a"][0]),
])
def test_select_logits_by_index_key_attribute_or_function(out, key):
    assert select_logits(out, key) is LOGITS


@pytest.mark.parametrize(("out", "key", "match"), [
    ({"scores": LOGITS}, "logits", r"not in the model's output.*keys \{'scores': Tensor\(2, 3\)\}"),
    ({"scores": LOGITS}, 0, "is an index but the model returned a dict"),
    ((LOGITS,), 3, "IndexError"),
    ((LOGITS, "text"), 1, "selects a str, not a logits tensor"),
    ({"scores": LOGITS}, lambda o: o["nope"], "fn <lambda> failed.*KeyError"),
])
def test_select_logits_errors_say_what_came_back(out, key, match):
    with pytest.raises(ModelError, match=match) as e:
        select_logits(out, key)
    assert "\n" not in str(e.value)


def test_describe_output():
    assert describe_output((LOGITS, torch.zeros(2, 7))) == "a tuple of 2 (Tensor(2, 3), Tensor(2, 7))"
    assert describe_output({"a": LOGITS}) == "a dict with keys {'a': Tensor(2, 3)}"
    assert describe_output(_Output(LOGITS, LOGITS)) == "a _Output with attributes logits, hidden"


@pytest.mark.parametrize("key", [True, 1.5, ["logits"], b"logits"])
def test_bad_output_key_types_are_a_config_error(key):
    with pytest.raises(ConfigError, match="output_key must be"):
        check_output_key(key)
    with pytest.raises(ConfigError, match="output_key must be"):
        mumis.unlearn(_Dict(), (torch.rand(4, 4), torch.ones(4, dtype=torch.long)), device="cpu",
                      output_key=key)


def test_adapter_adds_nothing_and_unwraps_to_the_users_model():
    inner = _Dict()
    ad = LogitsAdapter(inner, "scores")
    x = torch.rand(5, 4)
    assert torch.equal(ad(x), inner(x)["scores"])
    assert [id(p) for p in ad.parameters()] == [id(p) for p in inner.parameters()]
    assert unwrap(LogitsAdapter(ad, lambda t: t)) is inner
    assert unwrap(inner) is inner


def test_functional_primitives_name_a_non_tensor_output_and_accept_the_adapter():
    x, y = torch.rand(3, 4), torch.tensor([0, 1, 2])
    with pytest.raises(ModelError, match="returned a dict.*LogitsAdapter"):
        input_sensitivity(_Dict(), x, y)
    torch.manual_seed(0)
    m = _Dict()
    assert input_sensitivity(LogitsAdapter(m, "scores"), x, y).shape == (3,)


# --------------------------------------------------------------------------------- probe
def _states(m: nn.Module) -> tuple[list[bool], list[bool]]:
    return [x.training for x in m.modules()], [p.requires_grad for p in m.parameters()]


def test_flat_model_fed_images_names_the_module_and_both_shapes():
    m = nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10)).train()
    m[2].weight.requires_grad_(False)
    before = _states(m)
    with pytest.raises(ModelError) as e:
        probe_model(m, torch.rand(5, 1, 8, 8), what="forget")
    msg = str(e.value)
    assert "\n" not in msg
    assert "0 (Linear) expects (N, 64) but got (2, 1, 8, 8)" in msg
    assert "X.flatten(1)" in msg and "exactly what the layer takes" in msg
    assert _states(m) == before
    assert not any(x._forward_hooks or x._forward_pre_hooks for x in m.modules())


def test_image_model_fed_flat_vectors_is_told_to_reshape():
    m = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(144, 10))
    with pytest.raises(ModelError, match=r"0 \(Conv2d\) expects \(N, 1, H, W\) but got \(2, 64\).*reshape X"):
        probe_model(m, torch.rand(5, 64))


def test_error_in_the_models_own_forward_names_it():
    class View(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(100, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x.view(-1, 100))

    with pytest.raises(ModelError, match=r"inputs of shape \(2, 64\): in \(root\) \(View\): shape"):
        probe_model(View(), torch.rand(4, 64))


def test_wrong_number_of_classes_names_both():
    m = nn.Linear(4, 5)
    with pytest.raises(ModelError, match=r"logits of shape \(2, 5\) \(5 classes\) but the data has 10 classes"):
        probe_model(m, torch.rand(3, 4), num_classes=10)
    with pytest.raises(DataError, match=r"forget labels must be in 0..4: .*\(2, 5\).*go up to 7"):
        probe_model(m, torch.rand(3, 4), labels=torch.tensor([0, 7]))
    logits, key = probe_model(m, torch.rand(3, 4), num_classes=5, labels=torch.tensor([4]))
    assert logits.shape == (2, 5) and key is None


def test_non_tensor_output_without_key_is_one_line_with_the_keys_and_a_suggestion():
    with pytest.raises(ModelError) as e:
        probe_model(_Dict(), torch.rand(3, 4))
    msg = str(e.value)
    assert "\n" not in msg
    assert "a dict with keys {'scores': Tensor(2, 3), 'features': Tensor(2, 4)}" in msg
    assert "pass output_key=" in msg and "e.g. output_key='scores'" in msg
    with pytest.raises(ModelError, match=r"tuple of 2 \(Tensor\(2, 3\), Tensor\(2, 4\)\).*e\.g\. output_key=0"):
        probe_model(_Tuple(), torch.rand(3, 4))


def test_hf_style_logits_attribute_is_the_only_automatic_choice():
    logits, key = probe_model(_HF(), torch.rand(3, 4))
    assert key == "logits" and logits.shape == (2, 3)
    _, key = probe_model(_HF(), torch.rand(3, 4), output_key=lambda o: o.logits)
    assert callable(key)
    with pytest.raises(ModelError, match="drop output_key"):
        probe_model(nn.Linear(4, 3), torch.rand(3, 4), output_key=0)


# ----------------------------------------------------------------------- in-place modules
def _every_inplace_kind() -> nn.Sequential:
    acts = [nn.ReLU(inplace=True), nn.ReLU6(inplace=True), nn.LeakyReLU(0.1, inplace=True),
            nn.Hardtanh(inplace=True), nn.ELU(inplace=True), nn.SELU(inplace=True),
            nn.CELU(inplace=True), nn.SiLU(inplace=True), nn.Hardswish(inplace=True),
            nn.Hardsigmoid(inplace=True), nn.Mish(inplace=True), nn.Threshold(0.1, 0.0, inplace=True),
            nn.Dropout(0.5, inplace=True)]
    layers: list[nn.Module] = []
    for a in acts:
        layers += [nn.Linear(4, 4), a]
    return nn.Sequential(*layers, nn.Linear(4, 3))


def test_out_of_place_activations_switches_every_kind_and_restores_even_on_error():
    m = _every_inplace_kind().eval()
    names = find_inplace_modules(m)
    assert len(names) == 13
    x = torch.rand(3, 4)
    ref = m(x)
    with out_of_place_activations(m) as switched:
        assert switched == names and find_inplace_modules(m) == []
        assert torch.equal(m(x), ref)  # the flag never changes a value
        with pytest.raises(ModelError, match=r"failed at 19 \(Hardsigmoid\): torch has no second derivative"):
            check_double_backward(m, x)  # Hardsigmoid is not twice differentiable in torch
    assert find_inplace_modules(m) == names
    with pytest.raises(RuntimeError, match="boom"), out_of_place_activations(m):
        raise RuntimeError("boom")
    assert find_inplace_modules(m) == names


def test_switching_fixes_an_in_place_activation_that_really_breaks_double_backward():
    # Tanh saves its output for backward; Hardtanh(inplace=True) then overwrites it.
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Hardtanh(-0.5, 0.5, inplace=True), nn.Linear(6, 3))
    x = torch.rand(2, 4, requires_grad=True)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        (g,) = torch.autograd.grad(m(x)[:, 0].sum(), x, create_graph=True)
        torch.autograd.grad(g.pow(2).sum(), list(m.parameters()), allow_unused=True)
    with pytest.raises(ModelError, match=r"2 \(Hardtanh\).*out_of_place_activations"):
        check_double_backward(m, x)
    with out_of_place_activations(m):
        check_double_backward(m, x)


def test_functional_in_place_op_error_names_the_module_and_the_rewrite():
    class AddInPlace(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc, self.act, self.out = nn.Linear(4, 6), nn.Sigmoid(), nn.Linear(6, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.act(self.fc(x))
            h += 1.0  # Sigmoid's saved output, overwritten
            return self.out(h)

    x, y = torch.rand(4, 4), torch.full((4,), 1)
    with pytest.raises(ModelError) as e:
        mumis.unlearn(AddInPlace(), (x, y), device="cpu", max_steps=2)
    msg = str(e.value)
    assert "\n" not in msg and "act (Sigmoid)" in msg
    assert "`out = out + x` for `out += x`" in msg and "F.relu(x, inplace=True)" in msg


def test_double_backward_check_reads_logits_through_the_key():
    check_double_backward(_Dict(), torch.rand(2, 4), output_key="scores")
    check_double_backward(_HF(), torch.rand(2, 4))
    with pytest.raises(ModelError, match="returned a dict"):
        check_double_backward(_Dict(), torch.rand(2, 4))


# ------------------------------------------------------------------------- through the API
def test_unlearn_accepts_an_hf_style_output_and_says_so():
    torch.manual_seed(0)
    m = _HF()
    x, y = torch.rand(6, 4), torch.full((6,), 2)
    res = mumis.unlearn(m, (x, y), device="cpu", max_steps=2)
    assert res.model.__class__ is _HF and res.extra["output_key"] == "'logits'"


def test_evaluate_shape_errors_come_before_any_work():
    from mumis.data import load_dataset, make_splits, resolve_manifest

    bundle = load_dataset("digits")
    splits = make_splits(bundle, resolve_manifest("class:3", bundle, seed=0))
    with pytest.raises(ModelError, match=r"0 \(Linear\) expects \(N, 64\) but got \(2, 1, 8, 8\)"):
        mumis.evaluate(nn.Sequential(nn.Linear(64, 10)), splits)
    with pytest.raises(ModelError, match=r"\(2, 7\) \(7 classes\) but the data has 10 classes"):
        mumis.evaluate(nn.Sequential(nn.Flatten(), nn.Linear(64, 7)), splits)
    good = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    class DictOut(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = good

        def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"a": self.net(x)}

    with pytest.raises(ModelError, match=r"^reference: the model returned a dict with keys \{'a'"):
        mumis.evaluate(good, splits, reference=DictOut())


def test_a_users_own_adapter_comes_back_as_given():
    torch.manual_seed(0)
    user = LogitsAdapter(_Dict(), "scores")  # e.g. what a CLI model factory returns
    x, y = torch.rand(6, 4), torch.full((6,), 2)
    res = mumis.unlearn(user, (x, y), device="cpu", max_steps=2)
    assert type(res.model) is LogitsAdapter and type(res.model.model) is _Dict
    assert "output_key" not in res.extra

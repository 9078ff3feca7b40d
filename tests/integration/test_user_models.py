"""The models users bring, end to end: a torchvision-style ResNet and a model returning a dict
unlearn with MU-Mis and evaluate through the front door; the caller's model is left untouched.

`TinyResNet` copies the structure of torchvision's ResNet-18 (which we cannot import beside the
CPU torch build): 3x3 stem + BatchNorm + ReLU(inplace=True) + max-pool, BasicBlocks that add
the shortcut with `out += identity` and reuse one `nn.ReLU(inplace=True)` module twice, a
1x1-conv + BatchNorm downsample, adaptive average pooling and a linear head; only narrower
and shorter, for 8x8 digits.
"""

from __future__ import annotations

import copy
import inspect
import json
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

import mumis
from mumis.data import Splits, load_dataset, make_splits, resolve_manifest
from mumis.exceptions import ModelError
from mumis.metrics.accuracy import compute_logits, logits_accuracy
from mumis.models import LogitsAdapter, check_double_backward, find_inplace_modules
from mumis.training import make_train_config, train_model


class BasicBlock(nn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)
        out = self.conv2(out)
        out = self.bn2(out)
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        out = self.relu(out)
        return out


class TinyResNet(nn.Module):
    def __init__(self, num_classes: int = 10, width: int = 8, in_channels: int = 1) -> None:
        super().__init__()
        self.inplanes = width
        self.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(width, 1)
        self.layer2 = self._make_layer(2 * width, 1, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(2 * width, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes, 1, stride, bias=False),
                                       nn.BatchNorm2d(planes))
        layers = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers += [BasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer2(self.layer1(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class DictNet(nn.Module):
    """A CNN that returns {"logits": (N, K), "embedding": (N, D)}, as many research models do."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
                                  nn.Flatten(), nn.Linear(8 * 4 * 4, 32), nn.ReLU())
        self.head = nn.Linear(32, num_classes)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        emb = self.body(x)
        return {"logits": self.head(emb), "embedding": emb}


RELUS = ["relu", "layer1.0.relu", "layer2.0.relu"]


def _snapshot(m: nn.Module) -> tuple[dict[str, torch.Tensor], list[bool], list[str]]:
    return ({k: v.clone() for k, v in m.state_dict().items()}, [x.training for x in m.modules()],
            find_inplace_modules(m))


def _same(m: nn.Module, snap: tuple[dict[str, torch.Tensor], list[bool], list[str]]) -> bool:
    state, modes, inplace = snap
    return (all(torch.equal(state[k], v) for k, v in m.state_dict().items())
            and [x.training for x in m.modules()] == modes and find_inplace_modules(m) == inplace)


def _acc(model: nn.Module, pair: tuple[torch.Tensor, torch.Tensor] | None) -> float:
    assert pair is not None
    return logits_accuracy(compute_logits(model, pair[0]), pair[1])


@pytest.fixture(scope="module")
def splits() -> Splits:
    bundle = load_dataset("digits")
    return make_splits(bundle, resolve_manifest("class:3", bundle, seed=0))


def _train(model: nn.Module, splits: Splits) -> nn.Module:
    x = torch.cat([splits.forget[0], splits.retain[0]])
    y = torch.cat([splits.forget[1], splits.retain[1]])
    cfg = make_train_config("quick", dataset="digits", model="cnn", overrides={"epochs": 10})
    train_model(model, x, y, cfg, seed=0, device="cpu", progress=False)
    return model.eval()


@pytest.fixture(scope="module")
def resnet(splits: Splits) -> TinyResNet:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return _train(TinyResNet(), splits)  # type: ignore[return-value]


@pytest.fixture(scope="module")
def dictnet(splits: Splits) -> DictNet:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = DictNet()
    _train(LogitsAdapter(net, "logits"), splits)  # the public adapter trains it too
    return net


def test_torchvision_block_structure_is_double_differentiable(resnet: TinyResNet, splits: Splits):
    # Measured on torch 2.13: torchvision's `out += identity` writes into BatchNorm's output,
    # which BatchNorm's backward does not save, and ReLU(inplace=True) saves only its own
    # result; so even unconverted the block differentiates twice. The check stays strict on
    # in-place modules (a later op may need what they overwrite); unlearn switches them off.
    m = copy.deepcopy(resnet)
    x = splits.forget[0][:2].clone().requires_grad_(True)
    (g,) = torch.autograd.grad(m(x)[:, 0].sum(), x, create_graph=True)
    assert any(t is not None for t in torch.autograd.grad(g.pow(2).sum(), list(m.parameters()), allow_unused=True))
    with pytest.raises(ModelError, match=r"relu \(ReLU\).*out_of_place_activations"):
        check_double_backward(m, x)


def test_torchvision_style_resnet_unlearns_with_mumis_and_evaluates(resnet: TinyResNet, splits: Splits):
    caller = copy.deepcopy(resnet).train()  # a caller may hold the model in train mode
    block = caller.layer1[0]
    assert isinstance(block, BasicBlock)
    block.bn1.eval()  # ...with a deliberately mixed state
    snap = _snapshot(caller)
    assert snap[2] == RELUS
    before = _acc(resnet, splits.test_forgotten)
    assert before >= 80.0

    res = mumis.unlearn(caller, splits.forget, method="mumis", seed=0, device="cpu")

    assert _same(caller, snap)  # weights, modes and inplace flags of the caller's model
    assert type(res.model) is TinyResNet and res.model is not caller
    assert find_inplace_modules(res.model) == RELUS  # handed back with the caller's architecture
    assert [m.training for m in res.model.modules()] == snap[1]
    assert res.extra["inplace_converted"] == RELUS and "output_key" not in res.extra
    assert res.steps > 0 and "forget accuracy" in res.stop_reason
    assert _acc(res.model, splits.test_forgotten) <= 10.0
    # still a classifier (chance: 10 %); how much MU-Mis keeps on BatchNorm ResNets is studied
    # elsewhere (measured here: 95.7 % before, 52.6 % after, 75 steps)
    assert _acc(res.model, splits.test_remaining) >= 25.0

    rep = mumis.evaluate(res.model, splits, reference=resnet, metrics=("accuracy", "mia", "sensitivity"),
                         sensitivity_samples=40)
    assert rep.model_metrics["test_forgotten_acc"] == _acc(res.model, splits.test_forgotten)
    assert rep.reference_metrics is not None and rep.reference_metrics["test_forgotten_acc"] == before
    assert rep.sensitivity is not None and set(rep.sensitivity) == {"model", "reference"}
    assert [m.training for m in res.model.modules()] == snap[1]


def test_inplace_true_updates_the_callers_weights_and_gives_its_flags_back(resnet: TinyResNet, splits: Splits):
    caller = copy.deepcopy(resnet)
    state, modes, flags = _snapshot(caller)
    res = mumis.unlearn(caller, splits.forget, device="cpu", inplace=True, max_steps=3)
    assert res.model is caller and res.extra["inplace_converted"] == RELUS
    assert find_inplace_modules(caller) == flags and [m.training for m in caller.modules()] == modes
    assert not torch.equal(caller.fc.weight, state["fc.weight"])


def test_dict_model_unlearns_with_mumis_and_evaluates(dictnet: DictNet, splits: Splits):
    caller = copy.deepcopy(dictnet)
    snap = _snapshot(caller)
    adapted = LogitsAdapter(dictnet, "logits")
    assert _acc(adapted, splits.test_forgotten) >= 80.0

    res = mumis.unlearn(caller, splits.forget, method="mumis", seed=0, device="cpu", output_key="logits")

    assert _same(caller, snap)
    assert type(res.model) is DictNet  # the user's class, weights updated
    assert set(res.model(splits.forget[0][:3])) == {"logits", "embedding"}
    assert res.extra["output_key"] == "'logits'" and res.extra["inplace_converted"] == ["body.1"]
    forgotten = _acc(LogitsAdapter(res.model, "logits"), splits.test_forgotten)
    assert forgotten <= 10.0
    assert _acc(LogitsAdapter(res.model, "logits"), splits.test_remaining) >= 40.0

    # a callable selects the same logits
    rep = mumis.evaluate(res.model, splits, reference=dictnet, output_key=lambda out: out["logits"])
    assert rep.model_metrics["test_forgotten_acc"] == forgotten
    assert rep.reference_metrics is not None and rep.diff is not None and "kl_to_retrain" in rep.model_metrics
    assert _same(caller, snap)


def test_dict_model_without_output_key_is_one_line_before_any_work(dictnet: DictNet, splits: Splits):
    snap = _snapshot(dictnet)
    for call in (lambda: mumis.unlearn(dictnet, splits.forget, device="cpu"),
                 lambda: mumis.evaluate(dictnet, splits)):
        with pytest.raises(ModelError) as e:
            call()
        msg = str(e.value)
        assert "\n" not in msg
        assert msg.startswith("the model returned a dict with keys {'logits': Tensor(2, 10), 'embedding': Tensor(2, 32)}")
        assert "output_key='logits'" in msg
    assert _same(dictnet, snap)


def test_cli_unlearn_records_the_switched_modules_in_result_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from mumis.cli import main

    # a user factory module built from the classes above: torchvision's structure via the CLI
    src = "\n\n".join(["from __future__ import annotations", "import torch", "from torch import nn",
                       textwrap.dedent(inspect.getsource(BasicBlock)), textwrap.dedent(inspect.getsource(TinyResNet)),
                       "def make(input_shape, num_classes):\n    return TinyResNet(num_classes, 4, input_shape[0])\n"])
    (tmp_path / "tv_user_models.py").write_text(src)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    assert main(["-q", "train", "--dataset", "digits", "--model", "tv_user_models:make", "--epochs", "1",
                 "--out", "orig"]) == 0
    assert main(["-q", "unlearn", "--checkpoint", "orig", "--forget", "class:3", "--method", "mumis",
                 "--trust-model-code", "--set", "max_steps=2", "--out", "unl"]) == 0
    result = json.loads((tmp_path / "unl" / "result.json").read_text())
    assert result["extra"]["inplace_converted"] == RELUS


class _TupleOut(nn.Module):
    """The conformance suite's tiny MLP, returning (logits, flat input) like a two-headed model."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.net(x), x.flatten(1)


@pytest.mark.parametrize("method", mumis.list_methods())
def test_every_method_sees_plain_logits_of_a_tuple_model_with_inplace_relus(method: str):
    from mumis.testing.conformance import fast_settings, tiny_case

    case = tiny_case()
    relus = [m for m in case.model.modules() if isinstance(m, nn.ReLU)]
    assert relus
    for m in relus:
        m.inplace = True
    user = _TupleOut(case.model)
    snap = _snapshot(user)
    retain = case.retain if mumis.get_method(method).requires_retain else None
    res = mumis.unlearn(user, case.forget, method=method, retain=retain, device="cpu", output_key=0,
                        **fast_settings(method))
    assert _same(user, snap)
    assert type(res.model) is _TupleOut and res.extra["output_key"] == "0"
    switched = find_inplace_modules(user) if mumis.get_method(method).needs_double_backward else None
    assert res.extra.get("inplace_converted") == switched  # only where double backward needs it
    assert all(torch.isfinite(p).all() for p in res.model.parameters())
    assert any(not torch.equal(v, snap[0][k]) for k, v in res.model.state_dict().items())


_FACTORIES = '''
from dataclasses import dataclass
import torch
from torch import nn

@dataclass
class Out:
    logits: torch.Tensor

class HF(nn.Module):
    def __init__(self, k):
        super().__init__()
        self.f = nn.Sequential(nn.Flatten(), nn.Linear(64, k))
    def forward(self, x):
        return Out(self.f(x))

def flat(input_shape, num_classes):
    return nn.Sequential(nn.Linear(64, num_classes))

def five(input_shape, num_classes):
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 5))

def hf(input_shape, num_classes):
    return HF(num_classes)
'''


@pytest.mark.parametrize(("factory", "expected"), [
    ("flat", r"^mumis: error: the model fails on the training inputs of shape \(2, 1, 8, 8\): 0 \(Linear\) "
             r"expects \(N, 64\) but got \(2, 1, 8, 8\): .*X\.flatten\(1\)"),
    ("five", r"^mumis: error: the model returns logits of shape \(2, 5\) \(5 classes\) but the data has 10 classes"),
    ("hf", r"^mumis: error: the model returns its logits as \.logits; training needs a tensor: train "
           r"mumis\.models\.LogitsAdapter\(model, 'logits'\)"),
])
def test_cli_train_refuses_a_model_that_does_not_fit_in_one_line(
        factory: str, expected: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]):
    import re

    from mumis.cli import main

    (tmp_path / "bad_user_models.py").write_text(_FACTORIES)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["-q", "train", "--dataset", "digits", "--model", f"bad_user_models:{factory}",
                 "--epochs", "1", "--out", "run"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and re.match(expected, err), err
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "__pycache__") == before

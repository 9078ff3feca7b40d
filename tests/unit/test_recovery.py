"""Recovery audits (`mumis.metrics.recovery`, `evaluate(metrics="recovery")`): BatchNorm
re-estimation in closed form, a model whose forgetting lives only in BatchNorm statistics is
caught while a model that never learned the class stays at 0, the relearning attack is seeded
and leaves the evaluated model alone; API, reference reuse, report and CLI; the feature probe
catches a model that silenced a class only in its classifier."""

from __future__ import annotations

import copy
import functools
import json
import math

import pytest
import torch
from torch import nn

from mumis.data import load_dataset, make_splits, resolve_manifest
from mumis.evaluation import evaluate
from mumis.exceptions import ConfigError, DataError, ModelError
from mumis.metrics.recovery import (
    RecoveryConfig,
    audit_slices,
    batchnorm_layers,
    feature_probe,
    penultimate_features,
    reestimate_batchnorm,
    relearn,
)

FORGOTTEN = 3


def _logit_bn_net() -> nn.Module:
    """An MLP whose logits pass through a BatchNorm1d: shifting one running mean silences a class."""
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10),
                         nn.BatchNorm1d(10))


def _fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> nn.Module:
    g = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    model.train()
    for _ in range(8):  # epochs of batches of 128 (a few hundred ms)
        for idx in torch.randperm(len(y), generator=g).split(128):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    return model.eval()


@functools.lru_cache(maxsize=1)
def _case():
    bundle = load_dataset("digits")
    splits = make_splits(bundle, resolve_manifest(f"class:{FORGOTTEN}", bundle, seed=0))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        original, retrained = _logit_bn_net(), _logit_bn_net()
    x = torch.cat([splits.forget[0], splits.retain[0]])
    y = torch.cat([splits.forget[1], splits.retain[1]])
    _fit(original, x, y)
    _fit(retrained, *splits.retain)  # never sees the class
    return splits, original, retrained


@pytest.fixture()
def case():
    splits, original, retrained = _case()
    return splits, copy.deepcopy(original), copy.deepcopy(retrained)


def _bn_forgotten(model: nn.Module) -> nn.Module:
    """The original with the forgotten class's logit pushed down only through the BatchNorm's
    running mean: weights identical, the class never predicted in eval mode."""
    fake = copy.deepcopy(model)
    bn = fake[-1]
    with torch.no_grad():
        sign = 1.0 if float(bn.weight[FORGOTTEN]) > 0 else -1.0
        bn.running_mean[FORGOTTEN] += sign * 50 * bn.running_var[FORGOTTEN].sqrt()
    return fake


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ------------------------------------------------------------------ BatchNorm re-estimation
def test_reestimation_is_the_cumulative_average_of_batch_statistics():
    model = nn.Sequential(nn.BatchNorm1d(3)).eval()
    with torch.no_grad():
        model[0].running_mean.fill_(7.0)
        model[0].running_var.fill_(9.0)
        model[0].weight.fill_(2.0)
    x = torch.randn(40, 3, generator=torch.Generator().manual_seed(1)) * 3 + 1
    before = _state(model)
    out = reestimate_batchnorm(model, x, batch_size=10)  # 4 equal batches
    assert out is not None and not out.training and not out[0].training
    chunks = x.split(10)
    assert torch.allclose(out[0].running_mean, x.mean(0), atol=1e-5)
    assert torch.allclose(out[0].running_var, torch.stack([c.var(0) for c in chunks]).mean(0),
                          atol=1e-5)
    assert torch.equal(out[0].weight, model[0].weight) and torch.equal(out[0].bias, model[0].bias)
    assert _same(before, _state(model)) and model[0].momentum == 0.1  # the original untouched


def test_reestimation_does_not_apply_without_batchnorm_and_needs_two_images():
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(4, 2), nn.LayerNorm(2))
    assert reestimate_batchnorm(mlp, torch.rand(8, 4)) is None
    assert batchnorm_layers(nn.Sequential(nn.BatchNorm2d(2, track_running_stats=False))) == []
    with pytest.raises(DataError, match="at least 2 images"):
        reestimate_batchnorm(nn.Sequential(nn.BatchNorm1d(2)), torch.rand(1, 2))


def test_forgetting_that_lives_only_in_batchnorm_statistics_is_caught(case):
    splits, original, retrained = case
    fake = _bn_forgotten(original)
    before = _state(fake)
    rep = evaluate(fake, splits, reference=retrained, metrics=["accuracy", "recovery"])
    m, r = rep.model, rep.reference
    assert r is not None
    # As evaluated, the class looks perfectly forgotten, like the retrained model ...
    assert m["test_forgotten_acc"] == 0.0 and m["forget_acc"] == 0.0
    assert rep.gap_paper is not None and abs(m["test_forgotten_acc"] - r["test_forgotten_acc"]) < 1
    # ... but a forward pass over 600 ordinary retain images brings it back,
    assert m["bn_reestimated_test_forgotten_acc"] > 80 and m["bn_reestimated_forget_acc"] > 80
    # while the model that never learned it stays at 0 under the same audit.
    assert r["bn_reestimated_test_forgotten_acc"] <= 1.0 and r["bn_reestimated_forget_acc"] <= 1.0
    assert rep.gap_recovery is not None and rep.gap_recovery > 40
    assert _same(before, _state(fake))  # the evaluated model is never changed


# ------------------------------------------------------------------ relearning attack
def test_relearning_is_seeded_and_leaves_the_model_alone(case):
    splits, original, _ = case
    x, y = splits.retain[0][:200], splits.retain[1][:200]
    before = _state(original)
    flags = [p.requires_grad for p in original.parameters()]
    rng = torch.random.get_rng_state()
    a = relearn(original, x, y, steps=10, seed=5)
    b = relearn(original, x, y, steps=10, seed=5)
    c = relearn(original, x, y, steps=10, seed=6)
    assert a.steps == b.steps == 10 and a.note is None
    assert _same(_state(a.model), _state(b.model)) and not _same(_state(a.model), _state(c.model))
    assert not _same(_state(a.model), before)  # weights and running statistics moved
    assert not torch.equal(a.model[-1].running_mean, original[-1].running_mean)  # BN in train mode
    assert _same(before, _state(original)) and not original.training
    assert [p.requires_grad for p in original.parameters()] == flags
    assert torch.equal(rng, torch.random.get_rng_state())
    assert not a.model.training and all(p.grad is None for p in a.model.parameters())


def test_relearning_keeps_dropout_off_and_stops_on_a_nonfinite_loss():
    x = torch.rand(16, 4)
    y = torch.randint(0, 2, (16,), generator=torch.Generator().manual_seed(0))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.Linear(8, 2))
    # Dropout off: the result does not depend on the global RNG's state.
    torch.manual_seed(1)
    a = relearn(net, x, y, steps=3, batch_size=4)
    torch.manual_seed(2)
    b = relearn(net, x, y, steps=3, batch_size=4)
    assert _same(_state(a.model), _state(b.model))
    broken = copy.deepcopy(net)
    with torch.no_grad():
        broken[0].weight[0, 0] = math.inf
    out = relearn(broken, x, y, steps=3, batch_size=4)
    assert out.steps == 0 and "non-finite loss at attack step 1" in (out.note or "")
    free = relearn(nn.Flatten(), x, y, steps=3)
    assert free.steps == 0 and "no parameters" in (free.note or "")
    with pytest.raises(DataError, match="at least 2 labelled samples"):
        relearn(net, x[:1], y[:1])


def test_the_retrained_model_does_not_relearn_what_it_never_saw(case):
    splits, original, retrained = case
    rep = evaluate(retrained, splits, reference=retrained, metrics=["accuracy", "recovery"])
    m = rep.model
    # 30 steps on retain images (no forgotten class): measured 0 % on digits; the bound leaves
    # room for the small relearning effect without letting a recovered class pass.
    assert m["relearn_test_forgotten_acc"] <= 5.0 and m["relearn_forget_acc"] <= 5.0
    assert m["relearn_test_remaining_acc"] > 85  # the attack is ordinary, working fine-tuning
    assert rep.gap_recovery == 0.0
    # The original keeps the class under the attack (nothing was forgotten).
    orig = evaluate(original, splits, metrics=["accuracy", "recovery"]).model
    assert orig["relearn_test_forgotten_acc"] > 80


# ------------------------------------------------------------------ API, report, settings
def test_settings_validation_and_overrides(case):
    splits, original, _ = case
    with pytest.raises(ConfigError, match="Did you mean 'relearn_steps'"):
        RecoveryConfig.of({"relearn_step": 3})
    for bad in ({"relearn_lr": 0.0}, {"bn_samples": 1}, {"relearn_momentum": 1.0}):
        with pytest.raises(ConfigError, match="out of range"):
            RecoveryConfig.of(bad)
    rep = evaluate(original, splits, metrics=["accuracy", "recovery"],
                   recovery={"relearn_steps": 0, "bn_samples": 100})
    assert rep.recovery is not None and rep.recovery["settings"]["relearn_steps"] == 0
    assert "100 retain images" in rep.recovery["bn_data"]
    assert rep.model["relearn_test_acc"] == rep.model["test_acc"]  # 0 steps: the model itself
    bn_idx, rl_idx = audit_slices(len(splits.retain[1]), RecoveryConfig(), seed=0)
    assert len(bn_idx) == 600 and len(rl_idx) == 1000 and torch.equal(bn_idx, rl_idx[:600])


def test_held_out_images_and_bad_images(case):
    splits, original, _ = case
    held_out = splits.test[0][splits.test[1] != FORGOTTEN][:300]
    fake = _bn_forgotten(original)
    rep = evaluate(fake, splits, metrics=["accuracy", "recovery"], recovery_images=held_out)
    assert rep.recovery is not None and rep.recovery["bn_data"] == "300 images given by the caller"
    assert rep.model["bn_reestimated_test_forgotten_acc"] > 80
    with pytest.raises(DataError, match="recovery_images must hold"):
        evaluate(fake, splits, metrics=["accuracy", "recovery"],
                 recovery_images=torch.rand(10, 1, 4, 4))


def test_reference_report_reuse_and_mismatch(case):
    splits, original, retrained = case
    fake = _bn_forgotten(original)
    ref = evaluate(retrained, splits, metrics=["accuracy", "recovery"])
    direct = evaluate(fake, splits, reference=retrained, metrics=["accuracy", "recovery"])
    reused = evaluate(fake, splits, reference=ref, metrics=["accuracy", "recovery"])
    assert reused.to_dict()["reference"] == direct.to_dict()["reference"]
    assert reused.gap_recovery == direct.gap_recovery
    with pytest.raises(ConfigError, match="other settings or data"):
        evaluate(fake, splits, reference=ref, metrics=["accuracy", "recovery"],
                 recovery={"relearn_steps": 5})


def test_report_dict_markdown_and_no_batchnorm(case):
    splits, _, _ = case
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        plain = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    rep = evaluate(plain, splits, reference=copy.deepcopy(plain), metrics=["accuracy", "recovery"])
    d = json.loads(json.dumps(rep.to_dict()))  # strict JSON
    assert d["model"]["bn_reestimated_test_forgotten_acc"] is None  # n/a: no BatchNorm
    assert d["model"]["relearn_test_forgotten_acc"] is not None
    assert "no BatchNorm layer" in d["recovery"]["model"]["notes"][0]
    assert d["gap_recovery"] == 0.0  # over the relearning key only
    assert d["gap_recovery_keys"] == ["bn_reestimated_test_forgotten_acc", "relearn_test_forgotten_acc"]
    assert "relearn_forget_acc" in d["orientation"]
    assert not any(k.startswith(("bn_", "relearn")) for k in d["gap_paper_keys"])
    md = rep.to_markdown()
    assert "| bn_reestimated_test_forgotten_acc | n/a |" in md and "| gap_recovery |" in md
    assert "recovery audits: BatchNorm running statistics reset" in md


def test_random_forgetting_has_forget_and_test_keys_only():
    bundle = load_dataset("digits")
    splits = make_splits(bundle, resolve_manifest("random:0.1", bundle, seed=0))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = _logit_bn_net().eval()
    rep = evaluate(model, splits, reference=copy.deepcopy(model), metrics=["accuracy", "recovery"])
    keys = {k for k in rep.model if k.startswith(("bn_reestimated_", "relearn_"))}
    assert keys == {"bn_reestimated_forget_acc", "bn_reestimated_test_acc", "relearn_forget_acc",
                    "relearn_test_acc"}
    assert rep.gap_recovery == 0.0 and rep.to_dict()["gap_recovery_keys"] == [
        "bn_reestimated_forget_acc", "relearn_forget_acc"]


# ------------------------------------------------------------------ CLI
@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from mumis.training import train_run

    root = tmp_path_factory.mktemp("runs")
    kw = {"dataset": "digits", "model": "mlp", "epochs": 2, "device": "cpu", "progress": False}
    train_run(out=root / "orig", **kw)
    train_run(out=root / "retr", forget="class:3", **kw)
    return root


def test_cli_shows_the_audits_by_default_and_takes_settings(runs, capsys, tmp_path):
    from mumis.cli import main

    js = tmp_path / "r.json"
    rc = main(["evaluate", "--checkpoint", str(runs / "orig"), "--forget", "class:3",
               "--reference", str(runs / "retr"), "--json", str(js),
               "--recovery", "relearn_steps=5", "--recovery", "relearn_lr=0.02"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "| relearn_test_forgotten_acc |" in out and "| gap_recovery |" in out
    assert "| bn_reestimated_forget_acc | n/a | n/a | n/a |" in out  # the MLP has no BatchNorm
    d = json.loads(js.read_text())
    assert d["recovery"]["settings"]["relearn_steps"] == 5
    assert d["recovery"]["settings"]["relearn_lr"] == 0.02
    assert d["reference"]["relearn_test_forgotten_acc"] <= 5.0
    assert d["gap_recovery"] == pytest.approx(d["diff"]["relearn_test_forgotten_acc"])


@pytest.mark.parametrize("item, needle", [
    ("relearn_step=5", "Did you mean 'relearn_steps'"),
    ("relearn_steps", "expected KEY=NUMBER"),
    ("relearn_lr=-1", "relearn_lr must be a positive number"),
])
def test_cli_bad_recovery_setting_is_one_line_exit_2(runs, capsys, item, needle):
    from mumis.cli import main

    rc = main(["evaluate", "--checkpoint", str(runs / "orig"), "--forget", "class:3",
               "--recovery", item])
    _, err = capsys.readouterr()
    assert rc == 2 and needle in err and len(err.strip().splitlines()) == 1


def test_a_retain_set_too_small_for_the_audits_is_one_clear_error(case):
    from mumis.data.splits import Splits

    splits, original, _ = case
    tiny = Splits(forget=splits.forget, retain=(splits.retain[0][:1], splits.retain[1][:1]),
                  test=splits.test, kind="random", num_classes=10, forgotten_classes=[])
    with pytest.raises(DataError, match="need at least 2; this split has 1"):
        evaluate(original, tiny, metrics=["accuracy", "recovery"])


# ------------------------------------------------------------------ feature probe
def _blobs(n_per_class: int = 100) -> tuple[torch.Tensor, torch.Tensor]:
    """8-d points of 4 classes: 0-2 are clusters in dims 0-6; class 3 is class 0's cluster
    shifted along dim 7 only, so only a feature that reads dim 7 tells 3 from 0."""
    g = torch.Generator().manual_seed(0)
    centres = torch.zeros(4, 8)
    centres[0, 0], centres[1, 1], centres[2, 2] = 3.0, 3.0, 3.0
    centres[3, 0], centres[3, 7] = 3.0, 3.0
    y = torch.arange(4).repeat_interleave(n_per_class)
    return centres[y] + 0.5 * torch.randn(len(y), 8, generator=g), y


def _probe_net(reads_dim7: bool) -> nn.Module:
    """ReLU features of +-x_i (dims 0-6, and dim 7 only if `reads_dim7`), then a classifier whose
    row for class 3 is silenced (weight 0, bias -100): class 3 is never predicted."""
    net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    with torch.no_grad():
        w = torch.zeros(16, 8)
        dims = range(8) if reads_dim7 else range(7)
        for i in dims:
            w[2 * i, i], w[2 * i + 1, i] = 1.0, -1.0
        net[0].weight.copy_(w)
        net[0].bias.zero_()
        head = torch.zeros(4, 16)
        for k in range(3):
            head[k, 2 * k] = 1.0
        net[2].weight.copy_(head)
        net[2].bias.copy_(torch.tensor([0.0, 0.0, 0.0, -100.0]))
    return net.eval()


def test_feature_probe_catches_a_class_silenced_only_in_the_classifier():
    x, y = _blobs()
    forget, retain = (x[y == 3], y[y == 3]), (x[y != 3], y[y != 3])
    silenced, never_knew = _probe_net(reads_dim7=True), _probe_net(reads_dim7=False)
    for net in (silenced, never_knew):  # both look forgotten in a plain evaluation
        assert int((net(forget[0]).argmax(1) == 3).sum()) == 0
    caught = feature_probe(silenced, forget, retain, seed=0)
    yardstick = feature_probe(never_knew, forget, retain, seed=0)
    # held-out retain classes are balanced, 1 and 2 are trivially separable: 3 * retain_acc - 200
    # is about the probe's accuracy on class 0, which shares its features with class 3 in the
    # yardstick, so there the two accuracies must split about 100 between them (chance)
    def class3_plus_class0(out):  # noqa: ANN001, ANN202
        return out.forget_acc + 3 * out.retain_acc - 200

    assert caught.forget_acc >= 95.0 and class3_plus_class0(caught) >= 190.0  # still separable
    assert class3_plus_class0(yardstick) <= 120.0 and yardstick.forget_acc <= 80.0
    assert set(caught.keys()) == {"probe_forget_acc", "probe_retain_acc"}
    assert caught.details["features"] == 16 and caught.details["forget_train"] == 50


def test_feature_probe_reads_the_classifier_input_is_seeded_and_leaves_the_model_alone():
    x, y = _blobs(20)
    net = _probe_net(reads_dim7=True).train()
    before = _state(net)
    feats = penultimate_features(net, x, batch_size=7)  # several forwards, same features
    assert torch.allclose(feats, torch.relu(net[0](x)).detach())
    assert net.training and all(m.training for m in net.modules())  # modes restored
    a = feature_probe(net, (x[y == 3], y[y == 3]), (x[y != 3], y[y != 3]), seed=1)
    b = feature_probe(net, (x[y == 3], y[y == 3]), (x[y != 3], y[y != 3]), seed=1)
    assert (a.forget_acc, a.retain_acc) == (b.forget_acc, b.retain_acc)
    assert _same(before, _state(net))


def test_feature_probe_bad_input_is_one_clear_error():
    x, y = _blobs(20)
    net = _probe_net(reads_dim7=True)
    with pytest.raises(DataError, match="at least 4 labelled forget samples"):
        feature_probe(net, (x[:3], y[:3]), (x, y))
    with pytest.raises(DataError, match="retain"):
        feature_probe(net, (x, y), (x[:5], y[:4]))
    with pytest.raises(ConfigError, match="retain_samples"):
        feature_probe(net, (x, y), (x, y), retain_samples=2)
    with pytest.raises(ModelError, match="classifier"):
        feature_probe(nn.Linear(8, 4), (x, y), (x, y))

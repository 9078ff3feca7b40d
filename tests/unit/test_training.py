"""Training loop, configs, recipes, schedules and augmentation."""

from __future__ import annotations

import pytest
import torch

from mumis.data import load_dataset
from mumis.exceptions import ConfigError, DataError
from mumis.models import build_model
from mumis.training import (
    TrainConfig,
    augment_batch,
    dataset_family,
    lr_at,
    make_train_config,
    model_accuracy,
    recipe_settings,
    split_overrides,
    train_model,
)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def _train(bundle, seed, cfg):
    mean, std = bundle.channel_stats()
    m = build_model("cnn", input_shape=bundle.input_shape, num_classes=10, mean=mean, std=std,
                    seed=seed, channels=(4, 8), hidden=32)
    hist = train_model(m, bundle.x_train[:256], bundle.y_train[:256], cfg, seed=seed, progress=False)
    return m, hist


def test_same_seed_gives_bit_identical_weights(digits):
    cfg = TrainConfig(epochs=2, batch_size=32, augment=True, crop_padding=1)
    state = torch.random.get_rng_state()
    a, ha = _train(digits, 0, cfg)
    assert torch.equal(torch.random.get_rng_state(), state)  # global RNG untouched
    b, hb = _train(digits, 0, cfg)
    c, _ = _train(digits, 1, cfg)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    assert [h["loss"] for h in ha] == [h["loss"] for h in hb]
    assert [h["epoch"] for h in ha] == [1, 2] and {"loss", "acc", "lr", "time_s"} <= set(ha[0])


def test_training_learns_and_restores_mode(digits):
    m = build_model("mlp", input_shape=(1, 8, 8), num_classes=10, hidden=(32,), seed=0)
    hist = train_model(m, digits.x_train[:400], digits.y_train[:400],
                       TrainConfig(epochs=10, batch_size=32, lr=0.05), seed=0, progress=False)
    assert hist[-1]["loss"] < hist[0]["loss"]
    acc = model_accuracy(m, digits.x_test, digits.y_test)
    assert acc > 70.0
    m.eval()
    train_model(m, digits.x_train[:64], digits.y_train[:64], TrainConfig(epochs=1), seed=0,
                progress=False)
    assert not m.training


def test_bad_data_and_divergence(digits):
    m = build_model("mlp", input_shape=(1, 8, 8), num_classes=10, hidden=(8,))
    with pytest.raises(DataError):
        train_model(m, digits.x_train[:10], digits.y_train[:5], TrainConfig(epochs=1), seed=0)
    x = digits.x_train[:256].clone()
    x[0, 0, 0, 0] = float("nan")  # a non-finite loss, whatever the initialisation (a huge lr is not:
    # cross-entropy gradients are bounded, so its loss can stay finite)
    with pytest.raises(FloatingPointError, match="lower lr"):
        train_model(m, x, digits.y_train[:256], TrainConfig(epochs=2), seed=0, progress=False)


def test_config_is_strict():
    with pytest.raises(ConfigError, match="unknown setting 'lrr'.*'lr'"):
        make_train_config("quick", dataset="digits", model="mlp", overrides={"lrr": 0.1})
    with pytest.raises(ConfigError, match="schedule must be one of"):
        make_train_config("quick", dataset="digits", model="mlp", overrides={"schedule": "cos"})
    with pytest.raises(ConfigError, match="epochs must be at least 1"):
        make_train_config("quick", dataset="digits", model="mlp", overrides={"epochs": 0})
    with pytest.raises(ConfigError, match="unknown recipe 'memorize'.*'memorise'"):
        make_train_config("memorize", dataset="digits", model="mlp")
    cfg = make_train_config("quick", dataset="digits", model="mlp",
                            overrides={"lr": "0.2", "augment": "false"})
    assert cfg.lr == 0.2 and cfg.augment is False


def test_recipes_are_layered():
    assert dataset_family("fashion-mnist") == dataset_family("mnist") == "mnist"
    assert dataset_family("cifar100") == "cifar" and dataset_family("npz") == "*"
    q = recipe_settings("quick", dataset="cifar10", model="resnet18")
    assert q["hflip"] and q["augment"] and q["crop_padding"] == 4
    assert not recipe_settings("quick", dataset="fashion-mnist", model="cnn").get("hflip", False)
    mem = recipe_settings("memorise", dataset="digits", model="mlp")
    assert not mem.get("augment", False) and mem.get("label_smoothing", 0.0) == 0.0
    assert split_overrides({"lr": 1, "model.width": 8}) == ({"lr": 1}, {"width": 8})


def test_schedules():
    cfg = TrainConfig(epochs=4, lr=1.0, schedule="cosine")
    assert lr_at(cfg, 0, 100, 25) == 1.0 and lr_at(cfg, 50, 100, 25) == pytest.approx(0.5)
    step = TrainConfig(epochs=4, lr=1.0, schedule="step", gamma=0.1)
    assert [lr_at(step, s, 100, 25) for s in (0, 49, 50, 75)] == pytest.approx([1, 1, 0.1, 0.01])
    warm = TrainConfig(epochs=4, lr=1.0, schedule="constant", warmup_epochs=1)
    assert lr_at(warm, 0, 100, 25) == pytest.approx(0.1) and lr_at(warm, 25, 100, 25) == 1.0


def test_augment_batch():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).reshape(2, 1, 4, 4)
    g = torch.Generator().manual_seed(0)
    assert torch.equal(augment_batch(x, padding=0, hflip=False, generator=g), x)
    out = augment_batch(x, padding=2, hflip=True, generator=torch.Generator().manual_seed(1))
    again = augment_batch(x, padding=2, hflip=True, generator=torch.Generator().manual_seed(1))
    assert out.shape == x.shape and torch.equal(out, again)
    # every output pixel is either padding (0) or a pixel of the same image
    for i in range(2):
        assert set(out[i].unique().tolist()) <= set(x[i].unique().tolist()) | {0.0}
    flips = [augment_batch(x, padding=0, hflip=True, generator=torch.Generator().manual_seed(s))
             for s in range(8)]
    assert any(torch.equal(f[0], x[0].flip(2)) for f in flips)


def test_thread_choice_is_by_workload_and_restored():
    from mumis.training import choose_threads, forward_macs, torch_threads

    mlp = build_model("mlp", input_shape=(1, 8, 8), num_classes=10, hidden=(16,))
    assert forward_macs(mlp, torch.rand(1, 1, 8, 8)) == 64 * 16 + 16 * 10
    cnn = build_model("cnn", input_shape=(1, 8, 8), num_classes=10, channels=(2, 4), hidden=8)
    # conv1: 2*1*9 weights at 8x8, conv2: 4*2*9 at 4x4, fc: 16*8 + 8*10
    assert forward_macs(cnn, torch.rand(1, 1, 8, 8)) == 18 * 64 + 72 * 16 + 16 * 8 + 80
    assert choose_threads(mlp, torch.rand(4, 1, 8, 8), 64) == 1
    big = build_model("mlp", input_shape=(3, 32, 32), num_classes=10, hidden=(4096,))
    assert choose_threads(big, torch.rand(128, 3, 32, 32), 128) is None
    before = torch.get_num_threads()
    with torch_threads(before + 1):
        assert torch.get_num_threads() == before + 1
    assert torch.get_num_threads() == before

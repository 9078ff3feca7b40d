"""Run directories: save, load, and every way a checkpoint can be broken."""

from __future__ import annotations

import json

import pytest
import torch

from mumis.checkpoint import (
    META_FILE,
    WEIGHTS_FILE,
    build_meta,
    load_checkpoint,
    load_run_data,
    load_run_splits,
    read_meta,
    save_model_dir,
)
from mumis.data import DatasetBundle, make_splits, resolve_manifest
from mumis.exceptions import CheckpointError
from mumis.models import build_model, model_spec


@pytest.fixture(scope="module")
def tiny_bundle() -> DatasetBundle:
    g = torch.Generator().manual_seed(0)
    return DatasetBundle(
        name="digits",  # a registered name, but the tests below never reload it
        x_train=torch.rand(40, 1, 8, 8, generator=g), y_train=torch.arange(40) % 4,
        x_test=torch.rand(12, 1, 8, 8, generator=g), y_test=torch.arange(12) % 4,
        classes=["a", "b", "c", "d"],
    )


def _save(tmp_path, bundle, name="cnn", kwargs=None, sub="run"):
    kwargs = kwargs if kwargs is not None else {"channels": (4, 8), "hidden": 16}
    if name == "resnet18":
        kwargs = {"width": 4}
    mean, std = [0.4], [0.3]
    model = build_model(name, input_shape=(1, 8, 8), num_classes=4, mean=mean, std=std,
                        seed=1, **kwargs)
    if name == "resnet18":  # move BatchNorm running statistics away from their init
        model.train()
        with torch.no_grad():
            model(bundle.x_train)
    model.eval()
    manifest = resolve_manifest("class:1", bundle)
    spec = model_spec(name, input_shape=(1, 8, 8), num_classes=4, mean=mean, std=std, kwargs=kwargs)
    meta = build_meta(kind="train", model=spec, dataset=bundle, data_dir=None, manifest=manifest,
                      forget_spec="class:1", seed=1, recipe={"name": "quick", "config": {}})
    d = tmp_path / sub
    d.mkdir()
    save_model_dir(d, model, meta)
    return d, model


@pytest.mark.parametrize("name", ["mlp", "cnn", "resnet18"])
def test_round_trip_gives_identical_outputs(tmp_path, tiny_bundle, name):
    kwargs = {"hidden": (16,)} if name == "mlp" else None
    d, model = _save(tmp_path, tiny_bundle, name, kwargs)
    loaded, meta = load_checkpoint(d)
    assert not loaded.training
    x = tiny_bundle.x_test
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert meta["model"]["name"] == name and meta["forget_spec"] == "class:1"
    assert meta["dataset"]["label_space"] == "fine" and meta["kind"] == "train"
    for key in ("format", "seed", "recipe", "manifest", "versions", "created"):
        assert key in meta


def test_weights_are_not_pickled(tmp_path, tiny_bundle):
    d, _ = _save(tmp_path, tiny_bundle)
    head = (d / WEIGHTS_FILE).read_bytes()[:8]
    header_len = int.from_bytes(head, "little")  # safetensors: u64 header length, then JSON
    header = json.loads((d / WEIGHTS_FILE).read_bytes()[8:8 + header_len])
    assert "normalize.mean" in header


@pytest.mark.parametrize("cut", [0, 5, 100, -10])
def test_truncated_weights(tmp_path, tiny_bundle, cut):
    d, _ = _save(tmp_path, tiny_bundle)
    data = (d / WEIGHTS_FILE).read_bytes()
    (d / WEIGHTS_FILE).write_bytes(data[:cut])
    with pytest.raises(CheckpointError, match="truncated or corrupt") as e:
        load_checkpoint(d)
    assert str(d) in str(e.value) and "\n" not in str(e.value)


def test_garbage_weights(tmp_path, tiny_bundle):
    d, _ = _save(tmp_path, tiny_bundle)
    (d / WEIGHTS_FILE).write_bytes(b"\x80\x04not a safetensors file at all" * 10)
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(d)


def test_missing_things(tmp_path, tiny_bundle):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="not a mumis run directory"):
        load_checkpoint(tmp_path / "empty")
    (tmp_path / "afile").write_text("x")
    with pytest.raises(CheckpointError, match="is a file"):
        load_checkpoint(tmp_path / "afile")
    d, _ = _save(tmp_path, tiny_bundle)
    (d / WEIGHTS_FILE).unlink()
    with pytest.raises(CheckpointError, match="has no model.safetensors"):
        load_checkpoint(d)


def test_bad_meta(tmp_path, tiny_bundle):
    d, _ = _save(tmp_path, tiny_bundle)
    meta_path = d / META_FILE
    good = meta_path.read_text()
    meta_path.write_text(good[: len(good) // 2])
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(d)
    meta_path.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(CheckpointError, match="not a mumis run description"):
        load_checkpoint(d)
    meta = json.loads(good)
    del meta["model"]["input_shape"]
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="lacks the model description"):
        read_meta(d)


def test_mismatched_architecture(tmp_path, tiny_bundle):
    d, _ = _save(tmp_path, tiny_bundle)
    meta = json.loads((d / META_FILE).read_text())
    meta["model"]["kwargs"]["hidden"] = 32  # same keys, other shapes
    (d / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="has shape"):
        load_checkpoint(d)
    meta["model"]["name"] = "mlp"
    meta["model"]["kwargs"] = {}
    (d / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="does not match the architecture"):
        load_checkpoint(d)
    meta["model"]["name"] = "nosuchmodel"
    (d / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="cannot rebuild"):
        load_checkpoint(d)


def test_load_run_data_reloads_dataset_and_manifest(tmp_path):
    from mumis.data import load_dataset

    bundle = load_dataset("digits")
    manifest = resolve_manifest("random:50", bundle, seed=3)
    model = build_model("mlp", input_shape=(1, 8, 8), num_classes=10, hidden=(8,))
    spec = model_spec("mlp", input_shape=(1, 8, 8), num_classes=10, mean=[0.0], std=[1.0],
                      kwargs={"hidden": (8,)})
    meta = build_meta(kind="train", model=spec, dataset=bundle, data_dir=None, manifest=manifest,
                      forget_spec="random:50", seed=0, recipe={})
    save_model_dir(tmp_path, model, meta)
    b2, m2 = load_run_data(read_meta(tmp_path))
    assert m2.hash == manifest.hash and list(m2.forget) == list(manifest.forget)
    splits = load_run_splits(tmp_path)
    ref = make_splits(bundle, manifest)
    assert torch.equal(splits.forget[0], ref.forget[0]) and len(splits.forget[1]) == 50
    assert b2.name == "digits"

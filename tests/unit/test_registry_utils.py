"""Registries (mumis.registry) and shared helpers (mumis.utils): atomic writes, staged run
directories, JSON conversion, devices, hashing."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import mumis
from mumis import utils
from mumis.exceptions import CheckpointError, ConfigError
from mumis.methods import METHODS
from mumis.registry import Registry, did_you_mean
from mumis.utils import (
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    hash_arrays,
    make_generator,
    read_json,
    resolve_device,
    staged_run_dir,
    to_jsonable,
)


# --------------------------------------------------------------------------- registry
def make_registry() -> Registry[int]:
    r: Registry[int] = Registry("widget")
    r.register("beta", 2)
    r.register("alpha", 1)
    return r


def test_registry_basics() -> None:
    r = make_registry()
    assert r.get("alpha") == 1
    assert r.names() == ["alpha", "beta"] and list(r) == ["alpha", "beta"]
    assert r.items() == [("alpha", 1), ("beta", 2)]
    assert "beta" in r and "gamma" not in r


def test_registry_refuses_duplicates() -> None:
    r = make_registry()
    with pytest.raises(ValueError, match="widget 'alpha' is already registered"):
        r.register("alpha", 3)
    assert r.get("alpha") == 1


def test_registry_unknown_name() -> None:
    with pytest.raises(ConfigError) as e:
        make_registry().get("alpah")
    assert str(e.value) == "unknown widget 'alpah'. Did you mean 'alpha'? Choose one of: alpha, beta"
    with pytest.raises(ValueError, match=r"^unknown widget 'zzzz'\. Choose one of"):  # no poor guess
        make_registry().get("zzzz")


def test_did_you_mean() -> None:
    assert did_you_mean("mumsi", ["mumis", "salun"]) == " Did you mean 'mumis'?"
    assert did_you_mean("qqqq", ["mumis", "salun"]) == ""
    assert did_you_mean("x", []) == ""


def test_method_registry_front_door() -> None:
    assert {"mumis", "mumis_published", "mumis_v1"} <= set(mumis.list_methods())
    assert mumis.list_methods() == METHODS.names()
    assert mumis.get_method("mumis").name == "mumis"
    with pytest.raises(ConfigError, match="unknown method 'mumi'. Did you mean 'mumis'"):
        mumis.get_method("mumi")


# --------------------------------------------------------------------------- atomic writes
def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_atomic_writes(tmp_path: Path) -> None:
    atomic_write_text(tmp_path / "sub" / "a.txt", "héllo")
    assert (tmp_path / "sub" / "a.txt").read_text(encoding="utf-8") == "héllo"
    atomic_write_bytes(tmp_path / "b.bin", b"\x00\x01")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    atomic_write_json(tmp_path / "c.json", {"x": np.float32(1.5), "t": torch.tensor([1, 2]), "p": Path("q")})
    assert json.loads((tmp_path / "c.json").read_text()) == {"x": 1.5, "t": [1, 2], "p": "q"}
    assert leftovers(tmp_path) == [] and leftovers(tmp_path / "sub") == []


def test_atomic_write_failure_keeps_old_file_and_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "keep.txt"
    target.write_text("old")

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(utils.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_atomic_write_interrupted_mid_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(fd: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(utils.os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_text(tmp_path / "x.txt", "data")
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_json_unserialisable_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        atomic_write_json(tmp_path / "x.json", {"f": object()})
    assert list(tmp_path.iterdir()) == []


def test_read_json_errors(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="is missing"):
        read_json(tmp_path / "none.json")
    (tmp_path / "half.json").write_text('{"a": [1, 2')
    with pytest.raises(CheckpointError, match="not valid JSON"):
        read_json(tmp_path / "half.json")


# --------------------------------------------------------------------------- staged run dirs
def test_staged_run_dir_success(tmp_path: Path) -> None:
    out = tmp_path / "runs" / "r1"
    with staged_run_dir(out) as stage:
        assert stage != out and stage.parent == out.parent and not out.exists()
        (stage / "a.txt").write_text("1")
    assert (out / "a.txt").read_text() == "1"
    assert [p.name for p in out.parent.iterdir()] == ["r1"]  # no stage left


def test_staged_run_dir_error_removes_stage(tmp_path: Path) -> None:
    out = tmp_path / "r"
    with pytest.raises(RuntimeError), staged_run_dir(out) as stage:
        (stage / "model.safetensors").write_bytes(b"half")
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_staged_run_dir_interrupt_removes_stage(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt), staged_run_dir(tmp_path / "r"):
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_staged_run_dir_refuses_non_empty_out(tmp_path: Path) -> None:
    out = tmp_path / "r"
    out.mkdir()
    (out / "old.txt").write_text("precious")
    with pytest.raises(ConfigError, match="already exists and is not empty.*--overwrite"):
        with staged_run_dir(out):
            pass
    assert (out / "old.txt").read_text() == "precious"
    assert [p.name for p in tmp_path.iterdir()] == ["r"]


def test_staged_run_dir_refuses_a_file(tmp_path: Path) -> None:
    out = tmp_path / "r"
    out.write_text("x")
    with pytest.raises(ConfigError), staged_run_dir(out):
        pass


def _fake_run(d: Path, *files: str) -> None:  # what --overwrite recognises as a run directory
    (d / "meta.json").write_text('{"format": "mumis-run/1"}')
    for f in files:
        (d / f).write_text("x")


def test_staged_run_dir_empty_out_and_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "r"
    out.mkdir()
    with staged_run_dir(out) as stage:  # an empty folder is fine
        _fake_run(stage, "metrics.json")
    with staged_run_dir(out, overwrite=True) as stage:
        _fake_run(stage, "result.json")
    assert sorted(p.name for p in out.iterdir()) == ["meta.json", "result.json"]  # replaced, not merged


def test_overwrite_failure_keeps_old_run(tmp_path: Path) -> None:
    out = tmp_path / "r"
    out.mkdir()
    _fake_run(out, "metrics.json")
    with pytest.raises(RuntimeError), staged_run_dir(out, overwrite=True):
        raise RuntimeError
    assert (out / "metrics.json").read_text() == "x"


# --------------------------------------------------------------------------- to_jsonable
def test_to_jsonable() -> None:
    obj = {
        1: (np.int64(3), np.float32(0.5), np.bool_(True)),
        "arr": np.arange(3).reshape(3, 1),
        "t": torch.tensor([[1.0, 2.0]], requires_grad=True),
        "scalar": torch.tensor(4),
        "path": Path("/a/b"),
        "nan": float("nan"), "inf": math.inf, "-inf": -math.inf,
        "nested": [{"x": np.float64(1.25)}],
        "plain": ["s", None, 2],
    }
    got = to_jsonable(obj)
    assert got == {
        "1": [3, 0.5, True], "arr": [[0], [1], [2]], "t": [[1.0, 2.0]], "scalar": 4, "path": "/a/b",
        "nan": None, "inf": 1e308, "-inf": -1e308, "nested": [{"x": 1.25}], "plain": ["s", None, 2],
    }
    json.dumps(got, allow_nan=False)
    assert type(got["1"][0]) is int and type(got["nested"][0]["x"]) is float


# --------------------------------------------------------------------------- devices, hashes, RNG
def test_resolve_device() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ConfigError, match="unknown device 'gpu0'"):
        resolve_device("gpu0")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("name", ["cuda", "cuda:1"])
def test_resolve_device_cuda_without_cuda(name: str) -> None:
    with pytest.raises(ConfigError, match="CUDA is not available; use 'cpu'"):
        resolve_device(name)


def test_hash_arrays() -> None:
    a = np.arange(4, dtype=np.int64)
    h = hash_arrays(a, "x", None)
    assert h == hash_arrays(a.copy(), "x", None) == hash_arrays(torch.arange(4), "x", None)
    assert h != hash_arrays(a.astype(np.int32), "x", None)  # dtype counts
    assert h != hash_arrays(a.reshape(2, 2), "x", None)  # shape counts
    assert h != hash_arrays(a, "y", None)
    assert len(h) == 64


def test_make_generator_is_seeded_and_private() -> None:
    state = torch.random.get_rng_state()
    a = torch.rand(3, generator=make_generator(5))
    b = torch.rand(3, generator=make_generator(5))
    assert torch.equal(a, b)
    assert torch.equal(state, torch.random.get_rng_state())


def test_library_versions() -> None:
    v = utils.library_versions()
    assert v["mumis"] == mumis.__version__ and v["torch"] == torch.__version__
    assert {"python", "numpy", "scikit-learn", "safetensors"} <= set(v)


def test_run_directories_and_files_get_normal_permissions(tmp_path):
    import os
    import stat

    from mumis.utils import atomic_write_text, staged_run_dir

    old = os.umask(0o022)
    try:
        with staged_run_dir(tmp_path / "run") as stage:
            atomic_write_text(stage / "a.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "run").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "run" / "a.txt").stat().st_mode) == 0o644

"""model.safetensors is byte-identical across identical runs, also across processes."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load, load_file, save

from mumis.checkpoint import FORMAT, safetensors_bytes, save_model_dir
from mumis.exceptions import CheckpointError


def _mixed() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "w": torch.randn(3, 5, generator=g), "half": torch.randn(3, generator=g).half(),
        "bf": torch.randn(5, generator=g).bfloat16(), "d": torch.randn(2, generator=g).double(),
        "idx": torch.arange(7), "i32": torch.arange(3, dtype=torch.int32), "mask": torch.tensor([True, False, True]),
        "u8": torch.arange(5, dtype=torch.uint8), "scalar": torch.tensor(3.5), "empty": torch.zeros(0, 4),
        "f8": torch.randn(3, generator=g).to(torch.float8_e4m3fn),
    }


def _raw(t: torch.Tensor) -> bytes:
    return t.reshape(-1).view(torch.uint8).numpy().tobytes()


def test_same_bytes_as_safetensors_where_its_output_is_deterministic() -> None:
    # One metadata key and one dtype: safetensors' own writer is deterministic there, so the two
    # writers must agree byte for byte (our writer follows the format exactly).
    g = torch.Generator().manual_seed(1)
    tensors = {"b": torch.randn(4, generator=g), "a": torch.randn(2, 3, generator=g)}
    assert safetensors_bytes(tensors, {"format": "pt"}) == save(tensors, metadata={"format": "pt"})


def test_round_trip_of_every_dtype_and_shape(tmp_path: Path) -> None:
    tensors = _mixed()
    data = safetensors_bytes(tensors, {"mumis": FORMAT, "format": "pt"})
    (tmp_path / "m.safetensors").write_bytes(data)
    for back in (load(data), load_file(tmp_path / "m.safetensors")):
        assert set(back) == set(tensors)
        for k, t in tensors.items():
            assert back[k].dtype == t.dtype and back[k].shape == t.shape and _raw(back[k]) == _raw(t), k
    with safe_open(str(tmp_path / "m.safetensors"), "pt") as f:
        assert f.metadata() == {"format": "pt", "mumis": FORMAT}


def test_layout_is_aligned_and_independent_of_input_order() -> None:
    tensors = _mixed()
    data = safetensors_bytes(tensors, {"z": "1", "a": "2"})
    assert data == safetensors_bytes(dict(reversed(list(tensors.items()))), {"a": "2", "z": "1"})
    n = int.from_bytes(data[:8], "little")
    assert (8 + n) % 8 == 0  # the tensor data starts 8-byte aligned
    header = load(data)  # parses
    meta = json.loads(data[8:8 + n])
    for k, t in header.items():
        assert meta[k]["data_offsets"][0] % t.element_size() == 0, k  # every tensor aligned


def test_repeated_saves_in_one_process_are_identical() -> None:
    # safetensors.torch.save orders the metadata by a per-map random hash: 20 saves of the same
    # tensors gave two different files before; ours must give one.
    tensors, meta = _mixed(), {"format": "pt", "mumis": FORMAT}
    assert len({safetensors_bytes(tensors, meta) for _ in range(20)}) == 1


def test_unsupported_dtype_is_one_clear_error() -> None:
    with pytest.raises(CheckpointError, match="'c'.*complex64.*convert"):
        safetensors_bytes({"c": torch.zeros(2, dtype=torch.complex64)}, {})


_SAVE = """
import sys, torch
from mumis.checkpoint import FORMAT, save_model_dir
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.BatchNorm1d(5), torch.nn.Linear(5, 3))
save_model_dir(sys.argv[1], model, {"format": FORMAT, "model": {"name": "test"}})
"""


def test_two_processes_write_identical_model_files(tmp_path: Path) -> None:
    digests = []
    for seed in (1, 2):  # different PYTHONHASHSEED (and a fresh hash-map seed) in each process
        out = tmp_path / f"run{seed}"
        out.mkdir()
        env = {**os.environ, "PYTHONHASHSEED": str(seed), "OMP_NUM_THREADS": "1"}
        subprocess.run([sys.executable, "-c", _SAVE, str(out)], env=env, check=True, capture_output=True, timeout=120)
        digests.append(hashlib.sha256((out / "model.safetensors").read_bytes()).hexdigest())
    assert len(set(digests)) == 1, digests
    back = load_file(tmp_path / "run1" / "model.safetensors")
    assert {"0.weight", "1.running_mean", "1.num_batches_tracked", "2.bias"} <= set(back)
    assert back["1.num_batches_tracked"].dtype == torch.int64


def test_save_model_dir_twice_same_bytes(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.BatchNorm1d(5), torch.nn.Linear(5, 3))
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        save_model_dir(tmp_path / name, model, {"format": FORMAT, "model": {"name": "test"}})
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == (tmp_path / "b" / "model.safetensors").read_bytes()

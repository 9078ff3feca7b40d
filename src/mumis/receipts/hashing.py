"""Canonical, byte-stable hashes of tensors, state dicts, samples and JSON payloads.

A receipt is only useful if the same model and the same data give the same hash on every machine
and in every process, whatever the file layout or the dict order. So every hash here is taken
over a canonical encoding: names sorted, each tensor as its dtype, its shape and its data in
little-endian byte order (the machine's byte order never shows), and JSON with sorted keys,
no whitespace and floats rounded to a fixed number of significant digits.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

#: Significant digits every float of a receipt is rounded to (stable across BLAS builds).
FLOAT_DIGITS = 6


def _tensor_bytes(t: torch.Tensor) -> bytes:
    """The tensor's elements in row-major order, each little-endian (bf16, bool included)."""
    t = t.detach().to("cpu").contiguous()
    raw = t.reshape(-1).view(torch.uint8)
    if sys.byteorder != "little" and t.element_size() > 1:
        raw = raw.reshape(-1, t.element_size()).flip(1).reshape(-1)  # swap each element's bytes
    return raw.numpy().tobytes()


def _update_tensor(h: Any, t: torch.Tensor) -> None:
    h.update(f"{str(t.dtype).removeprefix('torch.')}|{list(t.shape)}|".encode())
    h.update(_tensor_bytes(t))


def tensor_sha256(t: torch.Tensor | np.ndarray) -> str:
    """sha256 of dtype, shape and little-endian data of one tensor (or numpy array)."""
    h = hashlib.sha256()
    _update_tensor(h, torch.as_tensor(t) if isinstance(t, np.ndarray) else t)
    return h.hexdigest()


def state_sha256(state: Mapping[str, torch.Tensor]) -> str:
    """sha256 of a state dict: tensors sorted by name, each with its name, dtype, shape and data.

    Independent of the dict's order and of how the weights file lays the tensors out, so the
    hash of a model read back from `model.safetensors` equals the hash of the model in memory.
    """
    h = hashlib.sha256()
    for name in sorted(state):
        h.update(name.encode("utf-8") + b"\0")
        _update_tensor(h, state[name])
    return h.hexdigest()


def samples_sha256(x: torch.Tensor, y: torch.Tensor) -> str:
    """sha256 of a set of samples: the inputs' and the labels' canonical bytes, in order."""
    h = hashlib.sha256()
    _update_tensor(h, x)
    _update_tensor(h, y)
    return h.hexdigest()


def indices_sha256(indices: np.ndarray | torch.Tensor | list[int]) -> str:
    """sha256 of the sorted indices as int64 (the order they were listed in does not matter)."""
    a = np.sort(np.asarray(indices, dtype=np.int64).reshape(-1))
    return tensor_sha256(a)


def stable(value: Any) -> Any:
    """A JSON-ready copy with floats rounded to `FLOAT_DIGITS` significant digits and NaN / inf
    turned into None (JSON has no NaN); numpy and torch scalars become Python numbers."""
    if isinstance(value, Mapping):
        return {str(k): stable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [stable(v) for v in value]
    if isinstance(value, (np.generic, torch.Tensor)):
        value = value.item()
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return float(f"{value:.{FLOAT_DIGITS}g}") if math.isfinite(value) else None
    raise TypeError(f"cannot put a {type(value).__name__} into a receipt")


def canonical_json(value: Any) -> bytes:
    """The one byte string a JSON value hashes as: sorted keys, no spaces, ASCII only."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False).encode("ascii")


def json_sha256(value: Any) -> str:
    """sha256 of `canonical_json(value)`."""
    return hashlib.sha256(canonical_json(value)).hexdigest()

"""A deterministic safetensors writer: byte-identical files for identical tensors."""

from __future__ import annotations

import json
import sys
from typing import Any

import torch
from safetensors.torch import save as save_safetensors

from .exceptions import CheckpointError

#: torch dtype -> safetensors dtype code (the format's names; all little-endian).
_ST_DTYPES: dict[torch.dtype, str] = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
    torch.uint8: "U8", torch.bool: "BOOL", torch.float8_e4m3fn: "F8_E4M3", torch.float8_e5m2: "F8_E5M2",
    torch.uint16: "U16", torch.uint32: "U32", torch.uint64: "U64",
}


def safetensors_bytes(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    """Serialise CPU tensors in the safetensors format, byte-identical for identical input.

    `safetensors.torch.save` keeps the metadata in a hash map whose order changes from process
    to process, so two identical runs wrote different files. The format is simple: an 8-byte
    little-endian header length, a JSON header ({"__metadata__": {...}, name: {"dtype", "shape",
    "data_offsets"}}) padded with spaces to a multiple of 8, then the raw tensor bytes. Here the
    metadata keys are sorted and the tensors are laid out by element size (largest first, so every
    tensor stays aligned) and then by name.

    Raises:
        CheckpointError: a tensor of a dtype safetensors cannot store.
    """
    if sys.byteorder != "little":  # the format is little-endian; let the library byte-swap
        return save_safetensors(tensors, metadata=metadata)
    for name, t in tensors.items():
        if t.dtype not in _ST_DTYPES:
            raise CheckpointError(f"tensor {name!r} has dtype {t.dtype}, which safetensors cannot store; "
                                  "convert it (e.g. to float32) before saving")
    order = sorted(tensors, key=lambda k: (-tensors[k].element_size(), k))
    header: dict[str, Any] = {"__metadata__": {k: str(metadata[k]) for k in sorted(metadata)}}
    chunks: list[bytes] = []
    offset = 0
    for name in order:
        t = tensors[name].detach().to("cpu").contiguous()
        raw = t.reshape(-1).view(torch.uint8).numpy().tobytes()  # native (little-endian) bytes
        header[name] = {"dtype": _ST_DTYPES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=True).encode("utf-8")
    text += b" " * (-len(text) % 8)  # pad so the data starts 8-byte aligned
    return len(text).to_bytes(8, "little") + text + b"".join(chunks)

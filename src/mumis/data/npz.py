"""`npz`: arrays from one `.npz` file given by `--data-dir FILE.npz` (never unpickled).

Arrays, by name:

- ``x``, ``y`` (split 80/20, stratified, fixed seed) or ``x_train``, ``y_train``, ``x_test``,
  ``y_test`` (the given split); not both;
- optional superclass labels: ``y_coarse`` (with ``x``/``y``) or ``coarse_train`` and
  ``coarse_test``; optional names ``classes`` and ``coarse_classes`` (string arrays).

Labels are integers 0..K-1 and every class has a training sample, unless ``classes`` names
all K classes (a stray label such as 7000 is refused rather than making a 7001-class model).

Images may be (N, C, H, W), (N, H, W, C) with C in {1, 3}, or (N, H, W); (N, C, H, W) wins when
both readings fit. uint8 (or other integer) pixels are divided by 255; float pixels must already
lie in [0, 1].
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..exceptions import DataError
from .base import DatasetBundle, register_dataset
from .common import (
    check_file_labels,
    labels_tensor,
    require_data_dir,
    stratified_split,
    uint8_images,
)

_WHAT = "a .npz file with arrays x, y (or x_train, y_train, x_test, y_test)"
_SPLIT_KEYS = ("x_train", "y_train", "x_test", "y_test")


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """All arrays of the archive, loaded without pickle.

    Raises:
        DataError: if the file is not an npz archive or holds object arrays.
    """
    if not path.is_file():
        raise DataError(
            f"dataset 'npz': {str(path)!r} is not a file; pass --data-dir pointing at {_WHAT}"
        )
    with path.open("rb") as f:
        magic = f.read(6)
    if not zipfile.is_zipfile(path) and magic != b"\x93NUMPY":
        raise DataError(f"{str(path)!r} is not an .npz archive (not a zip file); save {_WHAT} with numpy.savez")
    try:
        loaded = np.load(path, allow_pickle=False)  # object arrays would need pickle: refused
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise DataError(f"{str(path)!r} is a single .npy array; save {_WHAT} with numpy.savez")
        with loaded as z:
            return {k: z[k] for k in z.files}
    except DataError:
        raise
    except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as e:
        raise DataError(
            f"{str(path)!r} is not a readable .npz archive of plain arrays ({e}); "
            "save it with numpy.savez and numeric / string arrays only"
        ) from None


def _images(x: np.ndarray, path: Path, key: str) -> torch.Tensor:
    """(N, C, H, W) / (N, H, W, C) / (N, H, W) pixels -> float32 (N, C, H, W) in [0, 1]."""
    where = f"{str(path)!r} array {key!r}"
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[1] not in (1, 3) and x.shape[3] in (1, 3):
        x = x.transpose(0, 3, 1, 2)  # NHWC -> NCHW
    elif x.ndim != 4 or x.shape[1] not in (1, 3):
        raise DataError(
            f"{where} has shape {x.shape}; expected (N, C, H, W), (N, H, W, C) with C 1 or 3, "
            "or (N, H, W)"
        )
    if x.dtype.kind in "iu":
        if x.size and (int(x.min()) < 0 or int(x.max()) > 255):
            raise DataError(f"{where}: integer pixels must lie in 0..255, got {x.min()}..{x.max()}")
        return uint8_images(x)
    if x.dtype.kind != "f":
        raise DataError(f"{where} has dtype {x.dtype}; expected uint8 or float pixels")
    out = np.ascontiguousarray(x, dtype=np.float32)
    bad = int(out.size - np.isfinite(out).sum())
    if bad:
        raise DataError(f"{where} holds {bad} NaN or inf pixels; clean or drop those images")
    if out.size and not (out.min() >= 0.0 and out.max() <= 1.0):
        raise DataError(
            f"{where}: float pixels must lie in [0, 1], got {np.nanmin(out)}..{np.nanmax(out)} "
            "(or non-finite values); divide by 255 or store uint8"
        )
    return torch.from_numpy(out)  # the arrays were freshly loaded: sharing memory is safe


def _labels(y: np.ndarray, n: int, path: Path, key: str) -> np.ndarray:
    if y.shape != (n,) or y.dtype.kind not in "iu":
        raise DataError(
            f"{str(path)!r} array {key!r} is {y.dtype} {y.shape}; expected {n} integer labels"
        )
    if n and int(y.min()) < 0:
        raise DataError(f"{str(path)!r} array {key!r} has negative labels; labels are 0..K-1")
    return y.astype(np.int64)


def _names(
    arrays: dict[str, np.ndarray], key: str, labels: list[np.ndarray], path: Path
) -> list[str]:
    """Class names from the file, else "0".."K-1"; checks every label has a name.

    Without a names array the labels must be dense: every class 0..K-1 has a training sample
    (labels[0]), so a stray label such as 7000 cannot silently make a 7001-class model.
    """
    k = max((int(y.max()) + 1 for y in labels if y.size), default=0)
    if key not in arrays:
        missing = np.setdiff1d(np.arange(k), labels[0])
        if missing.size:
            shown = ", ".join(str(int(c)) for c in missing[:5]) + (", ..." if missing.size > 5 else "")
            raise DataError(
                f"{str(path)!r}: labels run up to {k - 1} but {missing.size} of the classes 0..{k - 1} "
                f"have no training sample ({shown}); relabel the classes 0..K-1, or add an array "
                f"{key!r} naming all {k} classes if some really have no training sample"
            )
        return [str(i) for i in range(k)]
    raw = arrays[key]
    if raw.ndim != 1 or raw.dtype.kind not in "US":
        raise DataError(f"{str(path)!r} array {key!r} should be a 1-D array of strings")
    names = [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in raw.tolist()]
    for y in labels:
        check_file_labels(y, len(names), f"{str(path)!r} ({key!r})", f"name every class in {key!r}")
    return names


def _pick(arrays: dict[str, np.ndarray], path: Path) -> dict[str, Any]:
    """Train/test images (tensors) and labels (and coarse labels); 80/20 split of x, y."""
    has_split = [k for k in _SPLIT_KEYS if k in arrays]
    if has_split and ("x" in arrays or "y" in arrays):
        raise DataError(f"{str(path)!r} has both x/y and {has_split[0]}; keep one layout")
    if has_split:
        if len(has_split) != 4:
            missing = [k for k in _SPLIT_KEYS if k not in arrays]
            raise DataError(f"{str(path)!r} has {has_split} but no {missing}; give all four arrays")
        if ("coarse_train" in arrays) != ("coarse_test" in arrays):
            raise DataError(f"{str(path)!r}: give both coarse_train and coarse_test, or neither")
        out: dict[str, Any] = {k: arrays.get(k) for k in ("coarse_train", "coarse_test")}
        out["x_train"] = _images(arrays["x_train"], path, "x_train")
        out["x_test"] = _images(arrays["x_test"], path, "x_test")
        out["y_train"], out["y_test"] = arrays["y_train"], arrays["y_test"]
        return out
    if "x" not in arrays or "y" not in arrays:
        raise DataError(f"{str(path)!r} has arrays {sorted(arrays)}; expected {_WHAT}")
    x = _images(arrays["x"], path, "x")
    y = _labels(arrays["y"], len(x), path, "y")
    yc = None if "y_coarse" not in arrays else _labels(arrays["y_coarse"], len(y), path, "y_coarse")
    tr, te = stratified_split(y)
    if te.size == 0:
        raise DataError(f"{str(path)!r} has too few samples for an 80/20 split (one per class)")
    return {
        "x_train": x[torch.from_numpy(tr)], "y_train": y[tr],
        "x_test": x[torch.from_numpy(te)], "y_test": y[te],
        "coarse_train": None if yc is None else yc[tr],
        "coarse_test": None if yc is None else yc[te],
    }


@register_dataset("npz")
def load_npz(data_dir: Path | None = None) -> DatasetBundle:
    """Images and labels from one `.npz` file (see the module docstring).

    Args:
        data_dir: the `.npz` file (named `--data-dir` for uniformity with the other datasets).

    Returns:
        The bundle; images float32 (N, C, H, W) in [0, 1].

    Raises:
        DataError: if the file is missing or its arrays do not have the documented form.
    """
    path = require_data_dir(data_dir, "npz", _WHAT)
    arrays = _read_npz(path)
    a = _pick(arrays, path)
    x_tr, x_te = a["x_train"], a["x_test"]
    if x_tr.shape[1:] != x_te.shape[1:]:
        raise DataError(
            f"{str(path)!r}: train images are {tuple(x_tr.shape[1:])} but test images "
            f"{tuple(x_te.shape[1:])}; they must have one shape"
        )
    y_tr = _labels(a["y_train"], len(x_tr), path, "y_train")
    y_te = _labels(a["y_test"], len(x_te), path, "y_test")
    classes = _names(arrays, "classes", [y_tr, y_te], path)
    bundle = DatasetBundle(
        name="npz", x_train=x_tr, y_train=labels_tensor(y_tr), x_test=x_te,
        y_test=labels_tensor(y_te), classes=classes, source=str(path),
    )
    if a["coarse_train"] is not None:
        c_tr = _labels(a["coarse_train"], len(x_tr), path, "coarse labels (train)")
        c_te = _labels(a["coarse_test"], len(x_te), path, "coarse labels (test)")
        bundle.coarse_train, bundle.coarse_test = labels_tensor(c_tr), labels_tensor(c_te)
        bundle.coarse_classes = _names(arrays, "coarse_classes", [c_tr, c_te], path)
    return bundle

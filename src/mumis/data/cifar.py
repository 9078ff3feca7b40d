"""CIFAR-10 and CIFAR-100 (with its 20 superclasses, "CIFAR-20") from the python-version folders.

The files are Python pickles. `pickle.load` would run whatever code a file names, so they are
read with `SafeUnpickler`, which only lets through the few globals needed to rebuild numpy
arrays; anything else (``os.system``, ``builtins.eval``, ...) is refused with a DataError.

`--data-dir` may point at the extracted folder itself (`cifar-10-batches-py`,
`cifar-100-python`) or at its parent. Nothing is downloaded.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from ..exceptions import DataError
from .base import DatasetBundle, register_dataset
from .common import check_file_labels, labels_tensor, require_data_dir, uint8_images


def _numpy_globals() -> dict[tuple[str, str], Any]:
    """The only globals a CIFAR pickle may name, mapped to the objects they stand for."""
    try:  # numpy >= 2 moved numpy.core to numpy._core; files written by either name both
        from numpy._core import multiarray, numeric
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray, numeric  # type: ignore[no-redef]
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        # bytes pickled by Python 3 with protocol <= 2 are rebuilt as _codecs.encode(str, "latin1")
        ("_codecs", "encode"): _latin1_encode,
    }
    for mod in ("numpy.core", "numpy._core"):
        allowed[f"{mod}.multiarray", "_reconstruct"] = multiarray._reconstruct
        allowed[f"{mod}.numeric", "_frombuffer"] = numeric._frombuffer  # type: ignore[attr-defined]  # protocol 5
    return allowed


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """A safe stand-in for `_codecs.encode`: only str -> bytes with latin1 (what pickle uses)."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise DataError("pickle asks for _codecs.encode with unexpected arguments; refusing it")
    return text.encode("latin1")


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that rebuilds plain containers and numpy arrays and nothing else.

    Args:
        file: binary stream of the pickle.
        path: the file's path, named in error messages.
    """

    def __init__(self, file: io.BufferedIOBase | io.BytesIO, path: str = "<pickle>") -> None:
        super().__init__(file, encoding="bytes")  # Python 2 str -> bytes (CIFAR keys are b"data")
        self._path = path
        self._allowed = _numpy_globals()

    def find_class(self, module: str, name: str) -> Any:
        """Return an allowed global; DataError for everything else."""
        obj = self._allowed.get((module, name))
        if obj is None:
            raise DataError(
                f"refusing to load {self._path!r}: the pickle asks for {module}.{name}, which a "
                "CIFAR file never needs; the file is not a CIFAR batch and may be malicious"
            )
        return obj

    def persistent_load(self, pid: Any) -> Any:
        raise DataError(f"refusing to load {self._path!r}: it uses persistent ids")


def safe_load_pickle(path: Path) -> Any:
    """Read one pickle with `SafeUnpickler`.

    Raises:
        DataError: if the file is missing, corrupt, truncated or names a forbidden global.
    """
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read {str(path)!r} ({e.strerror or e})") from None
    try:
        return SafeUnpickler(io.BytesIO(data), str(path)).load()
    except DataError:
        raise
    except Exception as e:  # any parse failure of an untrusted file is a data problem
        raise DataError(
            f"{str(path)!r} is not a readable CIFAR pickle ({type(e).__name__}: {e}); "
            "re-extract the python version of the archive"
        ) from None


def _as_dict(obj: Any, path: Path, keys: tuple[str, ...]) -> dict[str, Any]:
    """Check a pickle is a dict holding `keys`; bytes keys are decoded to str."""
    if not isinstance(obj, dict):
        raise DataError(f"{str(path)!r} holds a {type(obj).__name__}, not a CIFAR dict")
    out = {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in obj.items()}
    missing = [k for k in keys if k not in out]
    if missing:
        raise DataError(
            f"{str(path)!r} has no {missing[0]!r} entry (it has {sorted(out)}); "
            "is it a file of the other CIFAR version?"
        )
    return out


def _names(value: Any, path: Path, key: str) -> list[str]:
    if not isinstance(value, (list, tuple)) or not value:
        raise DataError(f"{str(path)!r}: {key!r} is not a list of class names")
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in value]


def _rows(value: Any, path: Path) -> np.ndarray:
    """CIFAR rows (N, 3072: 1024 red, 1024 green, 1024 blue) -> uint8 (N, 3, 32, 32)."""
    if not isinstance(value, np.ndarray) or value.dtype != np.uint8 or value.size % 3072:
        shape = getattr(value, "shape", "?")
        raise DataError(
            f"{str(path)!r}: 'data' is {type(value).__name__} {shape}, expected uint8 (N, 3072)"
        )
    return value.reshape(-1, 3, 32, 32)


def _labels(value: Any, n: int, num_classes: int, path: Path, key: str) -> np.ndarray:
    try:
        y = np.asarray(value)
    except Exception:  # odd objects from an untrusted file: reported just below
        y = np.zeros(0)
    if y.shape != (n,) or y.dtype.kind not in "iu":
        raise DataError(
            f"{str(path)!r}: {key!r} should be {n} integer labels, got {y.dtype} {y.shape}"
        )
    check_file_labels(y, num_classes, f"{str(path)!r} {key!r}", "is the file from this CIFAR version?")
    return y


def _find_root(data_dir: Path | None, dataset: str, folder: str, probe: str) -> Path:
    """The extracted folder: `data_dir` itself if it holds `probe`, else `data_dir/folder`."""
    what = f"the extracted {folder} folder or its parent"
    root = require_data_dir(data_dir, dataset, what)
    for cand in (root, root / folder):
        if (cand / probe).is_file():
            return cand
    hint = ""
    if any(root.glob("cifar-*python.tar.gz")):
        hint = " (found the .tar.gz archive: extract it first with tar xzf)"
    raise DataError(
        f"dataset {dataset!r}: no {probe} in {str(root)!r} or {str(root / folder)!r}{hint}; "
        f"pass --data-dir pointing at {what}"
    )


def _need(root: Path, name: str, dataset: str) -> Path:
    p = root / name
    if not p.is_file():
        raise DataError(f"dataset {dataset!r}: {str(p)!r} is missing; re-extract the archive")
    return p


@register_dataset("cifar10")
def load_cifar10(data_dir: Path | None = None) -> DatasetBundle:
    """CIFAR-10 (50k/10k, 3x32x32, 10 classes) from `cifar-10-batches-py`.

    Raises:
        DataError: if `data_dir` is missing, a file is absent or corrupt, or a pickle is unsafe.
    """
    root = _find_root(data_dir, "cifar10", "cifar-10-batches-py", "batches.meta")
    meta = _as_dict(safe_load_pickle(_need(root, "batches.meta", "cifar10")), root / "batches.meta",
                    ("label_names",))
    classes = _names(meta["label_names"], root / "batches.meta", "label_names")
    xs, ys = [], []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        path = _need(root, name, "cifar10")
        d = _as_dict(safe_load_pickle(path), path, ("data", "labels"))
        xs.append(_rows(d["data"], path))
        ys.append(_labels(d["labels"], len(xs[-1]), len(classes), path, "labels"))
    # join the uint8 batches first: one float copy of the training set, not two
    return DatasetBundle(
        name="cifar10",
        x_train=uint8_images(np.concatenate(xs[:5])), y_train=labels_tensor(np.concatenate(ys[:5])),
        x_test=uint8_images(xs[5]), y_test=labels_tensor(ys[5]),
        classes=classes, source=str(root),
    )


def _check_grouping(fine: np.ndarray, coarse: np.ndarray, path: Path) -> None:
    """Each fine class must lie in exactly one superclass, or sub-class forgetting is ill-posed."""
    pairs = np.unique(np.stack([fine, coarse]), axis=1)  # (2, distinct (fine, coarse) pairs)
    if len(np.unique(pairs[0])) != pairs.shape[1]:
        raise DataError(
            f"{str(path)!r}: some fine class appears under several coarse labels; "
            "the fine_labels and coarse_labels do not belong together"
        )


@register_dataset("cifar100")
def load_cifar100(data_dir: Path | None = None) -> DatasetBundle:
    """CIFAR-100 (50k/10k, 3x32x32) with fine labels and the 20 superclass (coarse) labels.

    Raises:
        DataError: if `data_dir` is missing, a file is absent or corrupt, or a pickle is unsafe.
    """
    root = _find_root(data_dir, "cifar100", "cifar-100-python", "meta")
    meta_path = root / "meta"
    meta = _as_dict(safe_load_pickle(meta_path), meta_path,
                    ("fine_label_names", "coarse_label_names"))
    fine = _names(meta["fine_label_names"], meta_path, "fine_label_names")
    coarse = _names(meta["coarse_label_names"], meta_path, "coarse_label_names")
    parts = {}
    for split in ("train", "test"):
        path = _need(root, split, "cifar100")
        d = _as_dict(safe_load_pickle(path), path, ("data", "fine_labels", "coarse_labels"))
        x = uint8_images(_rows(d["data"], path))
        y = _labels(d["fine_labels"], len(x), len(fine), path, "fine_labels")
        yc = _labels(d["coarse_labels"], len(x), len(coarse), path, "coarse_labels")
        _check_grouping(y, yc, path)
        parts[split] = (x, labels_tensor(y), labels_tensor(yc))
    (x_tr, y_tr, c_tr), (x_te, y_te, c_te) = parts["train"], parts["test"]
    return DatasetBundle(
        name="cifar100", x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te,
        classes=fine, source=str(root),
        coarse_train=c_tr, coarse_test=c_te, coarse_classes=coarse,
    )

"""MNIST and Fashion-MNIST from the standard IDX files (gzipped or raw).

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number of dimensions),
one big-endian uint32 per dimension, then the values in C order. Only what the header promises
is accepted: a truncated or padded file is an error, not a silently shorter dataset.

Fashion-MNIST is read by default from the Debian package `dataset-fashion-mnist`
(`/usr/share/datasets/fashion-mnist`); MNIST has no default location.

Fashion-MNIST superclasses (for `subclass:NAME` forgetting; models then train on these four
labels and one fine class is forgotten):

====  ====================  ===========================================
id    superclass            fine classes
====  ====================  ===========================================
0     tops                  T-shirt/top, Pullover, Coat, Shirt
1     bottoms-and-dresses   Trouser, Dress
2     footwear              Sandal, Sneaker, Ankle boot
3     bags                  Bag
====  ====================  ===========================================

`bags` has a single fine class, so `subclass:Bag` empties its superclass: prefer a fine class
of one of the first three groups for a true sub-class scenario.
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np
import torch

from ..exceptions import DataError
from .base import DatasetBundle, register_dataset
from .common import check_file_labels, labels_tensor, uint8_images

FASHION_MNIST_DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")

FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
FASHION_MNIST_COARSE_CLASSES = ["tops", "bottoms-and-dresses", "footwear", "bags"]
#: fine class id -> superclass id (see the module docstring)
FASHION_MNIST_COARSE_OF = np.array([0, 1, 0, 1, 0, 2, 0, 2, 3, 2], dtype=np.int64)

#: IDX type code -> big-endian numpy dtype
_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"

#: the four files of a dataset: (split, kind) -> base name
_FILES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (gzipped or raw, detected by its magic bytes).

    Args:
        path: the file.

    Returns:
        The array, in native byte order, shaped as the header says.

    Raises:
        DataError: if the file cannot be read, is not IDX, or its size does not match its header.
    """
    raw = _read_bytes(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataError(
            f"{str(path)!r} is not an IDX file (bad magic number {raw[:4].hex() or 'none'}); "
            "expected the MNIST-format files train-images-idx3-ubyte etc."
        )
    dtype, ndim = _IDX_DTYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(
            f"{str(path)!r} is truncated inside its IDX header; re-download or re-extract it"
        )
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = header + math.prod(dims) * dtype.itemsize  # Python ints: no overflow
    if len(raw) != expected:
        state = "truncated" if len(raw) < expected else "longer than its header says"
        raise DataError(
            f"{str(path)!r} is {state}: header shape {dims} needs {expected} bytes, the file has "
            f"{len(raw)}; re-download or re-extract it"
        )
    arr = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=False)


def _read_bytes(path: Path) -> bytes:
    """Whole file content, gunzipped when it starts with the gzip magic bytes."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
        if raw[:2] == _GZIP_MAGIC:
            raw = gzip.decompress(raw)
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise DataError(
            f"{str(path)!r} is a corrupt or truncated gzip file ({e}); re-download it"
        ) from None
    except OSError as e:
        raise DataError(f"cannot read {str(path)!r} ({e.strerror or e})") from None
    return raw


def _candidates(root: Path, base: str) -> list[Path]:
    """Where one file may lie: the folder or a torchvision-style `raw/` below it; raw first."""
    alt = base.replace("-idx", ".idx")  # some mirrors name them train-images.idx3-ubyte
    folders = [root, root / "raw"]
    return [d / (n + ext) for d in folders for n in (base, alt) for ext in ("", ".gz")]


def find_idx_files(root: Path, dataset: str) -> dict[tuple[str, str], Path]:
    """Locate the four IDX files under `root`.

    Raises:
        DataError: naming the folder and the first missing file.
    """
    if not root.is_dir():
        raise DataError(
            f"dataset {dataset!r}: {str(root)!r} is not a folder; pass --data-dir pointing at the "
            "folder holding train-images-idx3-ubyte[.gz] and the three other IDX files"
        )
    found: dict[tuple[str, str], Path] = {}
    for key, base in _FILES.items():
        hit = next((p for p in _candidates(root, base) if p.is_file()), None)
        if hit is None:
            raise DataError(
                f"dataset {dataset!r}: no {base} or {base}.gz in {str(root)!r}; pass --data-dir "
                "pointing at the folder holding the four IDX files (train/t10k images and labels)"
            )
        found[key] = hit
    return found


def _load_split(images: Path, labels: Path, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    x = read_idx(images)
    y = read_idx(labels)
    if x.ndim != 3 or x.dtype != np.uint8:
        raise DataError(
            f"{str(images)!r} holds a {x.dtype} array of shape {x.shape}; expected uint8 images "
            "(N, H, W): is it a labels file?"
        )
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise DataError(f"{str(labels)!r} holds {y.dtype} {y.shape}; expected integer labels (N,)")
    if len(x) != len(y):
        raise DataError(
            f"{str(images)!r} has {len(x)} images but {str(labels)!r} has {len(y)} labels; "
            "the files do not belong together"
        )
    check_file_labels(y, num_classes, str(labels), "are these the right label files?")
    return uint8_images(x[:, None]), labels_tensor(y)  # (N, 1, H, W), (N,)


def load_idx_dataset(
    root: Path,
    name: str,
    classes: list[str],
    coarse_of: np.ndarray | None = None,
    coarse_classes: list[str] | None = None,
) -> DatasetBundle:
    """Load an MNIST-format dataset from its four IDX files.

    Args:
        root: the folder holding the files.
        name: registry name stored in the bundle.
        classes: fine class names.
        coarse_of: optional fine id -> superclass id table.
        coarse_classes: superclass names (with `coarse_of`).

    Returns:
        The bundle, images (N, 1, H, W) float32 in [0, 1].

    Raises:
        DataError: on missing, corrupt or inconsistent files.
    """
    files = find_idx_files(root, name)
    x_tr, y_tr = _load_split(files["train", "images"], files["train", "labels"], len(classes))
    x_te, y_te = _load_split(files["test", "images"], files["test", "labels"], len(classes))
    if x_tr.shape[1:] != x_te.shape[1:]:
        raise DataError(
            f"dataset {name!r} in {str(root)!r}: train images are {tuple(x_tr.shape[2:])} but test "
            f"images {tuple(x_te.shape[2:])}; the files come from different datasets"
        )
    bundle = DatasetBundle(
        name=name, x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te,
        classes=list(classes), source=str(root),
    )
    if coarse_of is not None:
        table = torch.from_numpy(coarse_of)
        bundle.coarse_train, bundle.coarse_test = table[y_tr], table[y_te]
        bundle.coarse_classes = list(coarse_classes or [])
    return bundle


@register_dataset("mnist")
def load_mnist(data_dir: Path | None = None) -> DatasetBundle:
    """MNIST handwritten digits (60k/10k, 1x28x28) from the IDX files in `data_dir`.

    Raises:
        DataError: if `data_dir` is not given or the files are missing or corrupt.
    """
    what = "the folder holding the MNIST IDX files (train-images-idx3-ubyte[.gz], ...)"
    if data_dir is None:
        raise DataError(
            f"dataset 'mnist' has no default location; pass --data-dir pointing at {what}"
        )
    return load_idx_dataset(data_dir, "mnist", [str(i) for i in range(10)])


@register_dataset("fashion-mnist")
def load_fashion_mnist(data_dir: Path | None = None) -> DatasetBundle:
    """Fashion-MNIST (60k/10k, 1x28x28) with its four-superclass grouping.

    Args:
        data_dir: folder of the IDX files; default `/usr/share/datasets/fashion-mnist`.

    Raises:
        DataError: if the files are missing (with how to install them) or corrupt.
    """
    if data_dir is None:
        data_dir = FASHION_MNIST_DEFAULT_DIR
        if not data_dir.is_dir():
            raise DataError(
                f"dataset 'fashion-mnist': default folder {str(data_dir)!r} not found; install the "
                "Debian package dataset-fashion-mnist (apt-get install dataset-fashion-mnist) or "
                "pass --data-dir pointing at the folder holding its four IDX files"
            )
    return load_idx_dataset(
        data_dir, "fashion-mnist", FASHION_MNIST_CLASSES,
        coarse_of=FASHION_MNIST_COARSE_OF, coarse_classes=FASHION_MNIST_COARSE_CLASSES,
    )

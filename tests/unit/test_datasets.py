"""Dataset loaders on small files written in the real formats (IDX, CIFAR pickles, PNG, npz)."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from mumis.data import DATASETS, load_dataset, parse_dataset_name
from mumis.data.cifar import SafeUnpickler, safe_load_pickle
from mumis.data.common import stratified_split, stratified_subset
from mumis.data.idx import FASHION_MNIST_CLASSES, FASHION_MNIST_DEFAULT_DIR, read_idx
from mumis.exceptions import ConfigError, DataError

RNG = np.random.default_rng(0)


def test_registry_has_every_dataset() -> None:
    names = {"digits", "mnist", "fashion-mnist", "cifar10", "cifar100", "imagefolder", "npz"}
    assert names <= set(DATASETS.names())


def _check_bundle(b, n_train: int, n_test: int, shape: tuple[int, ...]) -> None:  # noqa: ANN001
    assert b.x_train.shape == (n_train, *shape) and b.x_test.shape == (n_test, *shape)
    assert b.x_train.dtype == torch.float32 and b.y_train.dtype == torch.int64
    assert b.y_test.dtype == torch.int64 and b.y_train.shape == (n_train,)
    for x in (b.x_train, b.x_test):
        assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0


# ---------------------------------------------------------------- IDX (MNIST, Fashion-MNIST)

IDX_NAMES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def idx_bytes(arr: np.ndarray) -> bytes:
    """The IDX encoding of a uint8 array: magic (0, 0, 0x08, ndim), big-endian dims, data."""
    header = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(np.uint8).tobytes()


def write_idx_dataset(root: Path, gz: bool, n_train: int = 12, n_test: int = 6) -> dict:
    root.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x = RNG.integers(0, 256, size=(n, 5, 4), dtype=np.uint8)
        y = (np.arange(n) % 10).astype(np.uint8)
        for name, arr in zip(IDX_NAMES[split], (x, y), strict=True):
            data = idx_bytes(arr)
            path = root / (name + (".gz" if gz else ""))
            path.write_bytes(gzip.compress(data) if gz else data)
        out[split] = (x, y)
    return out


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_from_idx_files(tmp_path: Path, gz: bool) -> None:
    arrays = write_idx_dataset(tmp_path, gz)
    b = load_dataset("mnist", tmp_path)
    _check_bundle(b, 12, 6, (1, 5, 4))
    x, y = arrays["train"]
    assert torch.equal(b.x_train[:, 0], torch.from_numpy(x).float() / 255)
    assert b.y_train.tolist() == y.tolist()
    assert b.classes == [str(i) for i in range(10)] and b.coarse_classes is None


def test_fashion_mnist_superclasses(tmp_path: Path) -> None:
    write_idx_dataset(tmp_path, gz=True, n_train=20)
    b = load_dataset("fashion-mnist", tmp_path)
    assert b.classes == FASHION_MNIST_CLASSES
    assert b.coarse_classes == ["tops", "bottoms-and-dresses", "footwear", "bags"]
    fine_to_coarse = dict(zip(b.y_train.tolist(), b.coarse_train.tolist(), strict=True))
    assert fine_to_coarse == {0: 0, 1: 1, 2: 0, 3: 1, 4: 0, 5: 2, 6: 0, 7: 2, 8: 3, 9: 2}
    assert b.coarse_test.shape == b.y_test.shape and b.num_classes_in("coarse") == 4


def test_idx_torchvision_raw_layout(tmp_path: Path) -> None:
    write_idx_dataset(tmp_path / "raw", gz=False)
    assert len(load_dataset("mnist", tmp_path).y_train) == 12


def test_mnist_needs_data_dir() -> None:
    with pytest.raises(DataError, match="--data-dir"):
        load_dataset("mnist")


def test_idx_missing_folder_names_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match="nowhere"):
        load_dataset("mnist", missing)


def test_idx_missing_file_names_it(tmp_path: Path) -> None:
    write_idx_dataset(tmp_path, gz=True)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte"):
        load_dataset("mnist", tmp_path)


@pytest.mark.parametrize("gz", [True, False])
def test_truncated_idx_is_refused(tmp_path: Path, gz: bool) -> None:
    data = idx_bytes(np.zeros((10, 5, 4), dtype=np.uint8))[:-7]
    path = tmp_path / "x"
    path.write_bytes(gzip.compress(data) if gz else data)
    with pytest.raises(DataError, match="truncated"):
        read_idx(path)


def test_truncated_gzip_stream_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros((10, 5, 4), dtype=np.uint8)))[:-20])
    with pytest.raises(DataError, match="gzip"):
        read_idx(path)


def test_idx_bad_magic_and_mismatched_counts(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x50\x4b\x03\x04" + bytes(20))
    with pytest.raises(DataError, match="not an IDX file"):
        read_idx(bad)
    write_idx_dataset(tmp_path / "d", gz=False)
    (tmp_path / "d" / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(5, np.uint8)))
    with pytest.raises(DataError, match="12 images but"):
        load_dataset("mnist", tmp_path / "d")


def test_idx_label_out_of_range(tmp_path: Path) -> None:
    write_idx_dataset(tmp_path, gz=False)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.full(6, 10, np.uint8)))
    with pytest.raises(DataError, match="10 classes"):
        load_dataset("mnist", tmp_path)


@pytest.mark.skipif(not FASHION_MNIST_DEFAULT_DIR.is_dir(), reason="dataset-fashion-mnist absent")
def test_real_fashion_mnist() -> None:
    b = load_dataset("fashion-mnist")
    assert (len(b.y_train), len(b.y_test)) == (60000, 10000)
    assert b.input_shape == (1, 28, 28) and b.x_train.dtype == torch.float32
    assert sorted(torch.bincount(b.y_test).tolist()) == [1000] * 10
    assert torch.bincount(b.coarse_test).tolist() == [4000, 2000, 3000, 1000]


# ---------------------------------------------------------------- CIFAR pickles


class Py2StylePickler(pickle._Pickler):  # type: ignore[name-defined]
    """Writes bytes and str as Python 2 `str` opcodes, like the original CIFAR files."""

    dispatch = dict(pickle._Pickler.dispatch)  # type: ignore[attr-defined]

    def save_py2_str(self, obj: bytes | str) -> None:
        raw = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str
    dispatch[str] = save_py2_str  # e.g. the dtype's "|u1" in the array state


def py2_dumps(obj: object) -> bytes:
    buf = io.BytesIO()
    Py2StylePickler(buf, protocol=2).dump(obj)
    # the original files name numpy's pre-2.0 module
    return buf.getvalue().replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")


def cifar_rows(n: int) -> np.ndarray:
    return RNG.integers(0, 256, size=(n, 3072), dtype=np.uint8)


def write_cifar10(parent: Path, dumps=pickle.dumps, n: int = 4) -> Path:  # noqa: ANN001
    root = parent / "cifar-10-batches-py"
    root.mkdir(parents=True)
    names = [s.encode() for s in ("airplane", "automobile", "bird", "cat", "deer",
                                  "dog", "frog", "horse", "ship", "truck")]
    (root / "batches.meta").write_bytes(dumps({b"label_names": names, b"num_vis": 3072}))
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        d = {b"batch_label": name.encode(), b"data": cifar_rows(n),
             b"labels": [(i + j) % 10 for j in range(n)],
             b"filenames": [f"{j}.png".encode() for j in range(n)]}
        (root / name).write_bytes(dumps(d))
    return root


def _dumps_with(protocol: int):  # noqa: ANN202
    return lambda obj: pickle.dumps(obj, protocol=protocol)


@pytest.mark.parametrize(
    "dumps", [pickle.dumps, py2_dumps, _dumps_with(2), _dumps_with(5)],
    ids=["py3", "py2-style", "protocol2", "protocol5"],  # protocol 2 uses _codecs.encode
)
def test_cifar10(tmp_path: Path, dumps) -> None:  # noqa: ANN001
    root = write_cifar10(tmp_path, dumps)
    for where in (tmp_path, root):  # the parent or the folder itself
        b = load_dataset("cifar10", where)
        _check_bundle(b, 20, 4, (3, 32, 32))
        assert b.classes[0] == "airplane" and b.classes[9] == "truck"
        assert b.y_train[:4].tolist() == [0, 1, 2, 3] and b.y_test.tolist() == [5, 6, 7, 8]
    # row layout: 1024 red, then green, then blue values, each 32x32 row-major
    rows = safe_load_pickle(root / "test_batch")[b"data"]
    assert torch.equal(b.x_test[1, 2, 0, 5], torch.tensor(rows[1, 2048 + 5] / 255.0).float())


def test_cifar100_fine_and_coarse(tmp_path: Path) -> None:
    root = tmp_path / "cifar-100-python"
    root.mkdir()
    fine = [f"fine{i}".encode() for i in range(100)]
    coarse = [f"coarse{i}".encode() for i in range(20)]
    (root / "meta").write_bytes(pickle.dumps({b"fine_label_names": fine,
                                              b"coarse_label_names": coarse}))
    for split, n in (("train", 10), ("test", 5)):
        y = list(range(0, 5 * n, 5))
        (root / split).write_bytes(pickle.dumps(
            {b"data": cifar_rows(n), b"fine_labels": y, b"coarse_labels": [v // 5 for v in y]}))
    b = load_dataset("cifar100", tmp_path)
    _check_bundle(b, 10, 5, (3, 32, 32))
    assert b.num_classes == 100 and b.classes[5] == "fine5"
    assert b.coarse_classes == [f"coarse{i}" for i in range(20)]
    assert b.coarse_train.tolist() == [v // 5 for v in b.y_train.tolist()]
    assert b.coarse_test.dtype == torch.int64 and b.num_classes_in("coarse") == 20


class Evil:
    def __reduce__(self):  # noqa: ANN204
        return (os.system, ("echo pwned > /dev/null",))


def test_malicious_pickle_is_refused(tmp_path: Path) -> None:
    root = write_cifar10(tmp_path)
    (root / "data_batch_3").write_bytes(pickle.dumps({b"data": Evil()}))
    with pytest.raises(DataError, match=r"refusing.*(posix|os)\.system"):
        load_dataset("cifar10", root)
    for payload in (pickle.dumps(eval), pickle.dumps(Path("x"))):  # builtins.eval, pathlib
        with pytest.raises(DataError, match="refusing"):
            SafeUnpickler(io.BytesIO(payload), "p").load()


def test_cifar_missing_and_corrupt_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="--data-dir"):
        load_dataset("cifar10")
    with pytest.raises(DataError, match="batches.meta"):
        load_dataset("cifar10", tmp_path)
    root = write_cifar10(tmp_path / "c")
    (root / "data_batch_2").unlink()
    with pytest.raises(DataError, match="data_batch_2"):
        load_dataset("cifar10", root)
    (root / "data_batch_2").write_bytes((root / "data_batch_1").read_bytes()[:100])
    with pytest.raises(DataError, match="not a readable CIFAR pickle"):
        load_dataset("cifar10", root)
    with pytest.raises(DataError, match="fine_label_names"):  # a CIFAR-10 folder given as 100
        (root / "meta").write_bytes((root / "batches.meta").read_bytes())
        load_dataset("cifar100", root)


# ---------------------------------------------------------------- image folders

def _write_pngs(folder: Path, n: int, size: tuple[int, int], mode: str) -> None:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    channels = 1 if mode == "L" else 3
    for i in range(n):
        arr = RNG.integers(0, 256, size=(size[1], size[0], channels), dtype=np.uint8)
        Image.fromarray(arr[..., 0] if channels == 1 else arr, mode).save(folder / f"{i}.png")


def test_imagefolder_flat_split_rgb(tmp_path: Path) -> None:
    pytest.importorskip("PIL")
    for name, n in (("dog", 5), ("cat", 10)):
        _write_pngs(tmp_path / name, n, (6, 4), "RGB")
    (tmp_path / "cat" / "notes.txt").write_text("not an image")  # ignored
    b = load_dataset("imagefolder", tmp_path)
    assert b.classes == ["cat", "dog"]  # sorted
    _check_bundle(b, 12, 3, (3, 4, 6))
    assert b.y_test.tolist() == [0, 0, 1]  # stratified 80/20: 2 cats, 1 dog
    assert torch.equal(load_dataset("imagefolder", tmp_path).x_test, b.x_test)  # fixed seed


def test_imagefolder_train_test_grey(tmp_path: Path) -> None:
    pytest.importorskip("PIL")
    for split, n in (("train", 3), ("test", 2)):
        for name in ("a", "b"):
            _write_pngs(tmp_path / split / name, n, (5, 5), "L")
    b = load_dataset("imagefolder", tmp_path)
    _check_bundle(b, 6, 4, (1, 5, 5))
    assert b.y_train.tolist() == [0, 0, 0, 1, 1, 1] and b.y_test.tolist() == [0, 0, 1, 1]


def test_imagefolder_errors(tmp_path: Path) -> None:
    pytest.importorskip("PIL")
    with pytest.raises(DataError, match="nope"):
        load_dataset("imagefolder", tmp_path / "nope")
    _write_pngs(tmp_path / "a", 3, (4, 4), "RGB")
    _write_pngs(tmp_path / "b", 3, (5, 4), "RGB")
    with pytest.raises(DataError, match="one size"):
        load_dataset("imagefolder", tmp_path)
    (tmp_path / "train").mkdir()
    with pytest.raises(DataError, match="no test/"):
        load_dataset("imagefolder", tmp_path)


def test_imagefolder_refuses_16_bit_and_broken_images(tmp_path: Path) -> None:
    image = pytest.importorskip("PIL.Image")
    _write_pngs(tmp_path / "a", 2, (4, 4), "L")
    _write_pngs(tmp_path / "b", 2, (4, 4), "L")
    image.fromarray(np.full((4, 4), 40000, np.uint16)).save(tmp_path / "b" / "wide.png")
    with pytest.raises(DataError, match="8-bit"):
        load_dataset("imagefolder", tmp_path)
    (tmp_path / "b" / "wide.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError, match="cannot read image"):
        load_dataset("imagefolder", tmp_path)


def test_imagefolder_without_pillow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a").mkdir()
    monkeypatch.setitem(__import__("sys").modules, "PIL", None)  # makes `import PIL` fail
    with pytest.raises(DataError, match="Pillow"):
        load_dataset("imagefolder", tmp_path)


# ---------------------------------------------------------------- npz


def test_npz_xy_nhwc_uint8(tmp_path: Path) -> None:
    x = RNG.integers(0, 256, size=(20, 4, 6, 3), dtype=np.uint8)  # NHWC
    y = np.repeat([0, 1], 10)
    path = tmp_path / "d.npz"
    np.savez(path, x=x, y=y, y_coarse=np.zeros(20, np.int64), classes=np.array(["no", "yes"]))
    b = load_dataset("npz", path)
    _check_bundle(b, 16, 4, (3, 4, 6))
    assert b.classes == ["no", "yes"] and b.y_test.tolist() == [0, 0, 1, 1]
    assert b.coarse_classes == ["0"] and b.coarse_train.shape == (16,)
    first = int(stratified_split(y)[0][0])
    assert torch.allclose(b.x_train[0], torch.from_numpy(x[first].transpose(2, 0, 1)) / 255.0)


def test_npz_given_split_nchw_nhw_float(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, x_train=RNG.random((6, 1, 3, 3), dtype=np.float32), y_train=np.arange(6) % 3,
             x_test=RNG.random((2, 1, 3, 3)), y_test=np.array([0, 2]),
             coarse_train=np.arange(6) % 2, coarse_test=np.array([0, 1]))
    b = load_dataset("npz", path)
    _check_bundle(b, 6, 2, (1, 3, 3))
    assert b.classes == ["0", "1", "2"] and b.coarse_test.tolist() == [0, 1]
    np.savez(path, x=RNG.random((10, 3, 3)), y=np.arange(10) % 2)  # NHW
    assert load_dataset("npz", path).input_shape == (1, 3, 3)


@pytest.mark.parametrize("arrays, message", [
    ({"x": np.full((4, 1, 2, 2), 2.0), "y": np.zeros(4, int)}, r"\[0, 1\]"),
    ({"x": np.zeros((4, 7)), "y": np.zeros(4, int)}, "shape"),
    ({"x": np.zeros((4, 2, 2)), "y": np.zeros(3, int)}, "integer labels"),
    ({"x": np.zeros((4, 2, 2)), "y": np.zeros(4, int), "x_train": np.zeros(1)}, "both"),
    ({"x_train": np.zeros((4, 2, 2)), "y_train": np.zeros(4, int)}, "all four"),
    ({"x": np.zeros((4, 2, 2)), "y": np.array([0, 0, 1, 1]), "classes": np.array(["a"])}, "name"),
    ({"images": np.zeros((4, 2, 2))}, "expected"),
])
def test_npz_invalid_content(tmp_path: Path, arrays: dict, message: str) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError, match=message):
        load_dataset("npz", path)


def test_npz_refuses_pickled_objects_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, x=np.array([{"a": 1}] * 4, dtype=object), y=np.zeros(4, int))
    with pytest.raises(DataError, match="plain arrays"):
        load_dataset("npz", path)
    with pytest.raises(DataError, match="missing.npz"):
        load_dataset("npz", tmp_path / "missing.npz")
    with pytest.raises(DataError, match="--data-dir"):
        load_dataset("npz")


def test_stratified_split_is_fixed_and_stratified() -> None:
    y = np.repeat([0, 1, 2], [10, 5, 1])
    tr, te = stratified_split(y)
    assert np.array_equal(np.sort(np.concatenate([tr, te])), np.arange(16))
    assert np.bincount(y[te], minlength=3).tolist() == [2, 1, 0]
    assert np.array_equal(stratified_split(y)[1], te)


# ---------------------------------------------------------------- fixed subsets NAME@TRAIN[/TEST]


def test_stratified_subset_exact_size_and_proportions() -> None:
    y = np.repeat(np.arange(3), [50, 30, 20])
    idx = stratified_subset(y, 11, seed=0)
    assert len(idx) == 11 and len(set(idx.tolist())) == 11 and list(idx) == sorted(idx)
    # quotas 5.5 / 3.3 / 2.2 -> floors 5 / 3 / 2, the largest remainder (class 0) gets the last one
    assert np.bincount(y[idx]).tolist() == [6, 3, 2]
    assert np.array_equal(idx, stratified_subset(y, 11, seed=0))
    assert not np.array_equal(idx, stratified_subset(y, 11, seed=1))


def test_dataset_subset_by_name() -> None:
    full = load_dataset("digits")
    sub = load_dataset("digits@500/100")
    assert sub.name == "digits@500/100" and (len(sub.y_train), len(sub.y_test)) == (500, 100)
    assert sub.classes == full.classes
    quota = np.bincount(full.y_train.numpy()) * 500 / len(full.y_train)
    assert np.abs(np.bincount(sub.y_train.numpy()) - quota).max() < 1  # each class in proportion
    # the samples are the full dataset's, at the subset's indices, the same every time
    idx = stratified_subset(full.y_train.numpy(), 500, seed=0)
    assert torch.equal(sub.x_train, full.x_train[torch.as_tensor(idx)])
    assert torch.equal(load_dataset("digits@500/100").x_train, sub.x_train)
    assert torch.equal(load_dataset("digits@500").x_test, full.x_test)  # test set kept whole
    assert parse_dataset_name("fashion-mnist@12000/2000") == ("fashion-mnist", 12000, 2000)
    assert parse_dataset_name("digits") == ("digits", None, None)


@pytest.mark.parametrize("name, message", [
    ("digitz@10", "unknown dataset 'digitz'"),
    ("digits@", "after '@' give the training subset size"),
    ("digits@10/0", "after '@'"),
    ("digits@1/2/3", "after '@'"),
    ("digits@ten", "after '@'"),
])
def test_dataset_subset_bad_names(name: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_dataset(name)
    with pytest.raises(DataError, match="asks for 99999 training samples; digits has 1437"):
        load_dataset("digits@99999")


def test_fashion_mnist_subset_keeps_superclasses(tmp_path: Path) -> None:
    write_idx_dataset(tmp_path, gz=True, n_train=20)
    full, sub = load_dataset("fashion-mnist", tmp_path), load_dataset("fashion-mnist@10/4", tmp_path)
    idx = torch.as_tensor(stratified_subset(full.y_train.numpy(), 10, seed=0))
    assert torch.equal(sub.coarse_train, full.coarse_train[idx])
    assert sub.coarse_classes == full.coarse_classes and len(sub.coarse_test) == 4

"""`imagefolder`: one sub-folder per class, images read with Pillow (imported lazily).

Layouts accepted under `--data-dir ROOT`:

- ``ROOT/train/<class>/*`` and ``ROOT/test/<class>/*``: the given split is used;
- ``ROOT/<class>/*``: a stratified 80/20 split with a fixed seed (the same for every run).

Class names are the sub-folder names, sorted. Images are not resized (the pixels stay the
user's): they must all have one size. They are converted to the mode of the first image,
grey ("L") when it is a grey mode, else RGB. Only 8-bit images are read (16-bit or float
ones would be clipped by the conversion, so they are refused).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..exceptions import DataError
from .base import DatasetBundle, register_dataset
from .common import labels_tensor, require_data_dir, stratified_split, uint8_images

IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}
)
_GREY_MODES = frozenset({"1", "L", "LA", "La"})


def _pil_image() -> Any:
    """Pillow's Image module, or a DataError saying how to install it."""
    try:
        from PIL import Image
    except ImportError:
        raise DataError(
            "reading an image folder needs Pillow, which is not installed; "
            "pip install pillow (it also comes with mumis[plot])"
        ) from None
    return Image


def _class_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _image_files(folder: Path) -> list[Path]:
    """Image files under one class folder (recursively), sorted, hidden files skipped."""
    return sorted(
        p for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def _list_split(root: Path, classes: list[str] | None) -> tuple[list[Path], list[int], list[str]]:
    """Files and labels of one split folder; `classes` fixes the label ids (test split)."""
    dirs = _class_dirs(root)
    if not dirs:
        raise DataError(
            f"{str(root)!r} has no class sub-folders; an image folder holds one sub-folder of "
            "images per class (or train/ and test/ folders of those)"
        )
    names = [d.name for d in dirs]
    if classes is not None:
        unknown = sorted(set(names) - set(classes))
        if unknown:
            raise DataError(
                f"{str(root)!r} has class folder {unknown[0]!r}, which train/ does not have; "
                "the test classes must be among the training classes"
            )
    classes = names if classes is None else classes
    files: list[Path] = []
    labels: list[int] = []
    for d in dirs:
        found = _image_files(d)
        if not found:
            raise DataError(
                f"class folder {str(d)!r} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}); "
                "remove it or add images"
            )
        files += found
        labels += [classes.index(d.name)] * len(found)
    return files, labels, classes


class _Reader:
    """Reads images into uint8 arrays of one mode and size, fixed by the first image."""

    def __init__(self) -> None:
        self.image = _pil_image()
        self.mode: str | None = None
        self.size: tuple[int, int] | None = None
        self.first: Path | None = None

    def read(self, path: Path) -> np.ndarray:
        """One image as uint8 (C, H, W).

        Raises:
            DataError: if it cannot be decoded or its size differs from the first image's.
        """
        try:
            with self.image.open(path) as im:
                im.load()
                if im.mode.startswith(("I", "F")):  # converting would clip to 255 silently
                    raise DataError(
                        f"{str(path)!r} has {im.mode} pixels (16/32-bit or float); "
                        "save the images as 8-bit grey or RGB"
                    )
                if self.mode is None:
                    self.mode = "L" if im.mode in _GREY_MODES else "RGB"
                    self.size, self.first = im.size, path
                if im.size != self.size:
                    (w, h), (w0, h0) = im.size, self.size or im.size
                    raise DataError(
                        f"{str(path)!r} is {w}x{h} but {str(self.first)!r} is {w0}x{h0}; all "
                        "images must have one size (mumis does not resize): resize them beforehand"
                    )
                arr = np.asarray(im.convert(self.mode), dtype=np.uint8)
        except DataError:
            raise
        except Exception as e:  # Pillow raises many types for unreadable files
            raise DataError(f"cannot read image {str(path)!r} ({type(e).__name__}: {e})") from None
        return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)  # (C, H, W)


def _read_all(reader: _Reader, files: list[Path]) -> torch.Tensor:
    x = np.stack([reader.read(p) for p in files])  # (N, C, H, W) uint8
    return uint8_images(x)


@register_dataset("imagefolder")
def load_imagefolder(data_dir: Path | None = None) -> DatasetBundle:
    """Images from a folder with one sub-folder per class (see the module docstring).

    Args:
        data_dir: the root folder.

    Returns:
        The bundle; images (N, 1 or 3, H, W) float32 in [0, 1].

    Raises:
        DataError: if the folder is missing or malformed, an image is unreadable, sizes differ,
            or Pillow is not installed.
    """
    what = "a folder with one sub-folder of images per class (or train/ and test/ folders of those)"
    root = require_data_dir(data_dir, "imagefolder", what)
    if not root.is_dir():
        raise DataError(
            f"dataset 'imagefolder': {str(root)!r} is not a folder; "
            f"pass --data-dir pointing at {what}"
        )
    has_train, has_test = (root / "train").is_dir(), (root / "test").is_dir()
    if has_train != has_test:
        present, absent = ("train", "test") if has_train else ("test", "train")
        raise DataError(
            f"{str(root)!r} has a {present}/ folder but no {absent}/ folder; give both, or put "
            "the class folders directly under the root for an automatic 80/20 split"
        )
    reader = _Reader()
    if has_train:
        f_tr, y_tr, classes = _list_split(root / "train", None)
        f_te, y_te, _ = _list_split(root / "test", classes)
        x_tr, x_te = _read_all(reader, f_tr), _read_all(reader, f_te)
        l_tr, l_te = np.asarray(y_tr), np.asarray(y_te)
    else:
        files, labels, classes = _list_split(root, None)
        x = _read_all(reader, files)
        y = np.asarray(labels)
        tr, te = stratified_split(y)
        if te.size == 0:
            raise DataError(
                f"{str(root)!r} has too few images for an 80/20 split (one per class); "
                "add images (at least two per class) or give train/ and test/ folders"
            )
        x_tr, x_te = x[torch.from_numpy(tr)], x[torch.from_numpy(te)]
        l_tr, l_te = y[tr], y[te]
    return DatasetBundle(
        name="imagefolder", x_train=x_tr, y_train=labels_tensor(l_tr), x_test=x_te,
        y_test=labels_tensor(l_te), classes=classes, source=str(root),
    )

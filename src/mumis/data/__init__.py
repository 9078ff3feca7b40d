"""Datasets, forget specifications and split manifests."""

from . import cifar, digits, folder, idx, npz  # noqa: F401  (register the datasets)
from .base import DATASETS, DatasetBundle, load_dataset, parse_dataset_name
from .forget import ForgetSpec, Manifest, full_manifest, parse_forget_spec, resolve_manifest
from .splits import Splits, check_splits, make_splits, splits_from_tensors

__all__ = [
    "DATASETS", "DatasetBundle", "ForgetSpec", "Manifest", "Splits", "check_splits", "full_manifest",
    "load_dataset", "make_splits", "parse_dataset_name", "parse_forget_spec", "resolve_manifest",
    "splits_from_tensors",
]

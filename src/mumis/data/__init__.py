"""Datasets, forget specifications and split manifests."""

from . import cifar, digits, folder, idx, npz  # noqa: F401  (register the datasets)
from .base import DATASETS, DatasetBundle, load_dataset, parse_dataset_name
from .forget import ForgetSpec, Manifest, full_manifest, parse_forget_spec, resolve_manifest
from .splits import Splits, make_splits

__all__ = [
    "DATASETS", "DatasetBundle", "ForgetSpec", "Manifest", "Splits", "full_manifest",
    "load_dataset", "make_splits", "parse_dataset_name", "parse_forget_spec", "resolve_manifest",
]

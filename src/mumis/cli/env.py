"""`mumis env`: versions, threads, devices and data locations, for bug reports."""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path
from typing import Any

#: Files of the IDX datasets (gzipped or not).
_IDX_FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
              "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("env", help="print versions, devices and data locations (for bug reports)",
                       description="Print library versions, torch threads, CUDA devices and where "
                                   "datasets are looked for.")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=run)


def _fashion_mnist_dir() -> Path:
    try:
        from ..data.idx import FASHION_MNIST_DEFAULT_DIR

        return Path(FASHION_MNIST_DEFAULT_DIR)
    except ImportError:  # loader module renamed: fall back to the Debian package's folder
        return Path("/usr/share/datasets/fashion-mnist")


def collect() -> dict[str, Any]:
    """Everything `mumis env` reports, as a JSON-ready dict."""
    import torch

    from ..data import DATASETS
    from ..utils import library_versions

    info: dict[str, Any] = {"versions": library_versions(), "platform": platform.platform()}
    info["torch"] = {
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "cpu_count": os.cpu_count(),
        "cuda_available": torch.cuda.is_available(),
        "cuda_version": torch.version.cuda,
        "devices": [
            {"index": i, "name": torch.cuda.get_device_name(i),
             "memory_gb": round(torch.cuda.get_device_properties(i).total_memory / 2**30, 1)}
            for i in range(torch.cuda.device_count())
        ] if torch.cuda.is_available() else [],
    }
    fm = _fashion_mnist_dir()
    present = [f for f in _IDX_FILES if (fm / f).is_file() or (fm / f"{f}.gz").is_file()]
    info["data"] = {
        "datasets": DATASETS.names(),
        "digits": "embedded in scikit-learn (no files needed)",
        "fashion-mnist": {"default_dir": str(fm), "present": len(present) == len(_IDX_FILES),
                          "files_found": len(present),
                          "install": "apt-get install dataset-fashion-mnist (Debian)"},
        "others": "mnist, cifar10, cifar100, npz, imagefolder: give --data-dir",
    }
    return info


def run(args: argparse.Namespace) -> int:
    info = collect()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print("versions:")
    for k, v in info["versions"].items():
        print(f"  {k:<13} {v}")
    print(f"platform:       {info['platform']}")
    t = info["torch"]
    print(f"torch threads:  {t['threads']} (interop {t['interop_threads']}, {t['cpu_count']} CPUs)")
    if t["cuda_available"]:
        print(f"cuda:           yes (CUDA {t['cuda_version']})")
        for d in t["devices"]:
            print(f"  cuda:{d['index']}  {d['name']}  {d['memory_gb']} GiB")
    else:
        print("cuda:           not available (runs on the CPU)")
    d = info["data"]
    print(f"datasets:       {', '.join(d['datasets'])}")
    print(f"  digits        {d['digits']}")
    fm = d["fashion-mnist"]
    state = "present" if fm["present"] else (f"MISSING ({fm['files_found']}/4 files; "
                                             f"{fm['install']} or give --data-dir)")
    print(f"  fashion-mnist {fm['default_dir']}: {state}")
    print(f"  others        {d['others']}")
    return 0

"""The bad-input sweep (issue 11): every verb and the Python API, table-driven.

Each CLI case runs `mumis.cli.main([...])` in a fresh, empty working directory and must exit 2
(1 for a diverged run, a runtime failure) with exactly one stderr line that starts with
`mumis: error:` and names the offending file or setting, no traceback, nothing left in the
working directory and the shared inputs (run directories, bad files) untouched. Each API case
must raise a ValueError subclass (ConfigError, DataError, CheckpointError, ModelError) with a
one-line message naming the offending argument. A few cases run the real console script.

The shared inputs (a tiny digits original, two retrained models, an unlearned run, a one-cell
bench and every bad file) are built once per module.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import mumis
from mumis.checkpoint import load_checkpoint, load_run_splits
from mumis.cli import main
from mumis.data import load_dataset, parse_forget_spec, resolve_manifest, splits_from_tensors

ORIGINAL_ARGS = ["--dataset", "digits", "--model", "mlp", "--device", "cpu"]


# ------------------------------------------------------------------------------- fixtures
def _write_bad_files(f: Path) -> None:
    """Every malformed input file the cases name, under `f`."""
    f.mkdir()
    (f / "bin.yaml").write_bytes(b"\x80\x81\xfe\xff" * 8)
    (f / "nul.yaml").write_bytes(b"lr: 1\x00\x00\x00")
    (f / "list.yaml").write_text("- lr\n- 1\n")
    (f / "broken.yaml").write_text("lr: [1, 2\n")
    (f / "tag.yaml").write_text("lr: !!python/object/apply:os.system ['echo pwned']\n")
    (f / "date.yaml").write_text("lr: 2001-13-45\n")
    (f / "deep.yaml").write_text("[" * 3000)
    (f / "folder.yaml").mkdir()
    (f / "other_method.yaml").write_text("method: grad_ascent\nlr: 0.001\n")
    (f / "unknown_key.yaml").write_text("method: mumis\nlearning_rate: 0.001\n")
    (f / "bad_value.yaml").write_text("method: mumis\nlr: fast\n")
    (f / "inf_value.yaml").write_text("method: mumis\nlr: .inf\n")
    (f / "method_int.yaml").write_text("method: 3\n")
    (f / "idx_text.txt").write_text("1 2 three\n")
    (f / "idx_neg.txt").write_text("1 -2 3\n")
    (f / "idx_big.txt").write_text("1 2 999999\n")
    (f / "idx_dup.txt").write_text("1 2 2\n")
    (f / "idx_empty.txt").write_text("\n")
    np.save(f / "idx_float.npy", np.array([1.0, 2.0]))
    np.save(f / "idx_obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    (f / "idx_bin.npy").write_bytes(b"\x93NUMPY garbage")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(60, 1, 8, 8), dtype=np.uint8)
    y = np.repeat(np.arange(3), 20)
    np.savez(f / "label7000.npz", x=x, y=np.where(np.arange(60) == 5, 7000, y))
    xf = rng.random((60, 1, 8, 8)).astype(np.float32)
    xf[3, 0, 2, 2] = np.nan
    np.savez(f / "nan_pixels.npz", x=xf, y=y)
    np.savez(f / "big_pixels.npz", x=xf * 0 + 2.0, y=y)
    np.savez(f / "neg_labels.npz", x=x, y=y - 1)
    np.savez(f / "float_labels.npz", x=x, y=y.astype(np.float32))
    np.savez(f / "no_y.npz", x=x)
    np.savez(f / "both_layouts.npz", x=x, y=y, x_train=x, y_train=y)
    np.savez(f / "half_split.npz", x_train=x, y_train=y)
    np.savez(f / "bad_shape.npz", x=x.reshape(60, 64), y=y)
    np.savez(f / "len_mismatch.npz", x=x, y=y[:50])
    np.savez(f / "obj.npz", x=np.array([object()] * 60, dtype=object), y=y)
    np.save(f / "single.npy", x)
    shutil.copy(f / "single.npy", f / "single_as.npz")
    (f / "text.npz").write_text("not a zip archive\n")
    (f / "a_file").write_text("I am a file\n")


def _bench_yaml(f: Path, file_name: str, **over: Any) -> None:
    cfg: dict[str, Any] = {"datasets": ["digits"], "models": ["mlp"], "scenarios": ["class:3"],
                           "methods": {"finetune": {"epochs": 1}}, "seeds": [0], "train": {"epochs": 1},
                           "metrics": ["accuracy"], "device": "cpu"}
    for k, v in over.items():
        if v is None:
            cfg.pop(k, None)
        else:
            cfg[k] = v
    (f / file_name).write_text(json.dumps(cfg))  # JSON is YAML


BENCHES: dict[str, dict[str, Any]] = {
    "b_unknown_key": {"datsets": ["digits"]},
    "b_missing_seeds": {"seeds": None},
    "b_unknown_dataset": {"datasets": ["digitz"]},
    "b_bad_subset": {"datasets": ["digits@0"]},
    "b_dup_dataset": {"datasets": ["digits", "digits"]},
    "b_unknown_model": {"models": ["mlpp"]},
    "b_unknown_method": {"methods": ["mumiss"]},
    "b_label_retrain": {"methods": {"retrain": {}}},
    "b_label_original": {"methods": {"original": {"method": "finetune"}}},
    "b_label_chars": {"methods": {"my method!": {"method": "finetune"}}},
    "b_method_setting": {"methods": {"finetune": {"epochz": 1}}},
    "b_method_inf": {"methods": {"finetune": {"lr": float("inf")}}},
    "b_method_nan_str": {"methods": {"finetune": {"lr": "nan"}}},
    "b_method_not_map": {"methods": {"finetune": 3}},
    "b_methods_empty": {"methods": {}},
    "b_preset_missing": {"methods": {"m": {"method": "mumis", "config": "no_such_preset.yaml"}}},
    "b_preset_binary": {"methods": {"m": {"method": "mumis", "config": "bin.yaml"}}},
    "b_preset_other": {"methods": {"m": {"method": "mumis", "config": "other_method.yaml"}}},
    "b_by_kind_unknown": {"methods": {"finetune": {"by_kind": {"klass": {"epochs": 2}}}}},
    "b_by_kind_not_map": {"methods": {"finetune": {"by_kind": {"class": 2}}}},
    "b_by_kind_bad": {"methods": {"finetune": {"by_kind": {"class": {"lr": -1}}}}},
    "b_seeds_neg": {"seeds": [-1]},
    "b_seeds_str": {"seeds": ["a"]},
    "b_seeds_dup": {"seeds": [0, 0]},
    "b_seeds_empty": {"seeds": []},
    "b_split_seed": {"split_seed": "sometimes"},
    "b_recipe": {"recipe": "slow"},
    "b_metrics_unknown": {"metrics": ["acuracy"]},
    "b_metrics_no_acc": {"metrics": ["mia"]},
    "b_device": {"device": "tpu"},
    "b_device_type": {"device": 3},
    "b_train_key": {"train": {"epochz": 1}},
    "b_train_inf": {"train": {"lr": float("inf")}},
    "b_train_not_map": {"train": [1]},
    "b_scenario_spec": {"scenarios": ["klass:3"]},
    "b_scenario_range": {"scenarios": ["class:99"]},
    "b_scenario_random": {"scenarios": ["random:1.5"]},
    "b_data_dirs_missing": {"data_dirs": {"digits": "/no/such/folder"}},
    "b_data_dirs_other": {"data_dirs": {"cifar10": "."}},
    "b_name": {"name": ["x"]},
}


@dataclass
class Env:
    root: Path

    def fmt(self, s: str) -> str:
        return s.replace("{R}", str(self.root))


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Env:
    root = tmp_path_factory.mktemp("sweep")
    f = root / "files"
    _write_bad_files(f)
    for name, over in BENCHES.items():
        _bench_yaml(f, f"{name}.yaml", **over)
    _bench_yaml(f, "b_ok.yaml")
    a = ORIGINAL_ARGS + ["--epochs", "1"]
    assert main(["-q", "train", *a, "--out", str(root / "orig")]) == 0
    assert main(["-q", "train", *a, "--forget", "class:3", "--out", str(root / "ret")]) == 0
    assert main(["-q", "train", *a, "--forget", "random:0.1", "--out", str(root / "ret_rand")]) == 0
    assert main(["-q", "unlearn", "--checkpoint", str(root / "orig"), "--forget", "class:3", "--method",
                 "mumis", "--set", "max_steps=1", "--device", "cpu", "--out", str(root / "unl")]) == 0
    assert main(["-q", "bench", "--config", str(f / "b_ok.yaml"), "--out", str(root / "bench")]) == 0
    _broken_runs(root)
    _broken_benches(root)
    return Env(root)


def _broken_runs(root: Path) -> None:
    """Run directories broken in every way a loader must notice."""
    orig = root / "orig"
    (root / "empty_dir").mkdir()
    for name, edit in {
        "meta_garbage": lambda d: (d / "meta.json").write_text("{not json"),
        "meta_binary": lambda d: (d / "meta.json").write_bytes(b"\x80\xff\x00"),
        "meta_format": lambda d: (d / "meta.json").write_text(json.dumps({"format": "other/1"})),
        "meta_list": lambda d: (d / "meta.json").write_text("[1, 2]"),
        "no_weights": lambda d: (d / "model.safetensors").unlink(),
        "trunc_weights": lambda d: (d / "model.safetensors").write_bytes(
            (orig / "model.safetensors").read_bytes()[:500]),
        "no_meta": lambda d: (d / "meta.json").unlink(),
        "user_code": lambda d: _user_code(d),
        "nan_weights": lambda d: _nan_weights(d),
        "shape_mismatch": lambda d: _edit_meta(d, lambda m: m["model"]["kwargs"].update(hidden=[8, 8])),
        "no_manifest": lambda d: _edit_meta(d, lambda m: m.pop("manifest")),
        "bad_manifest_hash": lambda d: _edit_meta(d, lambda m: m["manifest"].update(retain=m["manifest"]["retain"][:-1])),
    }.items():
        shutil.copytree(orig, root / name)
        edit(root / name)


def _edit_meta(d: Path, fn: Callable[[dict[str, Any]], Any]) -> None:
    meta = json.loads((d / "meta.json").read_text())
    fn(meta)
    (d / "meta.json").write_text(json.dumps(meta))


def _user_code(d: Path) -> None:
    (d / "payload.py").write_text("import pathlib\npathlib.Path('PWNED').write_text('x')\n"
                                  "def build(**kw):\n    raise SystemExit(3)\n")
    _edit_meta(d, lambda m: m["model"].update(name="payload:build"))


def _nan_weights(d: Path) -> None:
    from safetensors.torch import load_file, save_file

    state = load_file(str(d / "model.safetensors"))
    k = next(iter(state))
    state[k] = state[k].clone()
    state[k].view(-1)[0] = float("nan")
    save_file(state, str(d / "model.safetensors"), metadata={"format": "pt"})


def _broken_benches(root: Path) -> None:
    rec = sorted((root / "bench" / "records").glob("*.json"))[0]
    for name, data in {"rep_trunc": rec.read_bytes()[:40], "rep_list": b"[1, 2]",
                       "rep_format": json.dumps({"format": "x"}).encode(), "rep_binary": b"\x80\xff\xfe"}.items():
        shutil.copytree(root / "bench", root / name, ignore=shutil.ignore_patterns("report", "models", "runs"))
        (root / name / "records" / rec.name).write_bytes(data)
    (root / "rep_empty").mkdir()
    shutil.copytree(root / "bench", root / "rep_report_file", ignore=shutil.ignore_patterns("report", "models", "runs"))
    (root / "rep_report_file" / "report").write_text("a file where the report folder goes\n")


# ---------------------------------------------------------------------------------- cases
@dataclass(frozen=True)
class Case:
    id: str
    argv: tuple[str, ...]
    needle: str  # must appear in the message (case-insensitive): what was wrong
    rc: int = 2
    xfail: str = ""


def _c(id_: str, line: str, needle: str, rc: int = 2, xfail: str = "") -> Case:
    return Case(id_, tuple(line.split()), needle, rc, xfail)


F = "{R}/files"
TRAIN = "train --dataset digits --model mlp --epochs 1 --device cpu --out out"
UNL = "unlearn --checkpoint {R}/orig --forget class:3 --device cpu --out out"
UNLM = UNL + " --method mumis --set max_steps=1"
EVAL = "evaluate --checkpoint {R}/orig --forget class:3 --device cpu --metrics accuracy"
TUNE = "tune --checkpoint {R}/orig --reference {R}/ret --forget class:3 --device cpu --out out"
TUNEM = TUNE + " --method mumis --set max_steps=1"
DEMO = "demo --device cpu --out out"

CLI_CASES: list[Case] = [
    # ---- global / argparse
    _c("cli-unknown-verb", "trian", "invalid choice"),
    _c("cli-unknown-flag", "--bogus env", "unrecognized"),
    _c("cli-train-no-out", "train --dataset digits", "--out"),
    _c("cli-unlearn-no-forget", "unlearn --checkpoint x --out y", "--forget"),
    _c("cli-epochs-not-int", "train --epochs many --out out", "--epochs"),
    _c("cli-recipe-choice", "train --recipe slow --out out", "--recipe"),
    _c("cli-criterion-choice", TUNEM + " --grid lr=1e-4 --criterion best", "--criterion"),
    _c("cli-label-space-choice", TRAIN + " --label-space medium", "--label-space"),
    # ---- train
    _c("train-dataset-unknown", "train --dataset mnistt --out out", "mnistt"),
    _c("train-dataset-typo", "train --dataset digit --out out", "digits"),
    _c("train-subset-zero", "train --dataset digits@0 --out out", "digits@0"),
    _c("train-subset-text", "train --dataset digits@abc --out out", "digits@abc"),
    _c("train-subset-three", "train --dataset digits@10/10/10 --out out", "digits@10/10/10"),
    _c("train-subset-too-big", "train --dataset digits@99999 --out out", "99999"),
    _c("train-subset-few-train", "train --dataset digits@5 --out out", "digits@5"),
    _c("train-seed-negative", TRAIN + " --seed -1", "--seed"),
    _c("train-split-seed-negative", TRAIN + " --forget random:0.1 --split-seed -4", "--split-seed"),
    _c("train-seed-text", TRAIN + " --seed one", "--seed"),
    _c("train-model-unknown", "train --model mlpp --out out", "mlpp"),
    _c("train-model-factory-missing", "train --model no_such_pkg.mod:fn --out out", "no_such_pkg"),
    _c("train-model-factory-bad-form", "train --model a:b:c --out out", "a:b:c"),
    _c("train-epochs-zero", TRAIN.replace("--epochs 1", "--epochs 0"), "epochs"),
    _c("train-epochs-negative", TRAIN.replace("--epochs 1", "--epochs -3"), "epochs"),
    _c("train-threads-zero", TRAIN + " --threads 0", "threads"),
    _c("train-set-no-equals", TRAIN + " --set lr", "lr"),
    _c("train-set-empty-key", TRAIN + " --set =1", "=1"),
    _c("train-set-unknown", TRAIN + " --set learning_rate=0.1", "learning_rate"),
    _c("train-set-lr-text", TRAIN + " --set lr=fast", "lr"),
    _c("train-set-lr-inf", TRAIN + " --set lr=inf", "finite"),
    _c("train-set-lr-yaml-inf", TRAIN + " --set lr=.inf", "finite"),
    _c("train-set-lr-nan", TRAIN + " --set lr=nan", "finite"),
    _c("train-set-wd-neg-inf", TRAIN + " --set weight_decay=-inf", "finite"),
    _c("train-set-lr-negative", TRAIN + " --set lr=-1", "lr"),
    _c("train-set-lr-date", TRAIN + " --set lr=2001-13-45", "lr"),
    _c("train-set-batch-zero", TRAIN + " --set batch_size=0", "batch_size"),
    _c("train-set-batch-float", TRAIN + " --set batch_size=1.5", "batch_size"),
    _c("train-set-schedule", TRAIN + " --set schedule=sometimes", "schedule"),
    _c("train-set-augment", TRAIN + " --set augment=maybe", "augment"),
    _c("train-set-model-key", TRAIN + " --set model.depth=3", "depth"),
    _c("train-set-model-hidden", TRAIN + " --set model.hidden=wide", "hidden"),
    _c("train-forget-no-colon", TRAIN + " --forget three", "three"),
    _c("train-forget-kind", TRAIN + " --forget klass:3", "klass"),
    _c("train-forget-empty-arg", TRAIN + " --forget class:", "class:"),
    _c("train-forget-class-text", TRAIN + " --forget class:three", "class:three"),
    _c("train-forget-class-range", TRAIN + " --forget class:99", "class 99"),
    _c("train-forget-every-class", TRAIN + " --forget class:0,1,2,3,4,5,6,7,8,9", "every class"),
    _c("train-forget-random-frac", TRAIN + " --forget random:1.5", "random:1.5"),
    _c("train-forget-random-zero", TRAIN + " --forget random:0", "random:0"),
    _c("train-forget-random-text", TRAIN + " --forget random:some", "random:some"),
    _c("train-forget-random-all", TRAIN + " --forget random:1437", "1437"),
    _c("train-forget-subclass", TRAIN + " --forget subclass:rose", "superclass"),
    _c("train-indices-missing", TRAIN + " --forget indices:nope.txt", "nope.txt"),
    _c("train-indices-text", TRAIN + f" --forget indices:{F}/idx_text.txt", "idx_text.txt"),
    _c("train-indices-negative", TRAIN + f" --forget indices:{F}/idx_neg.txt", "idx_neg.txt"),
    _c("train-indices-range", TRAIN + f" --forget indices:{F}/idx_big.txt", "idx_big.txt"),
    _c("train-indices-dup", TRAIN + f" --forget indices:{F}/idx_dup.txt", "idx_dup.txt"),
    _c("train-indices-empty", TRAIN + f" --forget indices:{F}/idx_empty.txt", "idx_empty.txt"),
    _c("train-indices-float", TRAIN + f" --forget indices:{F}/idx_float.npy", "idx_float.npy"),
    _c("train-indices-pickle", TRAIN + f" --forget indices:{F}/idx_obj.npy", "idx_obj.npy"),
    _c("train-indices-garbage", TRAIN + f" --forget indices:{F}/idx_bin.npy", "idx_bin.npy"),
    _c("train-indices-folder", TRAIN + f" --forget indices:{F}", "files"),
    _c("train-coarse-digits", TRAIN + " --label-space coarse", "superclass"),
    _c("train-device", TRAIN + " --device tpu", "tpu"),
    _c("train-device-index", TRAIN + " --device cpu:x", "cpu:x"),
    _c("train-mnist-no-dir", "train --dataset mnist --out out", "--data-dir"),
    _c("train-mnist-missing-dir", "train --dataset mnist --data-dir /no/such --out out", "/no/such"),
    _c("train-cifar-file", f"train --dataset cifar10 --data-dir {F}/a_file --out out", "a_file"),
    _c("train-folder-empty", "train --dataset imagefolder --data-dir {R}/empty_dir --out out", "empty_dir"),
    _c("train-npz-no-dir", "train --dataset npz --out out", "--data-dir"),
    _c("train-npz-label-7000", f"train --dataset npz --data-dir {F}/label7000.npz --out out", "label7000.npz"),
    _c("train-npz-nan", f"train --dataset npz --data-dir {F}/nan_pixels.npz --out out", "nan_pixels.npz"),
    _c("train-npz-big-pixels", f"train --dataset npz --data-dir {F}/big_pixels.npz --out out", "big_pixels.npz"),
    _c("train-npz-neg-labels", f"train --dataset npz --data-dir {F}/neg_labels.npz --out out", "neg_labels.npz"),
    _c("train-npz-float-labels", f"train --dataset npz --data-dir {F}/float_labels.npz --out out", "float_labels"),
    _c("train-npz-no-y", f"train --dataset npz --data-dir {F}/no_y.npz --out out", "no_y.npz"),
    _c("train-npz-both", f"train --dataset npz --data-dir {F}/both_layouts.npz --out out", "both_layouts"),
    _c("train-npz-half", f"train --dataset npz --data-dir {F}/half_split.npz --out out", "half_split"),
    _c("train-npz-shape", f"train --dataset npz --data-dir {F}/bad_shape.npz --out out", "bad_shape"),
    _c("train-npz-len", f"train --dataset npz --data-dir {F}/len_mismatch.npz --out out", "len_mismatch"),
    _c("train-npz-object", f"train --dataset npz --data-dir {F}/obj.npz --out out", "obj.npz"),
    _c("train-npz-single", f"train --dataset npz --data-dir {F}/single_as.npz --out out", "single_as.npz"),
    _c("train-npz-text", f"train --dataset npz --data-dir {F}/text.npz --out out", "text.npz"),
    _c("train-npz-folder", f"train --dataset npz --data-dir {F} --out out", "files"),
    _c("train-out-file", f"train --dataset digits --out {F}/a_file", "a_file"),
    _c("train-out-file-overwrite", f"train --dataset digits --out {F}/a_file --overwrite", "a_file"),
    _c("train-out-under-file", f"train --dataset digits --out {F}/a_file/run", "a_file"),
    _c("train-out-sys", "train --dataset digits --out /sys/mumis_run", "/sys/mumis_run"),
    _c("train-out-proc", "train --dataset digits --out /proc/no/run", "/proc/no/run"),
    _c("train-out-taken", "train --dataset digits --out {R}/orig", "orig"),
    _c("train-out-dot-overwrite", "train --dataset digits --epochs 1 --out . --overwrite", "'.'"),
    _c("train-out-foreign-overwrite", f"train --dataset digits --epochs 1 --out {F} --overwrite", "files"),
    # ---- unlearn
    _c("unlearn-checkpoint-missing", UNLM.replace("{R}/orig", "{R}/nope"), "nope"),
    _c("unlearn-checkpoint-file", UNLM.replace("{R}/orig", f"{F}/a_file"), "a_file"),
    _c("unlearn-checkpoint-empty", UNLM.replace("{R}/orig", "{R}/empty_dir"), "empty_dir"),
    _c("unlearn-meta-garbage", UNLM.replace("{R}/orig", "{R}/meta_garbage"), "meta_garbage"),
    _c("unlearn-meta-binary", UNLM.replace("{R}/orig", "{R}/meta_binary"), "meta_binary"),
    _c("unlearn-meta-format", UNLM.replace("{R}/orig", "{R}/meta_format"), "meta_format"),
    _c("unlearn-meta-list", UNLM.replace("{R}/orig", "{R}/meta_list"), "meta_list"),
    _c("unlearn-no-weights", UNLM.replace("{R}/orig", "{R}/no_weights"), "no_weights"),
    _c("unlearn-trunc-weights", UNLM.replace("{R}/orig", "{R}/trunc_weights"), "trunc_weights"),
    _c("unlearn-no-meta", UNLM.replace("{R}/orig", "{R}/no_meta"), "no_meta"),
    _c("unlearn-user-code", UNLM.replace("{R}/orig", "{R}/user_code"), "trust-model-code"),
    _c("unlearn-nan-weights", UNLM.replace("{R}/orig", "{R}/nan_weights"), "nan_weights"),
    _c("unlearn-shape-mismatch", UNLM.replace("{R}/orig", "{R}/shape_mismatch"), "shape_mismatch"),
    _c("unlearn-no-manifest", UNLM.replace("{R}/orig", "{R}/no_manifest"), "no_manifest"),
    _c("unlearn-manifest-altered", UNLM.replace("{R}/orig", "{R}/bad_manifest_hash"), "bad_manifest_hash"),
    _c("unlearn-split-seed-negative", UNLM.replace("class:3", "random:0.1") + " --split-seed -1", "--split-seed"),
    _c("unlearn-no-method", UNL, "--method"),
    _c("unlearn-method-unknown", UNL + " --method mumiss", "mumiss"),
    _c("unlearn-method-typo", UNL + " --method grad_acent", "grad_ascent"),
    _c("unlearn-config-missing", UNLM + " --config nope.yaml", "nope.yaml"),
    _c("unlearn-config-binary", UNLM + f" --config {F}/bin.yaml", "bin.yaml"),
    _c("unlearn-config-nul", UNLM + f" --config {F}/nul.yaml", "nul.yaml"),
    _c("unlearn-config-folder", UNLM + f" --config {F}/folder.yaml", "folder.yaml"),
    _c("unlearn-config-list", UNLM + f" --config {F}/list.yaml", "list.yaml"),
    _c("unlearn-config-broken", UNLM + f" --config {F}/broken.yaml", "broken.yaml"),
    _c("unlearn-config-tag", UNLM + f" --config {F}/tag.yaml", "tag.yaml"),
    _c("unlearn-config-date", UNLM + f" --config {F}/date.yaml", "date.yaml"),
    _c("unlearn-config-deep", UNLM + f" --config {F}/deep.yaml", "deep.yaml"),
    _c("unlearn-config-other-method", UNLM + f" --config {F}/other_method.yaml", "other_method.yaml"),
    _c("unlearn-config-unknown-key", UNL + f" --config {F}/unknown_key.yaml", "learning_rate"),
    _c("unlearn-config-bad-value", UNL + f" --config {F}/bad_value.yaml", "lr"),
    _c("unlearn-config-inf", UNL + f" --config {F}/inf_value.yaml", "finite"),
    _c("unlearn-config-method-int", UNL + f" --config {F}/method_int.yaml", "method_int.yaml"),
    _c("unlearn-set-unknown", UNLM + " --set learning_rate=1", "learning_rate"),
    _c("unlearn-set-lr-inf", UNLM + " --set lr=inf", "finite"),
    _c("unlearn-set-lr-nan", UNLM + " --set lr=nan", "finite"),
    _c("unlearn-set-lr-neg-inf", UNLM + " --set lr=-.inf", "finite"),
    _c("unlearn-set-steps-text", UNL + " --method mumis --set max_steps=many", "max_steps"),
    _c("unlearn-set-steps-zero", UNL + " --method mumis --set max_steps=0", "max_steps"),
    _c("unlearn-set-no-equals", UNLM + " --set lr", "lr"),
    _c("unlearn-diverges", UNL + " --method mumis --set lr=1e6", "diverged", rc=1),
    _c("unlearn-forget-bad", UNLM.replace("class:3", "klass:3"), "klass"),
    _c("unlearn-forget-range", UNLM.replace("class:3", "class:10"), "class 10"),
    _c("unlearn-forget-subclass", UNLM.replace("class:3", "subclass:1"), "superclass"),
    _c("unlearn-forget-indices", UNLM.replace("class:3", f"indices:{F}/idx_big.txt"), "idx_big.txt"),
    _c("unlearn-reference-missing", UNLM + " --reference {R}/nope", "nope"),
    _c("unlearn-reference-other-class", UNLM.replace("class:3", "class:4") + " --reference {R}/ret", "ret"),
    _c("unlearn-reference-random-seed", UNLM.replace("class:3", "random:0.1") + " --reference {R}/ret_rand"
       " --split-seed 3", "split seed"),
    _c("unlearn-reference-garbage", UNLM + " --reference {R}/meta_garbage", "meta_garbage"),
    _c("unlearn-seed-negative", UNLM + " --seed -1", "seed"),
    _c("unlearn-data-dir-missing", UNLM + " --data-dir /no/such/data", "/no/such/data"),
    _c("unlearn-device", UNLM + " --device tpu", "tpu"),
    _c("unlearn-out-file", UNLM.replace("--out out", f"--out {F}/a_file"), "a_file"),
    _c("unlearn-out-file-overwrite", UNLM.replace("--out out", f"--out {F}/a_file --overwrite"), "a_file"),
    _c("unlearn-out-under-file", UNLM.replace("--out out", f"--out {F}/a_file/x"), "a_file"),
    _c("unlearn-out-sys", UNLM.replace("--out out", "--out /sys/mumis_u"), "/sys/mumis_u"),
    _c("unlearn-out-taken", UNLM.replace("--out out", "--out {R}/unl"), "unl"),
    _c("unlearn-out-checkpoint-overwrite", UNLM.replace("--out out", "--out {R}/orig --overwrite"), "orig"),
    _c("unlearn-out-parent-overwrite", UNLM.replace("--out out", "--out {R} --overwrite"), "sweep"),
    _c("unlearn-retain-method-mismatch", UNL + " --method finetune --set epochs=0", "epochs"),
    # ---- evaluate
    _c("eval-checkpoint-missing", EVAL.replace("{R}/orig", "{R}/nope"), "nope"),
    _c("eval-checkpoint-file", EVAL.replace("{R}/orig", f"{F}/a_file"), "a_file"),
    _c("eval-checkpoint-empty", EVAL.replace("{R}/orig", "{R}/empty_dir"), "empty_dir"),
    _c("eval-meta-garbage", EVAL.replace("{R}/orig", "{R}/meta_garbage"), "meta_garbage"),
    _c("eval-trunc-weights", EVAL.replace("{R}/orig", "{R}/trunc_weights"), "trunc_weights"),
    _c("eval-nan-weights", EVAL.replace("{R}/orig", "{R}/nan_weights"), "nan_weights"),
    _c("eval-user-code", EVAL.replace("{R}/orig", "{R}/user_code"), "trust-model-code"),
    _c("eval-forget-bad", EVAL.replace("class:3", "class:x"), "class:x"),
    _c("eval-forget-range", EVAL.replace("class:3", "class:12"), "class 12"),
    _c("eval-reference-missing", EVAL + " --reference {R}/nope", "nope"),
    _c("eval-reference-other", EVAL.replace("class:3", "class:5") + " --reference {R}/ret", "ret"),
    _c("eval-reference-random-seed", EVAL.replace("class:3", "random:0.1") + " --reference {R}/ret_rand"
       " --split-seed 9", "split seed"),
    _c("eval-metrics-unknown", EVAL.replace("accuracy", "acuracy"), "acuracy"),
    _c("eval-metrics-empty", EVAL.replace("accuracy", ","), "--metrics"),
    _c("eval-json-folder", EVAL + f" --json {F}", "--json"),
    _c("eval-json-under-file", EVAL + f" --json {F}/a_file/m.json", "a_file"),
    _c("eval-json-sys", EVAL + " --json /sys/m.json", "/sys/m.json"),
    _c("eval-json-proc", EVAL + " --json /proc/no/m.json", "/proc/no/m.json"),
    _c("eval-plot-folder", EVAL + f" --plot {F}", "--plot"),
    _c("eval-plot-under-file", EVAL + f" --plot {F}/a_file/p.png", "a_file"),
    _c("eval-plot-ext", EVAL + " --plot hist.txt", "hist.txt"),
    _c("eval-plot-sys", EVAL + " --plot /sys/p.png", "/sys/p.png"),
    _c("eval-sens-samples", EVAL + " --sensitivity-samples 0", "--sensitivity-samples"),
    _c("eval-batch-size", EVAL + " --batch-size 0", "--batch-size"),
    _c("eval-data-dir", EVAL + " --data-dir /no/such/data", "/no/such/data"),
    _c("eval-device", EVAL + " --device gpu", "gpu"),
    _c("eval-split-seed-text", EVAL + " --split-seed x", "--split-seed"),
    _c("eval-seed-negative", EVAL + " --seed -1", "--seed"),
    _c("eval-no-manifest", EVAL.replace("{R}/orig", "{R}/no_manifest"), "no_manifest"),
    _c("eval-manifest-altered", EVAL.replace("{R}/orig", "{R}/bad_manifest_hash"), "bad_manifest_hash"),
    _c("eval-plot-pdf-folder", EVAL + f" --plot {F}/folder.yaml", "--plot"),
    # ---- tune
    _c("tune-no-grid", TUNEM, "grid"),
    _c("tune-grid-no-equals", TUNEM + " --grid lr", "--grid"),
    _c("tune-grid-no-values", TUNEM + " --grid lr=", "--grid"),
    _c("tune-grid-twice", TUNEM + " --grid lr=1e-4 --grid lr=1e-3", "twice"),
    _c("tune-grid-unknown", TUNEM + " --grid learning_rate=1,2", "learning_rate"),
    _c("tune-grid-text", TUNEM + " --grid lr=fast,slow", "lr"),
    _c("tune-grid-inf", TUNEM + " --grid lr=1e-4,inf", "finite"),
    _c("tune-grid-nan", TUNEM + " --grid lr=nan", "finite"),
    _c("tune-no-method", TUNE + " --grid lr=1e-4", "--method"),
    _c("tune-method-unknown", TUNE + " --method mumiss --grid lr=1e-4", "mumiss"),
    _c("tune-config-binary", TUNEM + f" --grid lr=1e-4 --config {F}/bin.yaml", "bin.yaml"),
    _c("tune-config-missing", TUNEM + " --grid lr=1e-4 --config nope.yaml", "nope.yaml"),
    _c("tune-config-tag", TUNEM + f" --grid lr=1e-4 --config {F}/tag.yaml", "tag.yaml"),
    _c("tune-set-inf", TUNEM + " --grid lr=1e-4 --set irrelevant_cap=inf", "finite"),
    _c("tune-reference-missing", TUNEM.replace("{R}/ret", "{R}/nope") + " --grid lr=1e-4", "nope"),
    _c("tune-reference-other", TUNEM.replace("class:3", "class:4") + " --grid lr=1e-4", "ret"),
    _c("tune-checkpoint-missing", TUNEM.replace("{R}/orig", "{R}/nope") + " --grid lr=1e-4", "nope"),
    _c("tune-out-file", TUNEM.replace("--out out", f"--out {F}/a_file") + " --grid lr=1e-4", "a_file"),
    _c("tune-out-sys", TUNEM.replace("--out out", "--out /sys/t") + " --grid lr=1e-4", "/sys/t"),
    _c("tune-seed-negative", TUNEM + " --grid lr=1e-4 --seed -3", "--seed"),
    _c("tune-split-seed-negative", TUNEM + " --grid lr=1e-4 --split-seed -3", "--split-seed"),
    _c("tune-all-unchanged", TUNE + " --method mumis --grid lr=1e6,1e7 --set max_steps=2", "unchanged"),
    # ---- bench
    _c("bench-config-missing", "bench --config nope.yaml --out out", "nope.yaml"),
    _c("bench-config-binary", f"bench --config {F}/bin.yaml --out out", "bin.yaml"),
    _c("bench-config-nul", f"bench --config {F}/nul.yaml --out out", "nul.yaml"),
    _c("bench-config-folder", f"bench --config {F}/folder.yaml --out out", "folder.yaml"),
    _c("bench-config-list", f"bench --config {F}/list.yaml --out out", "list.yaml"),
    _c("bench-config-broken", f"bench --config {F}/broken.yaml --out out", "broken.yaml"),
    _c("bench-config-tag", f"bench --config {F}/tag.yaml --out out", "tag.yaml"),
    _c("bench-config-deep", f"bench --config {F}/deep.yaml --out out", "deep.yaml"),
    _c("bench-out-file", f"bench --config {F}/b_ok.yaml --out {F}/a_file", "a_file"),
    _c("bench-out-sys", f"bench --config {F}/b_ok.yaml --out /sys/b", "/sys/b"),
    _c("bench-out-taken", f"bench --config {F}/b_ok.yaml --out {F}", "files"),
    *[_c(f"bench-{name[2:].replace('_', '-')}", f"bench --config {F}/{name}.yaml --out out", name + ".yaml")
      for name in BENCHES],
    # ---- report
    _c("report-missing", "report {R}/nope", "nope"),
    _c("report-file", f"report {F}/a_file", "a_file"),
    _c("report-no-records", "report {R}/rep_empty", "rep_empty"),
    _c("report-truncated-record", "report {R}/rep_trunc", "rep_trunc"),
    _c("report-record-list", "report {R}/rep_list", "rep_list"),
    _c("report-record-format", "report {R}/rep_format", "rep_format"),
    _c("report-record-binary", "report {R}/rep_binary", "rep_binary"),
    _c("report-format-unknown", "report {R}/bench --format pdf", "pdf"),
    _c("report-format-empty", "report {R}/bench --format ,", "format"),
    _c("report-precision-high", "report {R}/bench --precision 11", "--precision"),
    _c("report-precision-negative", "report {R}/bench --precision -1", "--precision"),
    _c("report-folder-is-file", "report {R}/rep_report_file", "report"),
    # ---- demo
    _c("demo-dataset-unknown", DEMO + " --dataset foo", "foo"),
    _c("demo-dataset-typo", DEMO + " --dataset digts", "digits"),
    _c("demo-model-unknown", DEMO + " --model mlpp", "mlpp"),
    _c("demo-method-unknown", DEMO + " --method mumiss", "mumiss"),
    _c("demo-forget-bad", DEMO + " --forget klass:3", "klass"),
    _c("demo-forget-range", DEMO + " --forget class:10", "class 10"),
    _c("demo-recipe", DEMO + " --recipe slow", "slow"),
    _c("demo-set-unknown", DEMO + " --set learning_rate=1", "learning_rate"),
    _c("demo-set-inf", DEMO + " --set lr=inf", "finite"),
    _c("demo-device", DEMO + " --device tpu", "tpu"),
    _c("demo-seed-negative", DEMO + " --seed -2", "seed"),
    _c("demo-subset-few", DEMO + " --dataset digits@6", "digits@6"),
    _c("demo-diverges", DEMO + " --set lr=1e6", "diverged", rc=1),
    _c("demo-data-dir", DEMO + " --dataset npz --data-dir /no/such.npz", "/no/such.npz"),
    _c("demo-npz-7000", DEMO + f" --dataset npz --data-dir {F}/label7000.npz", "label7000.npz"),
    _c("demo-out-file", f"demo --device cpu --out {F}/a_file", "a_file"),
    _c("demo-out-foreign", f"demo --device cpu --out {F}", "files"),
    # ---- methods, env
    _c("methods-unknown", "methods mumiss", "mumiss"),
    _c("methods-typo", "methods scrubb", "scrub"),
    _c("methods-extra-arg", "methods mumis scrub", "unrecognized"),
    _c("methods-yaml-unknown", "methods nope --yaml", "nope"),
    _c("env-extra-arg", "env now", "unrecognized"),
    _c("env-unknown-flag", "env --verbose", "--verbose"),
]


def _snapshot(*roots: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for root in roots:
        for p in sorted(root.rglob("*")):
            st = p.lstat()
            out[str(p)] = (st.st_size if p.is_file() else -1, st.st_mtime_ns if p.is_file() else 0)
    return out


def _one_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one stderr line, got:\n{err}"
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=[pytest.mark.xfail(strict=True, reason=c.xfail)]
                                               if c.xfail else []) for c in CLI_CASES])
def test_cli_bad_input(case: Case, env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                       capsys: pytest.CaptureFixture[str]) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    argv = ["-q", *(env.fmt(a) for a in case.argv)]
    before = _snapshot(env.root, work)
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse's own usage errors
        rc = e.code
    err = capsys.readouterr().err
    line = _one_line(err)
    assert rc == case.rc, err
    assert line.startswith("mumis: "), line
    assert case.needle.lower() in line.lower(), line
    assert _snapshot(env.root, work) == before, "files were left, changed or removed"
    assert not (work / "PWNED").exists() and not Path("PWNED").exists()


# ------------------------------------------------------------------------------------- API
def _xy(n: int = 8, k: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 1, 8, 8, generator=g), torch.arange(n) % k


def _model(env: Env) -> nn.Module:
    return load_checkpoint(env.root / "orig")[0]


def _with(x_edit: Callable[[torch.Tensor], Any] | None = None,
          y_edit: Callable[[torch.Tensor], Any] | None = None) -> tuple[Any, Any]:
    x, y = _xy()
    return (x_edit(x) if x_edit else x), (y_edit(y) if y_edit else y)


def _nan(x: torch.Tensor) -> torch.Tensor:
    x = x.clone()
    x[2, 0, 1, 1] = float("nan")
    return x


def _inf(x: torch.Tensor) -> torch.Tensor:
    x = x.clone()
    x[0, 0, 0, 0] = float("inf")
    return x


def _splits(env: Env) -> Any:
    return load_run_splits(env.root / "ret")


API_CASES: dict[str, tuple[Callable[[Env], Any], str]] = {
    "unlearn-model-not-module": (lambda e: mumis.unlearn("model.pt", _xy()), "nn.Module"),
    "unlearn-forget-ndarray": (lambda e: mumis.unlearn(_model(e), np.zeros((4, 1, 8, 8))), "forget"),
    "unlearn-forget-numpy-pair": (lambda e: mumis.unlearn(_model(e), (np.zeros((4, 64)), np.zeros(4))), "as_tensor"),
    "unlearn-forget-triple": (lambda e: mumis.unlearn(_model(e), (*_xy(), _xy()[1])), "(X, y)"),
    "unlearn-forget-single": (lambda e: mumis.unlearn(_model(e), (_xy()[0],)), "(X, y)"),
    "unlearn-forget-none": (lambda e: mumis.unlearn(_model(e), None), "forget"),
    "unlearn-x-int": (lambda e: mumis.unlearn(_model(e), _with(lambda x: (x * 255).long())), "floating"),
    "unlearn-y-float": (lambda e: mumis.unlearn(_model(e), _with(y_edit=lambda y: y.float())), "integers"),
    "unlearn-y-bool": (lambda e: mumis.unlearn(_model(e), _with(y_edit=lambda y: y > 3)), "integers"),
    "unlearn-y-onehot": (lambda e: mumis.unlearn(_model(e), _with(y_edit=lambda y: torch.eye(10)[y])), "argmax"),
    "unlearn-len-mismatch": (lambda e: mumis.unlearn(_model(e), _with(y_edit=lambda y: y[:5])), "label per sample"),
    "unlearn-empty": (lambda e: mumis.unlearn(_model(e), (torch.zeros(0, 1, 8, 8), torch.zeros(0).long())), "empty"),
    "unlearn-x-nan": (lambda e: mumis.unlearn(_model(e), _with(_nan)), "NaN"),
    "unlearn-x-inf": (lambda e: mumis.unlearn(_model(e), _with(_inf)), "inf"),
    "unlearn-x-1d": (lambda e: mumis.unlearn(_model(e), (torch.rand(8), torch.arange(8))), "shape"),
    "unlearn-x-scalar": (lambda e: mumis.unlearn(_model(e), (torch.tensor(1.0), torch.arange(1))), "single number"),
    "unlearn-retain-float64": (lambda e: mumis.unlearn(_model(e), _xy(), method="finetune",
                                                       retain=_with(lambda x: x.double())), "retain inputs"),
    "unlearn-retain-nan": (lambda e: mumis.unlearn(_model(e), _xy(), method="finetune", retain=_with(_nan)), "retain"),
    "unlearn-labels-range": (lambda e: mumis.unlearn(_model(e), _with(y_edit=lambda y: y + 50)), "label"),
    "unlearn-labels-negative": (lambda e: mumis.unlearn(_model(e), _with(y_edit=lambda y: y - 5)), "label"),
    "unlearn-seed-text": (lambda e: mumis.unlearn(_model(e), _xy(), seed="abc"), "seed"),
    "unlearn-seed-float": (lambda e: mumis.unlearn(_model(e), _xy(), seed=1.5), "seed"),
    "unlearn-seed-bool": (lambda e: mumis.unlearn(_model(e), _xy(), seed=True), "seed"),
    "unlearn-seed-negative": (lambda e: mumis.unlearn(_model(e), _xy(), seed=-1), "seed"),
    "unlearn-method-unknown": (lambda e: mumis.unlearn(_model(e), _xy(), method="mumiss"), "mumiss"),
    "unlearn-setting-unknown": (lambda e: mumis.unlearn(_model(e), _xy(), learning_rate=1.0), "learning_rate"),
    "unlearn-lr-inf": (lambda e: mumis.unlearn(_model(e), _xy(), lr=float("inf")), "finite"),
    "unlearn-lr-text": (lambda e: mumis.unlearn(_model(e), _xy(), lr="fast"), "lr"),
    "unlearn-retain-forbidden": (lambda e: mumis.unlearn(_model(e), _xy(), retain=_xy()), "retain"),
    "unlearn-retain-missing": (lambda e: mumis.unlearn(_model(e), _xy(), method="finetune"), "retain"),
    "unlearn-device": (lambda e: mumis.unlearn(_model(e), _xy(), device="tpu"), "tpu"),
    "unlearn-shape-mismatch": (lambda e: mumis.unlearn(_model(e), (torch.rand(8, 3, 32, 32), torch.arange(8))),
                               "shape"),
    "unlearn-dtype-mismatch": (lambda e: mumis.unlearn(_model(e), _with(lambda x: x.double())), "float64"),
    "unlearn-dataset-dicts": (lambda e: mumis.unlearn(_model(e), [{"x": 1}] * 3), "forget"),
    "evaluate-tuple": (lambda e: mumis.evaluate(_model(e), _xy()), "Splits"),
    "evaluate-none": (lambda e: mumis.evaluate(_model(e), None), "Splits"),
    "evaluate-original-split": (lambda e: mumis.evaluate(_model(e), load_run_splits(e.root / "orig")),
                                "forget nothing"),
    "evaluate-seed-text": (lambda e: mumis.evaluate(_model(e), _splits(e), seed="abc"), "seed"),
    "evaluate-seed-negative": (lambda e: mumis.evaluate(_model(e), _splits(e), seed=-1), "seed"),
    "resolve-manifest-seed": (lambda e: resolve_manifest("random:0.1", load_dataset("digits"), seed=-1), "seed"),
    "load-dataset-unknown": (lambda e: load_dataset("digitz"), "digitz"),
    "load-dataset-subset-few": (lambda e: load_dataset("digits@3"), "digits@3"),
    "evaluate-metrics": (lambda e: mumis.evaluate(_model(e), _splits(e), metrics="acuracy"), "acuracy"),
    "evaluate-reference-type": (lambda e: mumis.evaluate(_model(e), _splits(e), reference="runs/ret"), "reference"),
    "load-checkpoint-missing": (lambda e: load_checkpoint(e.root / "nope"), "nope"),
    "load-checkpoint-file": (lambda e: load_checkpoint(e.root / "files" / "a_file"), "a_file"),
    "load-checkpoint-garbage": (lambda e: load_checkpoint(e.root / "meta_garbage"), "meta_garbage"),
    "load-checkpoint-trunc": (lambda e: load_checkpoint(e.root / "trunc_weights"), "trunc_weights"),
    "load-checkpoint-user-code": (lambda e: load_checkpoint(e.root / "user_code"), "trust"),
    "load-run-splits-missing": (lambda e: load_run_splits(e.root / "nope"), "nope"),
    "splits-from-tensors-shape": (lambda e: splits_from_tensors(forget=_xy(), retain=(torch.rand(8, 64), torch.arange(8)),
                                                                test=_xy()), "shape"),
    "splits-from-tensors-labels": (lambda e: splits_from_tensors(forget=_xy(), retain=_xy(), test=_xy(),
                                                                 num_classes=3), "num_classes"),
    "splits-from-tensors-nan": (lambda e: splits_from_tensors(forget=_xy(), retain=_xy(), test=_with(_nan)), "test"),
    "parse-forget-spec": (lambda e: parse_forget_spec("class"), "class"),
    "get-method": (lambda e: mumis.get_method("scrubb"), "scrub"),
}


@pytest.mark.parametrize("name", list(API_CASES))
def test_api_bad_input(name: str, env: Env) -> None:
    fn, needle = API_CASES[name]
    before = _snapshot(env.root)
    with pytest.raises(ValueError) as e:
        fn(env)
    msg = str(e.value)
    assert type(e.value).__module__ == "mumis.exceptions", type(e.value)
    assert "\n" not in msg and needle.lower() in msg.lower(), msg
    assert _snapshot(env.root) == before


# ------------------------------------------------------------------------ what used to fail
def test_inplace_relu_model_is_converted_not_refused(env: Env) -> None:
    """An nn.ReLU(inplace=True) model through the API unlearns (helper M's conversion)."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(inplace=True), nn.Linear(32, 10))
    x, _ = _xy()
    res = mumis.unlearn(model, (x, torch.full((8,), 3)), method="mumis", max_steps=1, device="cpu")
    assert res.steps >= 0 and model[2].inplace  # the caller's model keeps its flag


def test_class_split_does_not_depend_on_the_split_seed(env: Env, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """`--split-seed 5` with class:3 against a reference trained with split seed 0: the same split."""
    rc = main(["-q", "evaluate", "--checkpoint", str(env.root / "orig"), "--forget", "class:3", "--metrics",
               "accuracy", "--reference", str(env.root / "ret"), "--split-seed", "5", "--device", "cpu"])
    assert rc == 0, capsys.readouterr().err


def test_splits_from_tensors_evaluates_like_the_run_splits(env: Env) -> None:
    s = _splits(env)
    own = splits_from_tensors(forget=s.forget, retain=s.retain, test=s.test, num_classes=10)
    assert own.kind == "class" and own.forgotten_classes == [3] and own.classwise
    a = mumis.evaluate(_model(env), s, metrics="accuracy").to_dict()["model"]
    b = mumis.evaluate(_model(env), own, metrics="accuracy").to_dict()["model"]
    assert a == b


def test_diverged_run_that_kept_progress_is_written_with_a_warning(env: Env, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """grad_ascent at lr 1e6 takes two steps, then its loss is non-finite: the last finite weights
    are a changed model, so the run is written (exit 0), with status "diverged" and a warning."""
    monkeypatch.chdir(tmp_path)
    rc = main(["-q", "unlearn", "--checkpoint", str(env.root / "orig"), "--forget", "class:3", "--method",
               "grad_ascent", "--set", "lr=1e6", "--device", "cpu", "--out", "u"])
    err = capsys.readouterr().err
    assert rc == 0 and "warning" in _one_line(err) and "diverged" in err
    result = json.loads((tmp_path / "u" / "result.json").read_text())
    assert result["status"] == "diverged" and result["weights_changed"] is True


def test_diverged_run_in_a_library_call_is_written_with_its_status(env: Env, tmp_path: Path) -> None:
    """Bench and tune keep diverged cells as results: status "diverged", weights unchanged."""
    from mumis.cli.unlearn import unlearn_run

    done = unlearn_run(checkpoint=env.root / "orig", forget="class:3", method="mumis", overrides={"lr": 1e6},
                       device="cpu", out=tmp_path / "u")
    assert done.result["status"] == "diverged" and done.result["weights_changed"] is False
    assert json.loads((tmp_path / "u" / "result.json").read_text())["status"] == "diverged"


# ---------------------------------------------------------------------- real subprocesses
@pytest.mark.parametrize("argv, needle", [
    (["unlearn", "--checkpoint", "{R}/orig", "--forget", "class:3", "--method", "mumis", "--config",
      "{R}/files/bin.yaml", "--out", "out"], "bin.yaml"),
    (["evaluate", "--checkpoint", "{R}/orig", "--forget", "class:3", "--json", "/sys/x.json"], "/sys/x.json"),
    (["report", "{R}/rep_trunc"], "rep_trunc"),
    (["demo", "--dataset", "foo", "--out", "out"], "foo"),
])
def test_console_script(argv: list[str], needle: str, env: Env, tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("mumis")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "mumis"]
    before = _snapshot(env.root)
    proc = subprocess.run([*cmd, *(env.fmt(a) for a in argv)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "PYTHONWARNINGS": "default"})
    assert proc.returncode == 2, proc.stderr
    assert needle in _one_line(proc.stderr)
    assert list(tmp_path.iterdir()) == [] and _snapshot(env.root) == before


def test_the_sweep_is_large_enough() -> None:
    verbs = {c.id.split("-")[0] for c in CLI_CASES}
    assert {"train", "unlearn", "eval", "tune", "bench", "report", "demo", "methods", "env"} <= verbs
    assert len({c.id for c in CLI_CASES}) == len(CLI_CASES)
    assert len(CLI_CASES) + len(API_CASES) >= 200

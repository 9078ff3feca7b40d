"""The runs layer (`mumis.runs`): the per-process cache, `Scenario`, `RunRecord`, `unlearn_run`
keeping its model, and the import layering (nothing outside cli/ imports the CLI or the package
face). Two tiny digits MLPs (one epoch) are trained once per module."""

from __future__ import annotations

import ast
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from mumis import checkpoint, evaluation
from mumis.data import DATASETS
from mumis.exceptions import CheckpointError, ConfigError, DataError
from mumis.runs import RunRecord, Scenario, caching, evaluate_run, train_run, unlearn_run
from mumis.runs import cache as run_cache

SRC = Path(__file__).resolve().parents[2] / "src" / "mumis"
RESULT_KEYS = ["method", "time_s", "steps", "stop_reason", "peak_mem_mb", "seed", "split_seed", "forget_spec",
               "manifest_hash", "num_forget", "uses_retain", "data_used", "device", "world_size", "checkpoint",
               "reference", "extra", "status", "weights_changed", "batchnorm_mode"]


@dataclass
class Runs:
    original: Path
    retrained: Path


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    root = tmp_path_factory.mktemp("runs")
    common: dict[str, Any] = {"dataset": "digits", "model": "mlp", "epochs": 1, "device": "cpu", "progress": False}
    train_run(out=root / "original", **common)
    train_run(out=root / "retrained", forget="class:3", **common)
    return Runs(root / "original", root / "retrained")


@pytest.fixture
def counts(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """How often the digits loader and load_checkpoint really run."""
    seen = {"dataset": 0, "checkpoint": 0}
    real_digits, real_load = DATASETS.get("digits"), checkpoint.load_checkpoint

    def digits(*a: Any, **k: Any) -> Any:
        seen["dataset"] += 1
        return real_digits(*a, **k)

    def load(*a: Any, **k: Any) -> Any:
        seen["checkpoint"] += 1
        return real_load(*a, **k)

    monkeypatch.setitem(DATASETS._items, "digits", digits)
    monkeypatch.setattr(checkpoint, "load_checkpoint", load)
    return seen


# --------------------------------------------------------------------------- cache
def test_cache_reads_once_inside_caching_only(runs: Runs, counts: dict[str, int]) -> None:
    run_cache.load_dataset("digits")
    run_cache.load_dataset("digits")
    run_cache.load_checkpoint(runs.original)
    run_cache.load_checkpoint(runs.original)
    assert counts == {"dataset": 2, "checkpoint": 2}  # outside caching(): every call loads
    with caching() as c:
        a = run_cache.load_dataset("digits")
        with caching() as inner:  # nested blocks share the outer cache
            assert inner is c and run_cache.load_dataset("digits") is a
        m1, meta1 = run_cache.load_checkpoint(runs.original)
        m2, meta2 = run_cache.load_checkpoint(runs.original)
        assert counts == {"dataset": 3, "checkpoint": 3}
        # every caller gets its own copy: changing one leaves the next untouched
        with torch.no_grad():
            next(m1.parameters()).add_(1.0)
        meta1["kind"] = "changed"
        m3, meta3 = run_cache.load_checkpoint(runs.original)
        assert torch.equal(next(m3.parameters()), next(m2.parameters()))
        assert meta3["kind"] == meta2["kind"] == "train" and not m3.training
    run_cache.load_dataset("digits")
    assert counts["dataset"] == 4  # the block ended: the cache is gone


def test_cache_rereads_a_rewritten_checkpoint_and_keeps_its_checks(runs: Runs, tmp_path: Path,
                                                                     counts: dict[str, int]) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(runs.original, copy)
    with caching():
        run_cache.load_checkpoint(copy)
        weights = copy / checkpoint.WEIGHTS_FILE
        st = weights.stat()
        os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # "retrained in place"
        run_cache.load_checkpoint(copy)
        assert counts["checkpoint"] == 2
        # a user factory named in meta.json is refused on a cache hit as on a first load
        meta = json.loads((copy / checkpoint.META_FILE).read_text())
        meta["model"]["name"] = "mypkg.nets:build"
        (copy / checkpoint.META_FILE).write_text(json.dumps(meta))
        with pytest.raises(CheckpointError):
            run_cache.load_checkpoint(copy)


# --------------------------------------------------------------------------- Scenario
def test_scenario_loads_once_and_evaluates_the_reference_once(runs: Runs, counts: dict[str, int],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = evaluation.evaluate
    monkeypatch.setattr(evaluation, "evaluate", lambda *a, **k: calls.append(1) or real(*a, **k))
    s = Scenario.load(runs.original, "class:3", reference=runs.retrained, device="cpu")
    assert counts == {"dataset": 1, "checkpoint": 1}  # the reference model is loaded when needed
    assert s.reference is not None and s.reference.name == "retrain" and s.split_seed == 0
    assert s.splits.classwise and len(s.splits.forget[1]) == len(s.manifest.forget) > 0
    assert s.manifest.hash == checkpoint.read_meta(runs.retrained)["manifest"]["hash"]
    fresh = s.fresh_model()
    assert fresh is not s.model and torch.equal(next(fresh.parameters()), next(s.model.parameters()))
    first = s.evaluate(s.model, metrics=["accuracy"])
    again = s.evaluate(s.fresh_model(), metrics=["accuracy"])
    assert len(calls) == 3 and counts["checkpoint"] == 2  # reference once, then the two models
    assert first.to_dict()["model"] == again.to_dict()["model"]
    assert first.to_dict()["reference"]["forget_acc"] == 0.0  # the oracle never saw class 3
    # the same report as evaluating with the reference model itself (what evaluate_run did)
    direct = real(s.model, s.splits, reference=s.reference.model(), metrics=["accuracy"])
    assert direct.to_dict() == first.to_dict()


def test_scenario_refuses_a_mismatched_reference_or_label_space(runs: Runs, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="another split"):
        Scenario.load(runs.original, "class:4", reference=runs.retrained, device="cpu")
    with pytest.raises(DataError, match="does not exist"):
        Scenario.load(runs.original, "class:3", data_dir=tmp_path / "nope", device="cpu")
    with pytest.raises(CheckpointError):
        Scenario.load(tmp_path, "class:3", device="cpu")


# --------------------------------------------------------------------------- records
def test_record_views_keep_each_files_keys() -> None:
    rec = RunRecord(method="mumis", config={"lr": 0.1}, time_s=1.5, steps=3, stop_reason="max_steps",
                    peak_mem_mb=None, status="ok", weights_changed=True, uses_retain=False,
                    batchnorm_mode="eval", device="cpu",
                    run={"seed": 0, "split_seed": 0, "forget_spec": "class:3", "manifest_hash": "h",
                         "num_forget": 9, "world_size": 1, "checkpoint": "/c", "reference": None, "extra": {}})
    assert list(rec.result_json()) == RESULT_KEYS
    assert rec.gap("gap_paper") is None
    rec = rec.__class__(**{**rec.__dict__, "evaluation": {"model": {"forget_acc": 1.0}, "gap_paper": 0.5,
                                                          "gap_salun": 0.7}})
    cell = rec.bench_record({"format": "f", "cell": "c", "key": "k"}, label="mine", role="method",
                            run_dir="runs/c", created="now")
    assert (cell["method"], cell["method_name"], cell["settings"], cell["gap_paper"]) == ("mine", "mumis",
                                                                                          {"lr": 0.1}, 0.5)
    assert cell["gap_recovery"] is None and cell["uses_retain"] is False and cell["batchnorm_mode"] == "eval"
    oracle = RunRecord(method="retrain", config={"epochs": 1}, time_s=2.0, evaluation={"model": {}, "recovery": {}})
    ref = oracle.bench_record({"cell": "r"}, label="retrain", role="reference", run_dir="models/r", created="now")
    assert (ref["gap_paper"], ref["gap_recovery"], ref["method_name"]) == (0.0, 0.0, None)
    assert "uses_retain" not in ref and "batchnorm_mode" not in ref
    row = rec.tuning_row(index=2, settings={"lr": 0.1}, run_dir="points/002")
    assert row["config"] == {"method": "mumis", "lr": 0.1} and row["metrics"] == {"forget_acc": 1.0}
    assert list(row) == ["index", "settings", "config", "gap_paper", "gap_salun", "metrics", "time_s", "steps",
                         "stop_reason", "status", "weights_changed", "run_dir"]


# --------------------------------------------------------------------------- unlearn_run / evaluate_run
def test_unlearn_run_keeps_the_model_it_wrote(runs: Runs, tmp_path: Path) -> None:
    out = tmp_path / "u"
    done = unlearn_run(checkpoint=runs.original, forget="class:3", method="grad_ascent",
                       overrides={"epochs": 1}, reference=runs.retrained, out=out, device="cpu")
    saved, _ = checkpoint.load_checkpoint(out)
    for (k, a), b in zip(done.model.state_dict().items(), saved.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    assert json.loads((out / "result.json").read_text()) == done.result
    assert list(done.result) == RESULT_KEYS and done.record.weights_changed and not done.record.uses_retain
    assert done.result["reference"] == str(runs.retrained.resolve())
    # evaluating the written run from disk gives what the in-memory model gives
    report, names = evaluate_run(checkpoint=out, forget="class:3", reference=runs.retrained,
                                 metrics=["accuracy"], device="cpu")
    s = Scenario.load(runs.original, "class:3", reference=runs.retrained, device="cpu")
    assert names == ("grad_ascent", "retrain")
    assert report.to_dict() == s.evaluate(done.model, metrics=["accuracy"]).to_dict()


# --------------------------------------------------------------------------- layering
def _imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """(level, module, names) of every import in a module (level 0: absolute)."""
    out: list[tuple[int, str, list[str]]] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(0, a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            out.append((node.level, node.module or "", [a.name for a in node.names]))
    return out


def _target(path: Path, level: int, module: str) -> str:
    """The absolute dotted name an import in `path` refers to."""
    if level == 0:
        return module
    parts = ["mumis", *path.relative_to(SRC).with_suffix("").parts]
    package = parts[:-1]  # a package's __init__ and its modules import relative to the package
    base = package[: len(package) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def test_no_module_imports_the_cli_from_outside_or_the_package_face() -> None:
    bad = []
    for path in sorted(SRC.rglob("*.py")):
        inside_cli = path.relative_to(SRC).parts[0] in ("cli", "__main__.py")
        for level, module, names in _imports(path):
            target = _target(path, level, module)
            if not inside_cli and (target == "mumis.cli" or target.startswith("mumis.cli.")):
                bad.append(f"{path.relative_to(SRC)} imports {target}")
            if target == "mumis" and path.name != "__main__.py":
                # `from .. import distributed` names a submodule; anything else is the face's
                face = [n for n in names if not (SRC / n).with_suffix(".py").is_file() and not (SRC / n).is_dir()]
                if face or not names:
                    bad.append(f"{path.relative_to(SRC)} imports the package face ({', '.join(face) or 'mumis'})")
    assert not bad, bad

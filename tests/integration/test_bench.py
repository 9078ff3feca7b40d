"""`mumis bench` in-process: the smoke preset end to end, interruption and --resume, strict configs."""

from __future__ import annotations

import json
import runpy
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

import mumis.bench.runner as bench_runner
from mumis import checkpoint
from mumis.bench import cell_id, load_bench_config
from mumis.cli import main
from mumis.data import DATASETS

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "configs" / "bench" / "smoke.yaml"
RUN_FILES = {"model.safetensors", "meta.json", "config.yaml", "history.jsonl", "result.json"}
RECORD_KEYS = {"dataset", "model", "scenario", "method", "seed", "settings", "evaluation", "gap_paper",
               "gap_salun", "time_s", "peak_mem_mb", "steps", "stop_reason", "cell", "key", "role"}

#: A fast test-only grid: one random scenario, two methods, few training epochs.
TINY: dict[str, Any] = {
    "datasets": ["digits"], "models": ["mlp"], "scenarios": ["random:0.1"],
    "methods": {"grad_ascent": {"epochs": 1},
                "mumis": {"max_steps": 10, "by_kind": {"random": {"max_steps": 5, "target_forget_acc": 90.0}, "class": {"max_steps": 7}}}},
    "seeds": [0], "train": {"epochs": 3}, "metrics": ["accuracy", "mia_efficacy"], "device": "cpu",
}


def _write(tmp_path: Path, cfg: dict[str, Any], name: str = "bench.yaml") -> Path:
    p = tmp_path / name
    p.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return p


def _records(out: Path) -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((out / "records").glob("*.json"))}


def test_smoke_preset_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # Count what the bench reads from disk: the dataset (its registered loader) and checkpoints.
    loads = {"dataset": 0, "checkpoint": 0}
    real_digits, real_load = DATASETS.get("digits"), checkpoint.load_checkpoint

    def count(what: str, fn: Any) -> Any:
        def wrapped(*a: Any, **k: Any) -> Any:
            loads[what] += 1
            return fn(*a, **k)
        return wrapped

    monkeypatch.setitem(DATASETS._items, "digits", count("dataset", real_digits))
    monkeypatch.setattr(checkpoint, "load_checkpoint", count("checkpoint", real_load))
    out = tmp_path / "smoke"
    assert main(["-q", "bench", "--config", str(SMOKE), "--out", str(out)]) == 0
    assert "8 cells run, 0 already done, of 8" in capsys.readouterr().out
    # The dataset once per process (config check, 3 trainings, 8 cells); each cached model once
    # (the original for both scenarios, each retrained oracle); unlearned models are never read back.
    assert loads == {"dataset": 1, "checkpoint": 3}
    cfg = yaml.safe_load(SMOKE.read_text())
    assert cfg["datasets"] == ["digits"] and cfg["scenarios"] == ["class:3", "random:0.1"]
    recs = _records(out)
    methods = [r for r in recs.values() if r["role"] == "method"]
    refs = [r for r in recs.values() if r["role"] == "reference"]
    originals = [r for r in recs.values() if r["role"] == "original"]
    assert len(methods) == 8 and len(refs) == 2 and len(originals) == 2
    assert {(r["scenario"], r["method"]) for r in methods} == {
        (s, m) for s in ("class:3", "random:0.1") for m in ("mumis", "grad_ascent", "finetune", "random_label")}
    for r in methods:
        assert RECORD_KEYS <= set(r), r["cell"]
        ev = r["evaluation"]
        assert {"model", "reference", "diff", "gap_paper", "gap_salun"} <= set(ev)
        assert r["gap_paper"] == ev["gap_paper"] is not None and r["gap_salun"] is not None
        assert {"mia_efficacy", "mia_entropy", "mia_loss_auc", "kl_to_retrain"} <= set(ev["model"])
        assert ("test_remaining_acc" in ev["model"]) == (r["scenario"] == "class:3")
        # the loss rank test (metrics: all): forget vs the test samples of its classes (no holdout)
        assert {"rank_auc", "rank_p", "rank_detectable"} <= set(ev["model"]) and "rank_p" not in ev["diff"]
        assert ev["mia_details"]["model"]["rank_auc"]["unseen"].startswith("test split")
        assert r["time_s"] > 0 and r["steps"] >= 1 and r["stop_reason"]
        # recovery audits: the keys, their gap at top level, the method's BatchNorm mode
        assert {"bn_reestimated_forget_acc", "relearn_forget_acc", "relearn_test_acc"} <= set(ev["model"])
        assert r["gap_recovery"] == ev["gap_recovery"] is not None
        assert r["batchnorm_mode"] == ("eval" if r["method"] == "mumis" else "train")
        assert r["uses_retain"] == (r["method"] == "finetune")  # forget-only methods never see retain
        assert set(p.name for p in (out / r["run_dir"]).iterdir()) >= RUN_FILES
        # the oracle report is the one every cell of the scenario was compared with
        ref = next(x for x in refs if x["scenario"] == r["scenario"])
        assert ev["reference"]["test_acc"] == ref["evaluation"]["model"]["test_acc"]
        # per-sample values for the report's histograms, on the seeded subsample of each split
        sizes = ev["sizes"]
        for q in ("loss", "sensitivity_target", "sensitivity_irrelevant"):
            assert {k: len(v) for k, v in r["samples"][q].items()} == {
                k: min(sizes[k], 500) for k in ("forget", "retain", "test")}
    for o in originals:  # the model before unlearning, against the same oracle
        ref = next(x for x in refs if x["scenario"] == o["scenario"])
        assert o["evaluation"]["reference"] == ref["evaluation"]["model"] | {"kl_to_retrain": 0.0,
                                                                           "js_to_retrain": 0.0}
        assert o["run_dir"] == "models/digits/mlp/s0/original-fine" and o["gap_paper"] > 0
        if o["scenario"] == "class:3":  # the original never forgot the class: far from retrain
            assert o["gap_recovery"] > 50
    assert all(x["gap_recovery"] == 0.0 for x in refs)
    assert originals[0]["evaluation"]["model"]["test_acc"] == originals[1]["evaluation"]["model"]["test_acc"]
    models = out / "models" / "digits" / "mlp" / "s0"
    assert sorted(p.name for p in models.iterdir()) == ["original-fine", "retrain-class-3", "retrain-random-0.1"]
    assert (out / "bench.json").is_file()

    assert main(["-q", "report", str(out)]) == 0
    report = out / "report"
    assert sorted(p.name for p in report.iterdir()) == ["report.html", "tables.csv", "tables.md", "tables.tex"]
    md = (report / "tables.md").read_text()
    assert "### digits / mlp / class:3" in md and "### digits / mlp / random:0.1" in md
    # the rank columns in the random table only (the class table's columns are checked below)
    assert md.count("| loss rank AUC (rank_auc) | rank p (rank_p) | rank detectable (rank_detectable) |") == 1
    rows = [line.split("|")[1].strip() for line in md.splitlines() if line.startswith("| ")]
    assert rows[:7] == ["method", "retrain", "original", "mumis", "grad_ascent", "finetune", "random_label"]
    # one seed: each cell is the record's own value
    for line in md.splitlines()[:12]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("| ") and cells[0] in ("mumis", "finetune"):
            rec = recs[f"digits__mlp__class-3__{cells[0]}__s0"]
            model = rec["evaluation"]["model"]
            assert cells[1:4] == [f"{model[k]:.2f}" for k in ("test_forgotten_acc", "test_remaining_acc", "test_acc")]
            assert cells[4:7] == [f"{v:.2f}" for v in (model["mia_efficacy"], rec["gap_paper"], rec["gap_salun"])]
            # the recovery audits (metrics: all), then the time; the MLP has no BatchNorm
            assert cells[7:] == ["n/a", f"{model['relearn_test_forgotten_acc']:.2f}",
                                 f"{model['probe_forget_acc']:.2f}", f"{rec['gap_recovery']:.2f}",
                                 f"{rec['time_s']:.2f}"]
    # benchmarks/class_removal_reference.py reads the same numbers as the records
    monkeypatch.setattr("sys.argv", ["class_removal_reference.py", str(out)])
    runpy.run_path(str(ROOT / "benchmarks" / "class_removal_reference.py"), run_name="__main__")
    table = capsys.readouterr().out.splitlines()
    mu = recs["digits__mlp__class-3__mumis__s0"]["evaluation"]["model"]
    row = next(line for line in table if "| mumis |" in line).split("|")
    assert [float(row[3]), float(row[5]), float(row[8])] == pytest.approx(
        [mu["kl_to_retrain"], mu["mia_loss_auc"], mu["test_remaining_acc"]], abs=5e-3)  # as printed
    removed = next(line for line in table if "| original, class output removed |" in line).split("|")
    assert row[1] == removed[1] == " class:3 s0 " and len([line for line in table if line.startswith("| class")]) == 2


def test_interrupt_and_resume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture[str]) -> None:
    cfg_path = _write(tmp_path, TINY)
    out = tmp_path / "out"
    real = bench_runner.unlearn_scenario
    calls: list[str] = []

    def interrupted(**kw: Any) -> Any:
        calls.append(Path(kw["out"]).name)
        if len(calls) == 2:
            raise KeyboardInterrupt  # Ctrl-C during the second cell
        return real(**kw)

    monkeypatch.setattr(bench_runner, "unlearn_scenario", interrupted)
    assert main(["-q", "bench", "--config", str(cfg_path), "--out", str(out)]) == 130
    first = _records(out)
    assert sorted(r["method"] for r in first.values()) == ["grad_ascent", "original", "retrain"]
    assert not list((out / "runs").glob("*mumis*"))  # no half-written run directory
    (out / "runs" / ".stale.partial-x").mkdir()  # debris of a killed run

    # without --resume a non-empty --out is refused
    assert main(["-q", "bench", "--config", str(cfg_path), "--out", str(out)]) == 2
    assert "--resume" in capsys.readouterr().err

    weights = out / "models" / "digits" / "mlp" / "s0" / "original-fine" / "model.safetensors"
    w_mtime = weights.stat().st_mtime_ns
    calls.clear()
    monkeypatch.setattr(bench_runner, "unlearn_scenario", lambda **kw: calls.append(Path(kw["out"]).name) or real(**kw))
    assert main(["-q", "bench", "--config", str(cfg_path), "--out", str(out), "--resume"]) == 0
    assert "1 cells run, 1 already done, of 2; models: 0 trained" in capsys.readouterr().out
    assert calls == ["digits__mlp__random-0.1__mumis__s0"]
    assert not (out / "runs" / ".stale.partial-x").exists()
    second = _records(out)
    assert len(second) == 4 and all(second[k] == v for k, v in first.items())
    mumis = second["digits__mlp__random-0.1__mumis__s0"]
    assert mumis["settings"]["max_steps"] == 5 and mumis["steps"] <= 5  # by_kind: random

    # delete one record: only that cell is redone, with the same numbers; the rest is untouched
    ga = "digits__mlp__random-0.1__grad_ascent__s0"
    files = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in (out / "records").glob("*.json")}
    (out / "records" / f"{ga}.json").unlink()
    calls.clear()
    assert main(["-q", "bench", "--config", str(cfg_path), "--out", str(out), "--resume"]) == 0
    assert calls == [ga]
    assert weights.stat().st_mtime_ns == w_mtime  # cached models reused
    third = _records(out)
    for p in (out / "records").glob("*.json"):
        if p.stem != ga:
            assert (p.read_bytes(), p.stat().st_mtime_ns) == files[p.name]
    assert third[ga]["evaluation"]["model"] == second[ga]["evaluation"]["model"]  # deterministic on CPU
    assert third[ga]["steps"] == second[ga]["steps"]

    # a resumed bench must not silently mix settings
    changed = {**TINY, "methods": {"grad_ascent": {"epochs": 2}, "mumis": {"max_steps": 10}}}
    assert main(["-q", "bench", "--config", str(_write(tmp_path, changed, "c.yaml")), "--out", str(out),
                 "--resume"]) == 2
    assert "made with other settings" in capsys.readouterr().err
    saved = json.loads((out / "bench.json").read_text())["config"]["methods"]
    assert saved[0]["settings"] == {"epochs": 1}  # a refused resume leaves bench.json alone
    retrain = {**TINY, "train": {"epochs": 4}}
    assert main(["-q", "bench", "--config", str(_write(tmp_path, retrain, "t.yaml")), "--out", str(out),
                 "--resume"]) == 2
    assert "other training settings" in capsys.readouterr().err


@pytest.mark.parametrize("change, message", [
    ({"bogus": 1}, "unknown key 'bogus'"),
    ({"method": {}}, "unknown key 'method'. Did you mean 'methods'?"),
    ({"datasets": ["digitz"]}, "unknown dataset 'digitz'. Did you mean 'digits'?"),
    ({"models": ["mlpp"]}, "unknown model 'mlpp'"),
    ({"methods": {"mumsi": {}}}, "unknown method 'mumsi'"),
    ({"methods": {"mumis": {"lrr": 1}}}, "unknown setting 'lrr'"),
    ({"methods": {"retrain": {}}}, "the retrained oracle's row"),
    ({"methods": {"original": {"method": "mumis"}}}, "the original model's row"),
    ({"datasets": ["digits@0"]}, "after '@' give the training subset size"),
    ({"datasets": ["digits@5000"]}, "asks for 5000 training samples; digits has 1437"),
    ({"methods": {"mumis": {"by_kind": {"randm": {}}}}}, "unknown scenario kind 'randm' in `by_kind`. Did you mean 'random'?"),
    ({"methods": {"mumis": {"by_kind": {"class": {"lrr": 1}}}}}, "(by_kind class): unknown setting 'lrr'"),
    ({"methods": {"x": {"method": "mumis", "config": "nope.yaml"}}}, "not found"),
    ({"scenarios": ["klass:3"]}, "unknown forget spec kind 'klass'"),
    ({"scenarios": ["class:12"]}, "class:12"),
    ({"scenarios": ["random:1.5"]}, "strictly between 0 and 1"),
    ({"seeds": [0, 0]}, "`seeds` lists a seed twice"),
    ({"seeds": "a"}, "`seeds` must be"),
    ({"train": {"epochz": 3}}, "unknown setting 'epochz'"),
    ({"recipe": "fast"}, "unknown recipe 'fast'"),
    ({"metrics": ["mia"]}, "must include 'accuracy'"),
    ({"metrics": "everything"}, "unknown metric group 'everything'"),
    ({"split_seed": -1}, "`split_seed`"),
    ({"datasets": None}, "`datasets` must be a non-empty list"),
    ({"retrain_seeds": [0, 0]}, "`retrain_seeds` lists a seed twice"),
    ({"retrain_seeds": [-1]}, "`retrain_seeds` must be"),
    ({"methods": {"retrain-seed-1": {"method": "mumis"}}}, "further retrained model's row"),
    ({"holdout": 1.5}, "`holdout`: --holdout '1.5' is out of range"),
    ({"holdout": "lots"}, "`holdout`: --holdout 'lots' is not a number"),
    ({"methods": {"mumis": {"holdout": "no"}}}, "`holdout` must be true or false"),
    ({"methods": {"grad_ascent": {"holdout": False}}}, "grad_ascent never reads one"),
])
def test_bad_config_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                       change: dict[str, Any], message: str) -> None:
    cfg = {**TINY, **change}
    out = tmp_path / "out"
    assert main(["bench", "--config", str(_write(tmp_path, cfg)), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not out.exists()  # validated before any work


def test_missing_keys_and_presets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    partial = {k: v for k, v in TINY.items() if k != "seeds"}
    assert main(["bench", "--config", str(_write(tmp_path, partial)), "--out", str(tmp_path / "o")]) == 2
    assert "missing 'seeds'" in capsys.readouterr().err
    # a preset file (relative to the YAML's folder, or the working directory) + settings on top
    (tmp_path / "mine.yaml").write_text((ROOT / "configs" / "methods" / "mumis.yaml").read_text())
    cfg = {**TINY, "methods": {"v1": {"config": "mine.yaml", "lr": 5e-5}, "ga": {"method": "grad_ascent"}}}
    bench = load_bench_config(_write(tmp_path, cfg), check_data=False)
    v1, ga = bench.methods
    assert (v1.label, v1.method, v1.settings["lr"], v1.settings["stop"]) == ("v1", "mumis", 5e-5, "forget_acc")
    assert (ga.label, ga.method, ga.settings) == ("ga", "grad_ascent", {})
    assert cell_id("digits", "mlp", "class:3,5", "mumis", 0) == "digits__mlp__class-3_5__mumis__s0"


def test_only_runs_the_matching_cells(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg_path = _write(tmp_path, {**TINY, "datasets": ["digits@600/200"]})
    out, full = tmp_path / "one", tmp_path / "full"
    cell = "digits-600-200__mlp__random-0.1__mumis__s0"
    assert main(["-q", "bench", "--config", str(cfg_path), "--out", str(out), "--only", "*__mumis__s0"]) == 0
    assert "1 cells run, 0 already done, of 1" in capsys.readouterr().out
    assert sorted(_records(out)) == sorted([cell, cell.replace("mumis", "original"),
                                            cell.replace("mumis", "retrain")])
    assert main(["-q", "bench", "--config", str(cfg_path), "--out", str(full)]) == 0
    # the one cell reproduces the number of the full bench (the subset is fixed by its name)
    one, every = _records(out)[cell], _records(full)[cell]
    assert one["evaluation"]["model"] == every["evaluation"]["model"] and one["steps"] == every["steps"]
    assert every["evaluation"]["sizes"]["retain"] + every["evaluation"]["sizes"]["forget"] == 600
    assert main(["bench", "--config", str(cfg_path), "--out", str(tmp_path / "x"), "--only", "*nope*"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--only '*nope*' matches no cell" in err and len(err.splitlines()) == 1


def test_resume_rewrites_the_oracle_record_without_the_original(tmp_path: Path) -> None:
    # Only the oracle's record is missing and the original's model folder is gone: the resumed
    # bench evaluates the oracle from its own run directory and writes the same record again.
    cfg_path = _write(tmp_path, {**TINY, "methods": {"grad_ascent": {"epochs": 1}}})
    out = tmp_path / "out"
    assert main(["-q", "bench", "--config", str(cfg_path), "--out", str(out)]) == 0
    ref = "digits__mlp__random-0.1__retrain__s0"
    before = _records(out)[ref]
    (out / "records" / f"{ref}.json").unlink()
    shutil.rmtree(out / "models" / "digits" / "mlp" / "s0" / "original-fine")
    assert main(["-q", "bench", "--config", str(cfg_path), "--out", str(out), "--resume"]) == 0
    after = _records(out)[ref]
    assert not (out / "models" / "digits" / "mlp" / "s0" / "original-fine").exists()  # not retrained
    assert after["evaluation"]["model"] == before["evaluation"]["model"]
    assert {k: v for k, v in after.items() if k not in ("created", "eval_time_s", "evaluation")} == {
        k: v for k, v in before.items() if k not in ("created", "eval_time_s", "evaluation")}


def test_retrain_seeds_give_the_floor_rows_and_marks(tmp_path: Path) -> None:
    cfg = {**TINY, "scenarios": ["class:3", "random:0.1"], "retrain_seeds": [0, 1],
           "methods": {"grad_ascent": {"epochs": 1}}}
    out = tmp_path / "out"
    assert main(["-q", "bench", "--config", str(_write(tmp_path, cfg)), "--out", str(out)]) == 0
    recs = _records(out)
    floors = {k: r for k, r in recs.items() if r["role"] == "floor"}
    assert sorted(floors) == ["digits__mlp__class-3__retrain-seed-1__s0", "digits__mlp__random-0.1__retrain-seed-1__s0"]
    for f in floors.values():
        assert f["method"] == "retrain (seed 1)"
        # split seed 0 for both seeds: the seed-1 retrain lives where a seed-1 oracle would
        assert f["run_dir"] == f"models/digits/mlp/s1/retrain-{f['scenario'].replace(':', '-')}"
        assert json.loads((out / f["run_dir"] / "meta.json").read_text())["seed"] == 1
        # the floor row is the seed-1 retrain against the oracle: its gaps are the floor
        for r in recs.values():
            if r["scenario"] == f["scenario"] and r["role"] == "method":
                fm = r["evaluation"]["floor"]["metrics"]
                assert fm["gap_paper"]["floor"] == [pytest.approx(f["gap_paper"])]
                assert fm["gap_paper"]["model"] == pytest.approx(r["gap_paper"])
                assert fm["gap_salun"]["within"] == (r["gap_salun"] <= f["gap_salun"] + 1e-9)
                assert r["evaluation"]["floor"]["references"][0]["name"] == "retrain (seed 1)"
    assert main(["-q", "report", str(out)]) == 0
    md = (out / "report" / "tables.md").read_text()
    rows = [line.split("|")[1].strip() for line in md.splitlines() if line.startswith("| ")]
    assert rows[:4] == ["method", "retrain", "retrain (seed 1)", "original"]
    assert "retraining floor" in md
    # a mark exactly where the record says within (grad_ascent on class:3)
    ga = recs["digits__mlp__class-3__grad_ascent__s0"]
    line = next(x for x in md.splitlines() if x.startswith("| grad_ascent |"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    gap_cell = cells[5]  # forget, remaining, test, MIA-efficacy, gap (paper)
    assert gap_cell.endswith(" *") == ga["evaluation"]["floor"]["metrics"]["gap_paper"]["within"]
    csv_text = (out / "report" / "tables.csv").read_text()
    assert "gap_paper_within" in csv_text.splitlines()[0]
    page = (out / "report" / "report.html").read_text()
    assert "How to read this" in page and "retraining floor" in page


def test_a_bench_holdout_reaches_the_rows_that_use_it(tmp_path: Path) -> None:
    cfg = {**TINY, "scenarios": ["random:0.1"], "holdout": 0.1, "metrics": ["accuracy", "loss_rank"],
           "methods": {"mumis": {"max_steps": 5}, "mumis_free": {"method": "mumis", "max_steps": 5,
                                                                "target_forget_acc": 90.0, "holdout": False},
                       "grad_ascent": {"epochs": 1}}}
    out = tmp_path / "out"
    assert main(["-q", "bench", "--config", str(_write(tmp_path, cfg)), "--out", str(out)]) == 0
    recs = _records(out)
    used = {r["method"]: r["data_used"] for r in recs.values() if r["role"] == "method"}
    assert used == {"mumis": ["forget", "holdout"], "mumis_free": ["forget"], "grad_ascent": ["forget"]}
    # every row's rank test compares the forget set with the bench's holdout
    assert {r["evaluation"]["mia_details"]["model"]["rank_auc"]["unseen"] for r in recs.values()} == {
        "holdout split, samples of the forget set's classes"}
    # every model of the bench left the same holdout out
    metas = [json.loads(p.read_text()) for p in (out / "models").rglob("meta.json")]
    held = {tuple(m["manifest"]["holdout"]) for m in metas}
    assert len(metas) == 2 and len(held) == 1 and len(next(iter(held))) > 0
    bench = json.loads((out / "bench.json").read_text())
    assert bench["config"]["holdout"] == 0.1
    assert {m["label"]: m.get("holdout", True) for m in bench["config"]["methods"]}["mumis_free"] is False
    # another holdout is other models: resuming there is refused
    cfg2 = {**cfg, "holdout": 0.2}
    assert main(["-q", "bench", "--config", str(_write(tmp_path, cfg2, "b2.yaml")), "--out", str(out),
                 "--resume"]) == 2


def test_floor_model_folders_and_old_benches(tmp_path: Path) -> None:
    from mumis.bench.runner import _floor_dir
    from mumis.reporting import build_tables
    from mumis.reporting.html import how_to_read

    cfg = load_bench_config(_write(tmp_path, {**TINY, "retrain_seeds": [0, 1], "split_seed": "seed"}),
                            check_data=False)
    assert cfg.floor_seeds(0) == [1] and cfg.floor_seeds(2) == [0, 1]
    # another split for seed 1: its own folder beside the seed-0 oracle, on the cell's split
    assert _floor_dir(cfg, tmp_path, "digits", "mlp", "random:0.1", 0, 1) == (
        tmp_path / "models" / "digits" / "mlp" / "s0" / "retrain-random-0.1-seed1", 0)
    # a class does not depend on the split seed: the seed-1 oracle is that retrained model
    assert _floor_dir(cfg, tmp_path, "digits", "mlp", "class:3", 0, 1) == (
        tmp_path / "models" / "digits" / "mlp" / "s1" / "retrain-class-3", 1)
    assert cfg.to_dict()["retrain_seeds"] == [0, 1]
    assert "retrain_seeds" not in load_bench_config(_write(tmp_path, TINY, "t.yaml"), check_data=False).to_dict()
    # records without a floor (an older bench): no marks, no floor rows, the page says how to get one
    rec = {"dataset": "digits", "model": "mlp", "scenario": "class:3", "seed": 0, "role": "method",
           "method": "ga", "gap_paper": 1.0, "evaluation": {"model": {"test_remaining_acc": 1.0}}}
    tables = build_tables([rec])
    assert not tables[0].floor and tables[0].rows[0].within == {}
    assert "retrain_seeds: [0, 1]" in how_to_read(tables)

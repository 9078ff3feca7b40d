"""The sequential bench scenario (`mumis.bench.sequence`): three class requests and three random
chunks in a row on a digits MLP, two methods, each request against the model retrained without
the requests so far; resume, --only, strict configs and the report's per-request tables and curves.

The bench is run once per module; the tests that change it (the redo) come last.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from mumis.bench import parse_bench_config, run_bench
from mumis.checkpoint import load_checkpoint
from mumis.cli import main
from mumis.data import load_dataset
from mumis.exceptions import ConfigError

CFG: dict[str, Any] = {
    "datasets": ["digits"], "models": ["mlp"],
    "scenarios": ["class:1", {"sequence": ["class:1", "class:3", "class:5"], "name": "classes"},
                  {"sequence": ["random:0.03", "random:0.03", "random:0.03"], "name": "chunks"}],
    "methods": {"mumis": {"max_steps": 20, "by_kind": {"random": {"target_forget_acc": 90.0}}},
                "finetune": {"epochs": 1}},
    "seeds": [0], "split_seed": 4, "train": {"epochs": 3}, "metrics": ["accuracy", "divergence"], "device": "cpu",
}
LABELS = ("mumis", "finetune")


def cid(seq: str, k: int, label: str) -> str:
    return f"digits__mlp__seq-{seq}__r{k}__{label}__s0"


def read(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("seqbench") / "out"
    res = run_bench(parse_bench_config(CFG), out)
    assert (res.cells, res.ran, res.skipped) == (14, 14, 0)
    return out


def test_a_record_per_request_with_its_union_and_reference(bench: Path) -> None:
    y = load_dataset("digits").y_train.numpy()
    for label in ("retrain", *LABELS):
        for k, classes in enumerate(([1], [1, 3], [1, 3, 5]), 1):
            rec = read(bench / "records" / f"{cid('classes', k, label)}.json")
            s = rec["sequence"]
            assert (s["request"], s["requests"], s["spec"], s["split_seed"]) == (k, 3, f"class:{classes[-1]}", 4 + k - 1)
            assert s["num_forgotten"] == int(np.isin(y, classes).sum())
            assert s["num_new"] == int((y == classes[-1]).sum()) and s["overlap"] == 0
            assert [e["request"] for e in s["earlier"]] == list(range(1, k))
            assert all(e["on"] == "test_forgotten" for e in s["earlier"])
            assert rec["scenario"] == f"seq-classes__r{k}" and rec["cell"] == cid("classes", k, label)
    for k in (1, 2, 3):
        ref = read(bench / "records" / f"{cid('chunks', k, 'retrain')}.json")
        ref_dir = bench / ref["run_dir"]
        assert ref_dir.name == ("retrain-random-0.03" if k == 1 else f"retrain-seq-chunks-r{k}")
        ref_forget = read(ref_dir / "meta.json")["manifest"]["forget"]
        for label in LABELS:
            run = bench / "runs" / cid("chunks", k, label)
            meta = read(run / "meta.json")
            chain = meta["chain"]
            # the reference is retrained without exactly the chain's union so far
            assert chain["union"]["indices"] == ref_forget and len(ref_forget) == ref["sequence"]["num_forgotten"]
            assert [r["split_seed"] for r in chain["requests"]] == [4, 5, 6][:k]
            parent = bench / "models/digits/mlp/s0/original-fine" if k == 1 else bench / "runs" / cid("chunks", k - 1, label)
            assert chain["requests"][-1]["parent"] == str(parent.resolve())
            rec = read(bench / "records" / f"{cid('chunks', k, label)}.json")
            s = rec["sequence"]
            assert s["num_new"] + s["overlap"] == s["num_forget"] == chain["requests"][-1]["num_forget"]
            assert s["num_new"] == len(meta["manifest"]["forget"])
            assert read(run / "result.json")["reference"] == str(ref_dir.resolve())
            assert "kl_to_retrain" in rec["evaluation"]["model"]
    # the random chunks differ (their own split seeds), so the union grows
    sizes = [read(bench / "records" / f"{cid('chunks', k, 'mumis')}.json")["sequence"]["num_forgotten"] for k in (1, 2, 3)]
    assert sizes[0] < sizes[1] < sizes[2]


def test_earlier_requests_accuracy_is_measured_on_the_current_model(bench: Path) -> None:
    data = load_dataset("digits")
    for seq, label in (("classes", "finetune"), ("chunks", "mumis")):
        run = bench / "runs" / cid(seq, 3, label)
        model, _ = load_checkpoint(run, device="cpu")
        earlier = read(bench / "records" / f"{cid(seq, 3, label)}.json")["sequence"]["earlier"]
        first = read(bench / "runs" / cid(seq, 1, label) / "meta.json")["manifest"]
        if seq == "classes":
            idx, x_all, y_all = first["test_forgotten"], data.x_test, data.y_test
        else:
            idx, x_all, y_all = first["forget"], data.x_train, data.y_train
        with torch.no_grad():
            pred = model.eval()(x_all[idx]).argmax(1)
        acc = 100.0 * float((pred == y_all[idx]).sum()) / len(idx)
        assert earlier[0]["acc"] == pytest.approx(acc) and earlier[0]["n"] == len(idx)


def test_request_1_is_the_plain_scenario(bench: Path) -> None:
    """Request 1 unlearns the original against the plain scenario's oracle (the same model
    directory): the same numbers as the plain `class:1` cell."""
    for label in LABELS:
        seq = read(bench / "records" / f"{cid('classes', 1, label)}.json")
        plain = read(bench / "records" / f"digits__mlp__class-1__{label}__s0.json")
        assert seq["evaluation"]["model"] == plain["evaluation"]["model"] and "sequence" not in plain
    ref = read(bench / "records" / f"{cid('classes', 1, 'retrain')}.json")
    assert ref["run_dir"] == read(bench / "records" / "digits__mlp__class-1__retrain__s0.json")["run_dir"]


def test_methods_say_their_state_comes_from_the_current_model(bench: Path) -> None:
    for k in (1, 2, 3):
        extra = read(bench / "runs" / cid("classes", k, "mumis") / "result.json")["extra"]
        assert extra["state_from"] == "current model"


def test_report_has_the_per_request_tables_and_curves(bench: Path) -> None:
    assert main(["-q", "report", str(bench), "--format", "md,csv,html"]) == 0
    rows = (bench / "report" / "sequences.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 * 3 * 3  # header; (retrain, mumis, finetune) x 3 requests x 2 sequences
    assert rows[0].startswith("dataset,model,sequence,method,request,spec,") and "earlier_acc_mean" in rows[0]
    assert "seq-" not in (bench / "report" / "tables.csv").read_text()
    md = (bench / "report" / "tables.md").read_text()
    assert "sequence classes: class:1 -> class:3 -> class:5" in md
    assert "sequence chunks: random:0.03 -> random:0.03 -> random:0.03" in md
    lines = [ln for ln in md.splitlines() if ln.startswith(("| mumis | ", "| retrain | "))]
    assert len(lines) == 2 + 12  # the plain class:1 table; (retrain, mumis) x 3 requests x 2 sequences
    assert "| mumis | 3 | class:5 | 145 | 0 | 437 |" in md
    assert "| earlier requests' acc |" in md and "| KL to retrain |" in md
    assert "seq-classes__r1" not in md  # the requests are not also plain tables
    page = (bench / "report" / "report.html").read_text()
    assert page.count('alt="metrics over the requests') == 2


def test_resume_skips_every_finished_request(bench: Path) -> None:
    res = run_bench(parse_bench_config(CFG), bench, resume=True)
    assert (res.ran, res.skipped, res.models_trained) == (0, 14, 0)


def test_only_redoes_a_request_and_the_runs_it_needs(bench: Path) -> None:
    """A deleted record is redone; a missing run directory of an earlier request of its chain
    is run again first. The same numbers come back (seeded, deterministic on CPU)."""
    import shutil

    target = bench / "records" / f"{cid('classes', 2, 'finetune')}.json"
    before = read(target)
    target.unlink()
    shutil.rmtree(bench / "runs" / cid("classes", 1, "finetune"))
    res = run_bench(parse_bench_config(CFG), bench, resume=True, only=["*seq-classes__r2__finetune*"])
    assert (res.cells, res.ran, res.models_trained) == (1, 1, 0)
    after = read(target)
    assert after["evaluation"]["model"] == before["evaluation"]["model"]
    assert after["sequence"] == before["sequence"] and after["key"] == before["key"]
    assert (bench / "runs" / cid("classes", 1, "finetune") / "model.safetensors").is_file()


BAD = [
    ([{"sequence": ["class:1"]}], "at least 2 forget specs"),
    ([{"sequence": ["class:1", "class:1"]}], "selects nothing new"),
    ([{"sequence": ["class:1", "subclass:3"]}], "mixes sub-class specs"),
    ([{"sequence": ["class:1", "klass:3"]}], "klass"),
    ([{"sequence": ["class:1", "class:3"], "split": 1}], "{sequence: [forget specs], name: NAME}"),
    ([{"sequence": ["class:1", "class:3"]}, {"sequence": ["class:1", "class:3"]}], "same name"),
    ([{"sequence": ["class:1", "class:3"], "name": ""}], "non-empty string"),
]


@pytest.mark.parametrize(("scenarios", "words"), BAD)
def test_bad_sequences_are_one_config_error(scenarios: list[Any], words: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_bench_config({**CFG, "scenarios": scenarios})
    assert words in str(e.value) and "\n" not in str(e.value)


def test_bad_sequence_through_the_cli_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml.safe_dump({**CFG, "scenarios": ["class:2", {"sequence": ["class:1", "class:99"]}]}))
    out = tmp_path / "out"
    assert main(["-q", "bench", "--config", str(cfg), "--out", str(out)]) == 2
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("mumis: error: ") and "class:99" in lines[0]
    assert not out.exists()


def test_plain_scenarios_keep_their_config_and_ids() -> None:
    cfg = parse_bench_config({**CFG, "scenarios": ["class:3"]})
    assert cfg.sequences == [] and "sequences" not in cfg.to_dict() and cfg.scenarios == ["class:3"]
    mixed = parse_bench_config({**CFG, "scenarios": ["class:3", {"sequence": ["class:1", "class:5"]}]})
    assert mixed.scenarios == ["class:3"] and mixed.sequences[0].request_label(2) == "seq-class-1+class-5__r2"
    assert mixed.to_dict()["sequences"] == [{"name": "class-1+class-5", "sequence": ["class:1", "class:5"]}]


def test_the_sequential_preset_parses() -> None:
    from mumis.bench import load_bench_config

    preset = Path(__file__).resolve().parents[2] / "configs" / "bench" / "sequential-cpu.yaml"
    cfg = load_bench_config(preset, check_data=False)
    assert [q.specs for q in cfg.sequences] == [("class:1", "class:3", "class:5"), ("random:0.02",) * 3]
    assert [m.label for m in cfg.methods] == ["mumis", "mumis_published", "salun", "neggrad_plus", "finetune"]
    assert cfg.scenarios == [] and cfg.recipe == "memorise" and cfg.train == {"epochs": 20}

"""`mumis unlearn` and `mumis methods`, in-process through `mumis.cli.main` (one real subprocess).

One original and one retrained digits MLP are trained once per module with `mumis train`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
import yaml

from mumis import api
from mumis.checkpoint import load_checkpoint, read_meta
from mumis.cli import main
from mumis.cli.methods import format_value
from mumis.data import load_dataset, resolve_manifest
from mumis.methods import RunContext, RunOutput, UnlearningMethod
from mumis.testing.conformance import registered

PRESETS = Path(__file__).resolve().parents[2] / "configs" / "methods"
RUN_FILES = {"model.safetensors", "meta.json", "config.yaml", "history.jsonl", "result.json", "receipt.json",
             "receipt.html"}


@dataclass
class _Steps:
    max_steps: int = field(default=1, metadata={"help": "steps"})


class _NeedsRetain(UnlearningMethod):
    """A do-nothing method that declares it needs the retain set."""

    name = "_test_cli_needs_retain"
    paper = "none (test double)"
    summary = "needs retain data"
    Config = _Steps
    requires_retain = True

    def run(self, model: torch.nn.Module, ctx: RunContext) -> RunOutput:
        return RunOutput(steps=0, stop_reason="test double", history=[{"step": 0}])


@dataclass
class Runs:
    original: Path
    retrained: Path


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    root = tmp_path_factory.mktemp("trained")
    original, retrained = root / "original", root / "retrained"
    common = ["--dataset", "digits", "--model", "mlp", "--device", "cpu", "--split-seed", "7"]
    assert main(["-q", "train", *common, "--epochs", "3", "--out", str(original)]) == 0
    assert main(["-q", "train", *common, "--epochs", "1", "--forget", "class:3", "--out", str(retrained)]) == 0
    return Runs(original, retrained)


def unlearn(runs: Runs, out: Path, *extra: str, forget: str = "class:3") -> int:
    return main(["-q", "unlearn", "--checkpoint", str(runs.original), "--forget", forget,
                 "--device", "cpu", "--out", str(out), *extra])


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("mumis: error: "), err
    return lines[0]


# --------------------------------------------------------------------------- unlearn
def test_unlearn_writes_a_complete_run_dir(runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "u"
    # stop=none pushes past the forgotten class; at the default lr (1) this barely trained MLP's
    # logits blow up by step 3 (the divergence guard stops it), so five full steps need a smaller one
    assert unlearn(runs, out, "--method", "mumis", "--set", "max_steps=5", "--set", "monitor_every=1",
                   "--set", "stop=none", "--set", "lr=0.2", "--reference", str(runs.retrained)) == 0
    printed = capsys.readouterr().out
    assert "mumis: 5 steps" in printed and "stopped:" in printed and str(out) in printed
    assert RUN_FILES <= {p.name for p in out.iterdir()}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no stage left

    result = json.loads((out / "result.json").read_text())
    for key in ("method", "time_s", "steps", "stop_reason", "peak_mem_mb", "seed", "forget_spec", "manifest_hash"):
        assert key in result
    assert result["method"] == "mumis" and result["steps"] == 5 and result["time_s"] > 0
    assert result["forget_spec"] == "class:3" and result["stop_reason"] and result["uses_retain"] is False

    meta, parent, ref = read_meta(out), read_meta(runs.original), read_meta(runs.retrained)
    assert meta["kind"] == "unlearn" and meta["method"] == "mumis"
    assert meta["model"] == parent["model"] and meta["dataset"] == parent["dataset"]
    assert meta["parent"] == str(runs.original.resolve())
    assert meta["manifest"]["hash"] == result["manifest_hash"] == ref["manifest"]["hash"]
    assert meta["split_seed"] == 7 and meta["forget_spec"] == "class:3"

    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["method"] == "mumis" and config["max_steps"] == 5 and config["monitor_every"] == 1
    assert meta["recipe"]["config"] == {k: v for k, v in config.items() if k != "method"}

    rows = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and [r["step"] for r in rows] == list(range(6))

    model, _ = load_checkpoint(out)  # loads back as a run directory
    original, _ = load_checkpoint(runs.original)
    changed = [not torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                     original.state_dict().values(), strict=True)]
    assert any(changed)


def test_forget_only_methods_get_no_retain_data(runs: Runs, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, object] = {}
    real = api.unlearn

    def spy(model, forget, method, **kw):  # noqa: ANN001, ANN003
        seen.update(method=method, retain=kw.get("retain"), n_forget=len(forget[1]))
        return real(model, forget, method, **kw)

    monkeypatch.setattr(api, "unlearn", spy)
    assert unlearn(runs, tmp_path / "u", "--method", "mumis_v1", "--set", "max_steps=2") == 0
    assert seen["retain"] is None and seen["n_forget"] == json.loads(
        (tmp_path / "u" / "result.json").read_text())["num_forget"]

    with registered(_NeedsRetain):
        assert unlearn(runs, tmp_path / "r", "--method", _NeedsRetain.name, "--set", "max_steps=2") == 0
    rx, ry = seen["retain"]  # type: ignore[misc]
    assert len(ry) + seen["n_forget"] == len(load_dataset("digits").y_train)
    assert not (ry == 3).any()  # the retain set of class:3 holds no 3s
    assert json.loads((tmp_path / "r" / "result.json").read_text())["uses_retain"] is True


def test_bad_set_key_exits_2_and_writes_nothing(runs: Runs, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert unlearn(runs, tmp_path / "u", "--method", "mumis", "--set", "max_step=5") == 2
    line = one_error_line(capsys)
    assert "unknown setting 'max_step'" in line and "Did you mean 'max_steps'" in line and "Valid settings:" in line
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args, expected", [
    (["--method", "mumsi"], "unknown method 'mumsi'. Did you mean 'mumis'"),
    (["--method", "mumis", "--set", "lr=fast"], "lr must be a number"),
    (["--method", "mumis", "--set", "lr"], "--set expects key=value"),
    ([], "no method given; pass --method NAME"),
    (["--method", "mumis", "--config", "missing.yaml"], "not found"),
    (["--method", "mumis", "--device", "tpu"], "unknown device"),
])
def test_bad_input_exits_2(runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                           args: list[str], expected: str) -> None:
    assert unlearn(runs, tmp_path / "u", *args) == 2
    assert expected in one_error_line(capsys)
    assert list(tmp_path.iterdir()) == []


def test_bad_forget_spec_and_checkpoint(runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert unlearn(runs, tmp_path / "u", "--method", "mumis", forget="class:12") == 2
    assert "out of range" in one_error_line(capsys)
    assert main(["unlearn", "--checkpoint", str(tmp_path / "nope"), "--forget", "class:3", "--method", "mumis",
                 "--out", str(tmp_path / "u")]) == 2
    assert "does not exist" in one_error_line(capsys)
    assert list(tmp_path.iterdir()) == []


def test_reference_with_other_split_exits_2(runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert unlearn(runs, tmp_path / "u", "--method", "mumis", "--reference", str(runs.retrained),
                   forget="class:5") == 2
    line = one_error_line(capsys)
    assert "'class:3'" in line and "'class:5'" in line
    assert "forget spec, split seed (--split-seed) and dataset must match" in line
    # a reference trained on everything (the original) is no retrained model either
    assert unlearn(runs, tmp_path / "u", "--method", "mumis", "--reference", str(runs.original)) == 2
    one_error_line(capsys)
    assert list(tmp_path.iterdir()) == []


def test_random_spec_uses_the_checkpoint_split_seed(runs: Runs, tmp_path: Path) -> None:
    bundle = load_dataset("digits")
    assert unlearn(runs, tmp_path / "a", "--method", "mumis", "--set", "max_steps=1", "--set", "target_forget_acc=90",
                   forget="random:30") == 0
    a = read_meta(tmp_path / "a")
    assert a["split_seed"] == 7  # from the checkpoint (trained with --split-seed 7)
    assert a["manifest"]["hash"] == resolve_manifest("random:30", bundle, seed=7).hash
    assert unlearn(runs, tmp_path / "b", "--method", "mumis", "--set", "max_steps=1", "--set", "target_forget_acc=90",
                   "--split-seed", "1",
                   forget="random:30") == 0
    b = read_meta(tmp_path / "b")
    assert b["split_seed"] == 1 and b["manifest"]["forget"] != a["manifest"]["forget"]


def test_preset_config_and_repeat_from_config_yaml(runs: Runs, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    # the preset names its method, so --method may be left out; --set goes on top
    assert unlearn(runs, tmp_path / "a", "--config", str(PRESETS / "mumis_v1.yaml"), "--set", "max_steps=3",
                   "--seed", "4") == 0
    config = yaml.safe_load((tmp_path / "a" / "config.yaml").read_text())
    assert config["method"] == "mumis_v1" and config["max_steps"] == 3 and config["stop"] == "v1"
    # a run's config.yaml repeats the run exactly (CPU, same seed)
    assert unlearn(runs, tmp_path / "b", "--config", str(tmp_path / "a" / "config.yaml"), "--seed", "4") == 0
    ma, _ = load_checkpoint(tmp_path / "a")
    mb, _ = load_checkpoint(tmp_path / "b")
    assert all(torch.equal(x, y) for x, y in zip(ma.state_dict().values(), mb.state_dict().values(), strict=True))
    capsys.readouterr()
    # a preset for another method is refused
    assert unlearn(runs, tmp_path / "c", "--method", "mumis", "--config", str(PRESETS / "mumis_v1.yaml")) == 2
    assert "is for method 'mumis_v1' but --method is 'mumis'" in one_error_line(capsys)
    assert not (tmp_path / "c").exists()


def test_out_taken_and_overwrite(runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "u"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert unlearn(runs, out, "--method", "mumis", "--set", "max_steps=1") == 2
    assert "already exists" in one_error_line(capsys)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    # --overwrite replaces only an earlier run directory, never a folder of the user's files
    assert unlearn(runs, out, "--method", "mumis", "--set", "max_steps=1", "--overwrite") == 2
    assert "refusing to replace" in one_error_line(capsys)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    (out / "keep.txt").unlink()
    assert unlearn(runs, out, "--method", "mumis", "--set", "max_steps=1") == 0  # an empty folder is fine
    assert unlearn(runs, out, "--method", "mumis", "--set", "max_steps=2", "--overwrite") == 0
    assert {p.name for p in out.iterdir()} == RUN_FILES
    assert yaml.safe_load((out / "config.yaml").read_text())["max_steps"] == 2  # the new run


def test_failure_inside_the_method_leaves_no_run_dir(runs: Runs, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    def boom(*a, **k):  # noqa: ANN002, ANN003
        raise RuntimeError("out of memory")

    monkeypatch.setattr(api, "unlearn", boom)
    assert unlearn(runs, tmp_path / "u", "--method", "mumis") == 1
    assert "RuntimeError: out of memory" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- methods
def test_methods_lists_every_method(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    header, *rows = out.splitlines()
    assert header.split()[:3] == ["METHOD", "DATA", "NEEDS"] and "PAPER" in header
    for name in api.list_methods():
        row = next(r for r in rows if r.split() and r.split()[0] == name)
        cls = api.get_method(name)
        assert cls.data_needs() in row and cls.paper in row


def test_methods_name_shows_settings(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["methods", "mumis"]) == 0
    out = capsys.readouterr().out
    cls = api.get_method("mumis")
    assert cls.summary in out and cls.paper in out
    assert "data needs:" in out and "forget only" in out and "needs double backward:  yes" in out
    lines = out.splitlines()
    for key, default in cls.defaults().items():
        line = next(ln for ln in lines if ln.split() and ln.split()[0] == key)
        assert line.split()[1] == format_value(default)  # as typed after --set key=
        assert cls.setting_docs()[key].split()[0] in line


def test_methods_yaml_is_a_preset(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["methods", "mumis_published", "--yaml"]) == 0
    data = yaml.safe_load(capsys.readouterr().out)
    cls = api.get_method("mumis_published")
    assert data == {"method": "mumis_published", **cls.defaults()}
    assert (PRESETS / "mumis_published.yaml").is_file()


def test_methods_unknown_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["methods", "mumis_publish"]) == 2
    assert "Did you mean 'mumis_published'" in one_error_line(capsys)


def test_methods_in_a_real_subprocess() -> None:
    proc = subprocess.run([sys.executable, "-m", "mumis", "methods", "mumis_v1"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "mumis_v1:" in proc.stdout and "batch_size" in proc.stdout


def test_copied_checkpoint_still_unlearns(runs: Runs, tmp_path: Path) -> None:
    """A run directory is self-describing: a copy elsewhere works the same."""
    copy = tmp_path / "moved"
    shutil.copytree(runs.original, copy)
    assert main(["-q", "unlearn", "--checkpoint", str(copy), "--forget", "class:3", "--method", "mumis",
                 "--set", "max_steps=1", "--device", "cpu", "--out", str(tmp_path / "u")]) == 0
    assert read_meta(tmp_path / "u")["parent"] == str(copy.resolve())

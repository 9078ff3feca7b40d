"""`mumis audit` end to end on digits (CI-sized), its bad inputs, and a slow full-size run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mumis.audits import AuditSettings, resolve_source, run_audit
from mumis.checkpoint import read_meta
from mumis.cli import main
from mumis.utils import check_overwritable


def _audit(tmp: Path, *extra: str) -> tuple[int, Path]:
    out = tmp / "audit"
    rc = main(["-q", "audit", "digits", "--forget", "class:3", "--method", "finetune", "--models", "3",
               "--shadows", "4", "--epochs", "3", "--out", str(out), *extra])
    return rc, out


def test_audit_end_to_end_ci_sized(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out = _audit(tmp_path)
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == ["audit.html", "audit.json", "config.yaml", "meta.json"]
    assert read_meta(out)["kind"] == "audit"
    res = json.loads((out / "audit.json").read_text())
    assert res["num_forget"] == 146 and res["settings"]["shadow_unit"] == "set"
    eps, lira = res["epsilon"], res["lira"]
    assert list(eps) == ["retrain", "original", "finetune"]
    assert len(eps["finetune"]["per_example"]) == 146
    # doing nothing is told apart on every example; another set of retrained models is not
    assert eps["original"]["forget_quality"] == 0.0 and eps["original"]["epsilon_capped_frac"] == 1.0
    assert eps["retrain"]["forget_quality"] > eps["original"]["forget_quality"]
    assert lira["original"]["auc"] > 99.0
    assert abs(lira["retrain"]["auc"] - 50.0) < abs(lira["original"]["auc"] - 50.0)
    assert res["accuracy"]["finetune"]["forget_acc"]["mean"] < 20.0
    table = capsys.readouterr().out
    assert "retrain" in table and "tpr@1%" in table and "F " in table
    # the folder is a mumis run directory: --overwrite may replace it, nothing else may
    check_overwritable(out, overwrite=True)


@pytest.mark.parametrize("args, msg", [
    (["--models", "2"], "--models must be at least 3"),
    (["--shadows", "5"], "--shadows must be an even number"),
    (["--audits", "epsilon,mia"], "unknown audit 'mia'"),
    (["--method", "finetune,mumis", "--set", "lr=0.1"], "name the method, e.g. --set finetune.lr"),
    (["--method", "finetune,mumis", "--set", "mumis.nosuch=1"], "unknown setting 'nosuch'"),
    (["--method", "nosuch"], "nosuch"),
    (["--set", "nosuch=1"], "unknown setting 'nosuch'"),
    (["--forget", "class:99"], "class"),
    (["--forget", "random:30", "--method", "mumis"], "target_forget_acc"),  # refused after one training
])
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          args: list[str], msg: str) -> None:
    base = {"--forget": "class:3", "--method": "finetune"}
    for i in range(0, len(args), 2):
        base.pop(args[i], None)
    flat = [x for kv in base.items() for x in kv]
    rc = main(["audit", "digits", *flat, "--models", "3", "--epochs", "1", "--out", str(tmp_path / "a"), *args])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and msg in err and len(err.splitlines()) == 1
    assert not (tmp_path / "a").exists()


def test_refuses_a_folder_it_did_not_write_and_unknown_sources(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    decoy = tmp_path / "mine"
    decoy.mkdir()
    (decoy / "notes.txt").write_text("keep me")
    for extra in ([], ["--overwrite"]):
        rc = main(["audit", "digits", "--forget", "class:3", "--method", "finetune", "--out", str(decoy), *extra])
        assert rc == 2
    assert (decoy / "notes.txt").read_text() == "keep me"
    assert main(["audit", "nosuchdata", "--forget", "class:3", "--method", "finetune",
                 "--out", str(tmp_path / "b")]) == 2
    assert main(["audit", str(tmp_path / "missing/run"), "--forget", "class:3", "--method", "finetune",
                 "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert "neither a run directory nor a dataset name" in err
    # a subset name holds a '/' but is a dataset, not a path
    assert resolve_source("digits@1000/200", epochs=1).bundle.x_train.shape[0] == 1000


def test_checkpoint_source_uses_its_recipe(tmp_path: Path) -> None:
    run = tmp_path / "orig"
    assert main(["-q", "train", "--dataset", "digits", "--model", "mlp", "--epochs", "2", "--out", str(run)]) == 0
    src = resolve_source(run, epochs=1)
    assert src.model == "mlp" and src.train_config.epochs == 1 and src.checkpoint is not None
    assert main(["audit", str(run), "--model", "cnn", "--forget", "class:3", "--method", "finetune",
                 "--out", str(tmp_path / "a")]) == 2


def test_random_forget_deterministic_example_unit() -> None:
    src = resolve_source("digits", epochs=1)
    st = AuditSettings(models=3, shadows=4, floor=False)
    a = run_audit(src, forget="random:30", methods=["finetune"], settings=st, device="cpu")
    b = run_audit(src, forget="random:30", methods=["finetune"], settings=st, device="cpu")
    assert a["settings"]["shadow_unit"] == "example" and "retrain" not in a["epsilon"]
    for key in ("epsilon", "lira", "accuracy"):
        assert a[key] == b[key]  # seeded: the same numbers on the CPU


@pytest.mark.slow
def test_audit_full_size_digits(tmp_path: Path) -> None:
    """The default sizes (N = 8, K = 16, the quick recipe) on digits class 3 with MU-Mis."""
    out = tmp_path / "full"
    assert main(["-q", "audit", "digits", "--forget", "class:3", "--method", "mumis", "--out", str(out)]) == 0
    res = json.loads((out / "audit.json").read_text())
    eps, lira = res["epsilon"], res["lira"]
    assert eps["original"]["forget_quality"] < 0.05 < eps["retrain"]["forget_quality"]
    assert lira["original"]["tpr_at_1pct_fpr"] > 50.0
    assert lira["retrain"]["tpr_at_1pct_fpr"] < 20.0
    assert set(res["lira_by_shadows"]) == {"4", "8"}


def test_one_original_protocol() -> None:
    """The challenge's protocol: one original, N method seeds. The original row is then N copies
    of one model (a point mass: every example at the cap), and a deterministic method gives N
    equal unlearned models too; the retrained floor is unaffected."""
    src = resolve_source("digits", epochs=1)
    st = AuditSettings(models=3, audits=("epsilon",), one_original=True)
    res = run_audit(src, forget="random:20", methods=["ssd"], settings=st, device="cpu")
    assert "lira" not in res and res["settings"]["one_original"] is True
    assert res["accuracy"]["original"]["test_acc"]["std"] == pytest.approx(0.0, abs=1e-9)
    assert res["epsilon"]["original"]["epsilon_capped_frac"] == 1.0
    assert res["epsilon"]["ssd"]["epsilon_capped_frac"] == 1.0
    assert res["epsilon"]["retrain"]["epsilon_capped_frac"] < 1.0
    assert [r["seed"] for r in res["runs"]["ssd"]] == [0, 1, 2]

"""Deletion receipts: canonical hashes, byte-stable receipts of identical runs, the in-memory API,
the verdict, the choice of unseen samples."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import mumis
from mumis.checkpoint import load_checkpoint
from mumis.cli import main
from mumis.metrics.rank_test import detectable_auc_shift
from mumis.receipts import indices_sha256, make_receipt, read_receipt, samples_sha256, state_sha256, write_receipt
from mumis.receipts.evidence import verdict
from mumis.receipts.hashing import canonical_json, stable, tensor_sha256
from mumis.receipts.sources import choose_unseen


# ------------------------------------------------------------------------------------ hashing
def test_state_hash_ignores_order_and_sees_one_element() -> None:
    a = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.ones(3)}
    b = {"b": torch.ones(3), "w": torch.arange(6, dtype=torch.float32).reshape(2, 3)}
    assert state_sha256(a) == state_sha256(b)
    c = {k: v.clone() for k, v in a.items()}
    c["w"][1, 2] += 1e-6
    assert state_sha256(c) != state_sha256(a)
    assert state_sha256({"w": a["w"].reshape(3, 2), "b": a["b"]}) != state_sha256(a)  # shape counts
    assert state_sha256({"w": a["w"].double(), "b": a["b"]}) != state_sha256(a)  # dtype counts
    assert state_sha256({"v": a["w"], "b": a["b"]}) != state_sha256(a)  # names count


def test_tensor_hash_is_of_little_endian_data_and_takes_every_dtype() -> None:
    t = torch.tensor([1.0, -2.5], dtype=torch.float32)
    import hashlib

    want = hashlib.sha256(b"float32|[2]|" + np.array([1.0, -2.5], dtype="<f4").tobytes()).hexdigest()
    assert tensor_sha256(t) == want == tensor_sha256(t.numpy())
    assert tensor_sha256(t[::1].clone()) == tensor_sha256(torch.tensor([1.0, -2.5]))
    for dtype in (torch.bfloat16, torch.float16, torch.bool, torch.int64, torch.uint8):
        assert len(tensor_sha256(torch.zeros(3, dtype=dtype))) == 64
    # a non-contiguous view hashes as its values
    m = torch.arange(6.0).reshape(2, 3)
    assert tensor_sha256(m.t()) == tensor_sha256(m.t().contiguous())


def test_indices_and_samples_hashes() -> None:
    assert indices_sha256([5, 1, 3]) == indices_sha256(np.array([1, 3, 5], dtype=np.int32))
    assert indices_sha256([1, 3]) != indices_sha256([1, 3, 5])
    x, y = torch.zeros(4, 1, 2, 2), torch.tensor([0, 1, 0, 1])
    assert samples_sha256(x, y) != samples_sha256(x, y.flip(0))
    assert samples_sha256(x, y) != samples_sha256(x.double(), y)


def test_stable_rounds_floats_and_canonical_json_sorts() -> None:
    v = stable({"b": 1 / 3, "a": [float("nan"), np.float32(0.1), torch.tensor(2), True, None]})
    assert v == {"b": 0.333333, "a": [None, 0.1, 2, True, None]}
    assert canonical_json(v) == b'{"a":[null,0.1,2,true,null],"b":0.333333}'
    with pytest.raises(TypeError):
        stable({"x": object()})


# ------------------------------------------------------------------------------------ verdict
def _evidence(acc_f: float, acc_u: float, auc: float | None) -> dict:
    side = {"confidence": 0.5, "loss": 1.0}
    return {"unseen": {"source": "test split", "n": 10},
            "after": {"forget": {"accuracy": acc_f, **side}, "unseen": {"accuracy": acc_u, **side},
                      "loss_attack_auc": auc}}


def test_verdict_says_what_the_evidence_shows_and_what_not() -> None:
    alike = verdict(_evidence(80.0, 78.0, 52.0), "grad_ascent")
    assert alike.startswith("The model treats the forget samples like unseen data")
    assert "evidence, not a proof" in alike and "80.0 % vs 78.0 %" in alike
    assert verdict(_evidence(99.0, 80.0, 70.0), "x").startswith("The model still treats the forget samples more like")
    assert verdict(_evidence(20.0, 80.0, 30.0), "x").startswith("The forget samples are forgotten more")
    assert verdict(_evidence(0.0, 0.0, 50.0), "x", class_forgetting=True).startswith("The model no longer recognises")
    assert verdict(_evidence(0.0, 60.0, 20.0), "x", class_forgetting=True).startswith("The model still recognises")
    assert "exact by construction" in verdict(_evidence(0.0, 0.0, None), "retrain")
    assert "tell little" not in alike
    broken = _evidence(30.0, 30.0, None)
    broken["after"]["forget"]["loss"] = None  # NaN logits (stable() turned the NaN into None)
    assert "non-finite outputs" in verdict(broken, "x")
    before_alike = {**_evidence(80.0, 78.0, 52.0), "before": _evidence(99.0, 97.0, 55.0)["after"]}
    assert "the model before unlearning passed these tests too" in verdict(before_alike, "x")


def test_unseen_samples_are_of_the_forget_classes_from_the_holdout_when_there_is_one() -> None:
    from mumis.data import splits_from_tensors

    x = torch.rand(16, 1, 2, 2)
    y = torch.tensor([0, 1, 2] * 5 + [0])
    test = (x[6:12], y[6:12])
    splits = splits_from_tensors(forget=(x[:2], y[:2]), retain=(x[2:6], y[2:6]), test=test)
    (ux, uy), source = choose_unseen(splits, {})
    assert source.startswith("test split") and set(uy.tolist()) == {0, 1} and len(uy) == 4
    assert torch.equal(ux, test[0][torch.isin(test[1], torch.tensor([0, 1]))])
    # a holdout (training-distribution samples no model trained on) with samples of those classes
    held = splits_from_tensors(forget=(x[:2], y[:2]), retain=(x[2:6], y[2:6]), test=test,
                               holdout=(x[12:], y[12:]))
    (hx, hy), source2 = choose_unseen(held, {"holdout": [12, 13, 14, 15]})
    assert source2.startswith("holdout split") and hy.tolist() == [0, 1, 0]
    assert torch.equal(hx, x[12:][torch.isin(y[12:], torch.tensor([0, 1]))])
    # none of the forget classes in the holdout (class-wise forgetting): the test split
    only2 = splits_from_tensors(forget=(x[:2], y[:2]), retain=(x[2:6], y[2:6]), test=test,
                                holdout=(x[14:15], y[14:15]))
    assert choose_unseen(only2, {"holdout": [14]})[1].startswith("test split")


# ------------------------------------------------------------------------- run directories
@dataclass
class Runs:
    original: Path
    a: Path
    b: Path
    finetune: Path


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    root = tmp_path_factory.mktemp("receipts")
    r = Runs(root / "original", root / "a", root / "b", root / "finetune")
    assert main(["-q", "train", "--dataset", "digits", "--model", "mlp", "--epochs", "3", "--device", "cpu",
                 "--out", str(r.original)]) == 0
    for out in (r.a, r.b):  # two identical requests
        assert main(["-q", "unlearn", "--checkpoint", str(r.original), "--forget", "random:40",
                     "--method", "grad_ascent", "--set", "epochs=1", "--device", "cpu", "--out", str(out)]) == 0
    assert main(["-q", "unlearn", "--checkpoint", str(r.original), "--forget", "class:3", "--method", "finetune",
                 "--set", "epochs=1", "--device", "cpu", "--out", str(r.finetune)]) == 0
    return r


def test_identical_runs_give_byte_identical_receipts(runs: Runs) -> None:
    ra, rb = write_receipt(runs.a), write_receipt(runs.b)
    assert ra["payload"] == rb["payload"] and ra["payload_sha256"] == rb["payload_sha256"]
    assert ra["payload"]["request_id"] == rb["payload"]["request_id"]

    def hashed_part(run: Path) -> str:
        d = json.loads((run / "receipt.json").read_text())
        return json.dumps({k: v for k, v in d.items() if k not in ("created", "locations")}, sort_keys=True)

    assert hashed_part(runs.a) == hashed_part(runs.b)
    # the file's tensors hash as the model in memory does
    model, _ = load_checkpoint(runs.a)
    assert ra["payload"]["model_after"]["sha256"] == state_sha256(model.state_dict())
    assert ra["payload"]["model_before"]["sha256"] != ra["payload"]["model_after"]["sha256"]
    assert mumis.verify(runs.a) == [] and read_receipt(runs.b)["payload_sha256"] == rb["payload_sha256"]


def test_receipt_says_which_data_the_method_was_given(runs: Runs) -> None:
    p = make_receipt(runs.finetune)["payload"]
    assert p["method"]["requires_retain"] is True
    given = p["method"]["data_given"]
    assert given["retain"] is True and given["text"].startswith("the forget set (") and "retain set (" in given["text"]
    assert p["evidence"]["unseen"]["source"] == "test split, samples of the forget set's classes"
    assert p["forgotten"]["forgotten_classes"] == [3] and "forgotten class" in p["verdict"]
    assert p["reference"] is None


def test_reference_distances_come_from_the_runs_evaluation(runs: Runs, tmp_path: Path) -> None:
    import shutil

    run = tmp_path / "with-eval"
    shutil.copytree(runs.finetune, run)
    ev = {"model": {"forget_acc": 1.0, "kl_to_retrain": 0.25}, "reference": {"forget_acc": 0.0},
          "diff": {"forget_acc": 1.0, "kl_to_retrain": 0.25}, "gap_paper": 0.5, "gap_salun": 0.75}
    (run / "evaluation.json").write_text(json.dumps(ev))
    receipt = write_receipt(run)
    ref = receipt["payload"]["reference"]
    assert (ref["source"], ref["gap_paper"], ref["gap_salun"], ref["kl_to_retrain"]) == (
        "evaluation.json", 0.5, 0.75, 0.25)
    assert ref["abs_diff"] == {"forget_acc": 1.0}
    assert "gap_paper" in (run / "receipt.html").read_text()
    ev["gap_paper"] = 0.1
    (run / "evaluation.json").write_text(json.dumps(ev))
    lines = mumis.verify(run)
    assert [ln.split(":")[0] for ln in lines] == ["reference.gap_paper", "reference.sha256"], lines


def test_a_run_with_a_receipt_can_still_be_overwritten(runs: Runs) -> None:
    from mumis.utils import check_overwritable

    write_receipt(runs.b)
    check_overwritable(runs.b, overwrite=True, protected=[], kind="run")


# ---------------------------------------------------------------------------------- memory
def test_receipt_and_verify_for_your_own_loop() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    x, y = torch.rand(30, 1, 2, 2), torch.arange(30) % 3
    forget, unseen = (x[:6], y[:6]), (x[20:], y[20:])
    res = mumis.unlearn(model, forget, method="grad_ascent", seed=0, device="cpu", epochs=1)
    receipt = mumis.receipt(res, original=model, forget=forget, unseen=unseen, forget_indices=range(6),
                            sensitivity_samples=20)
    p = receipt["payload"]
    assert p["model_before"]["sha256"] == state_sha256(model.state_dict())
    test = p["evidence"]["after"]["loss_test"]  # the rank test of the losses, with its power
    assert 0.0 <= test["p_value"] <= 1.0 and test["alpha"] == 0.05 and test["power"] == 0.8
    assert test["detectable_auc_shift"] == pytest.approx(detectable_auc_shift(6, 10), abs=1e-3)
    assert "rank test of the losses p = " in p["verdict"]
    assert p["method"]["name"] == "grad_ascent" and p["forgotten"]["indices_sha256"] == indices_sha256(list(range(6)))
    kw = {"result": res, "original": model, "forget": forget, "unseen": unseen, "forget_indices": range(6)}
    assert mumis.verify(receipt, **kw) == []
    with torch.no_grad():
        res.model.state_dict()["3.bias"][0] += 1.0  # the same storage as the parameter
    lines = mumis.verify(receipt, **kw)
    assert lines[0].startswith("model_after.sha256:"), lines
    with pytest.raises(mumis.exceptions.ConfigError, match="UnlearnResult"):
        mumis.receipt(model, original=model, forget=forget, unseen=unseen)


def test_a_receipt_written_in_a_staging_folder_holds_after_the_move(runs: Runs, tmp_path: Path) -> None:
    import shutil

    stage, final = tmp_path / ".stage-a", tmp_path / "final"
    shutil.copytree(runs.a, stage)
    (stage / "receipt.json").unlink(missing_ok=True)
    receipt = write_receipt(stage, final_dir=final)
    assert receipt["locations"]["run_dir"] == str(final.resolve())
    stage.rename(final)
    assert mumis.verify(final) == []
    assert receipt["payload"] == make_receipt(runs.a)["payload"]  # the folder's name is not hashed


def test_a_chain_of_requests_links_each_receipt_to_the_previous_one(runs: Runs, tmp_path: Path) -> None:
    first = write_receipt(runs.a)
    second_run = tmp_path / "second"
    assert main(["-q", "unlearn", "--checkpoint", str(runs.a), "--forget", "random:20", "--split-seed", "3",
                 "--method", "grad_ascent", "--set", "epochs=1", "--device", "cpu", "--out", str(second_run)]) == 0
    second = write_receipt(second_run)["payload"]
    assert second["previous_receipt"] == {"request_id": first["payload"]["request_id"],
                                          "payload_sha256": first["payload_sha256"]}
    assert second["model_before"] == first["payload"]["model_after"]
    assert "itself the result of request" in (second_run / "receipt.html").read_text()
    assert mumis.verify(second_run) == []
    try:
        write_receipt(runs.a, seed=1)  # the first receipt replaced by another one
        lines = mumis.verify(second_run)
    finally:
        write_receipt(runs.a)
    assert [ln.split(":")[0] for ln in lines] == ["previous_receipt.payload_sha256"], lines

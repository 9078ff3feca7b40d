"""`mumis verify RUN [--write]`: a fresh receipt holds; each tampering (weights, meta.json,
receipt.json, the data, the index file) is one named mismatch and exit 1; bad input is exit 2.

One digits MLP is trained from an `.npz` copy of scikit-learn's digits (so a test can change a
forget sample) and unlearned once with an `indices:FILE` forget spec, per module.
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits

from mumis.cli import main

BROWSER = next((b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
FORGET = [0, 5, 9, 17, 23, 42, 77, 101, 150, 333, 512, 640, 801, 999, 1200, 1400]


@dataclass
class Runs:
    root: Path
    data: Path
    index_file: Path
    original: Path
    run: Path  # an unlearning run with its receipt


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    root = tmp_path_factory.mktemp("verify")
    d = load_digits()
    data = root / "digits.npz"
    np.savez(data, x=(d.images / 16.0).astype(np.float32), y=d.target.astype(np.int64))
    index_file = root / "forget.txt"
    index_file.write_text("\n".join(str(i) for i in FORGET) + "\n")
    original, run = root / "original", root / "ga"
    assert main(["-q", "train", "--dataset", "npz", "--data-dir", str(data), "--model", "mlp",
                 "--epochs", "3", "--device", "cpu", "--out", str(original)]) == 0
    assert main(["-q", "unlearn", "--checkpoint", str(original), "--forget", f"indices:{index_file}",
                 "--method", "grad_ascent", "--set", "epochs=1", "--device", "cpu", "--out", str(run)]) == 0
    assert main(["-q", "verify", str(run), "--write"]) == 0
    return Runs(root, data, index_file, original, run)


def copy_run(runs: Runs, tmp_path: Path) -> Path:
    out = tmp_path / "copy"
    shutil.copytree(runs.run, out)
    return out


def mismatches(capsys: pytest.CaptureFixture[str], *args: str) -> list[str]:
    capsys.readouterr()
    assert main(["-q", "verify", *args]) == 1
    out = capsys.readouterr().out
    return [ln.removeprefix("mismatch: ") for ln in out.splitlines() if ln.startswith("mismatch: ")]


def one_error_line(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    capsys.readouterr()
    assert main(["-q", "verify", *args]) == 2
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("mumis: error: "), lines
    return lines[0]


def test_write_makes_both_files_and_verify_holds(runs: Runs, capsys: pytest.CaptureFixture[str]) -> None:
    receipt = json.loads((runs.run / "receipt.json").read_text())
    page = (runs.run / "receipt.html").read_text()
    p = receipt["payload"]
    assert p["forgotten"]["n"] == len(FORGET) and p["forgotten"]["spec"].startswith("indices:")
    assert p["method"]["data_given"] == {"forget": True, "retain": False,
                                         "text": f"the forget set only ({len(FORGET)} samples); no remaining data"}
    assert "evidence, not a proof" in p["verdict"]
    assert p["request_id"] in page and "http" not in page.lower() and "<script" not in page
    capsys.readouterr()
    assert main(["-q", "verify", str(runs.run)]) == 0
    assert f"receipt {p['request_id']} holds" in capsys.readouterr().out


def _first_float_offset(weights: Path) -> int:
    raw = weights.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    name = next(k for k, v in sorted(header.items()) if k != "__metadata__" and v["dtype"] == "F32")
    return 8 + n + header[name]["data_offsets"][0]


def test_changed_weight_is_a_mismatch(runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = copy_run(runs, tmp_path)
    weights = run / "model.safetensors"
    raw = bytearray(weights.read_bytes())
    at = _first_float_offset(weights)
    value = struct.unpack("<f", raw[at:at + 4])[0]
    raw[at:at + 4] = struct.pack("<f", value + 0.5)  # one float of one tensor
    weights.write_bytes(bytes(raw))
    lines = mismatches(capsys, str(run))
    assert any(ln.startswith("model_after.sha256:") and "model.safetensors changed" in ln for ln in lines), lines
    assert not any(ln.startswith(("model_before", "forgotten", "run.")) for ln in lines), lines


def test_truncated_weights_are_a_mismatch(runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = copy_run(runs, tmp_path)
    weights = run / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    lines = mismatches(capsys, str(run))
    assert len(lines) == 1 and "model.safetensors" in lines[0] and "changed since" in lines[0], lines


def test_changed_meta_is_a_mismatch(runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = copy_run(runs, tmp_path)
    meta = json.loads((run / "meta.json").read_text())
    meta["seed"] = 1
    (run / "meta.json").write_text(json.dumps(meta, indent=2))
    lines = mismatches(capsys, str(run))
    assert lines == ["run.meta_sha256: the receipt says " + lines[0].split("says ")[1]], lines
    assert "(meta.json changed)" in lines[0]


def test_changed_split_in_meta_is_a_mismatch(runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = copy_run(runs, tmp_path)
    meta = json.loads((run / "meta.json").read_text())
    m = meta["manifest"]
    moved = m["retain"].pop(0)  # one more sample "forgotten": the manifest's own hash no longer fits
    m["forget"] = sorted([*m["forget"], moved])
    (run / "meta.json").write_text(json.dumps(meta, indent=2))
    lines = mismatches(capsys, str(run))
    assert lines[0] == "run.meta_sha256: meta.json changed" and "changed meta.json" in lines[1], lines


def test_edited_receipt_is_a_mismatch(runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = copy_run(runs, tmp_path)
    receipt = json.loads((run / "receipt.json").read_text())
    receipt["payload"]["evidence"]["after"]["forget"]["accuracy"] = 0.0
    (run / "receipt.json").write_text(json.dumps(receipt))
    lines = mismatches(capsys, str(run))
    assert lines[0].startswith("receipt.json: the payload no longer matches its payload_sha256"), lines
    assert any(ln.startswith("evidence: 1 values differ") and "after.forget.accuracy 0.0 ->" in ln
               for ln in lines), lines


def test_receipt_with_a_forged_hash_is_still_caught(runs: Runs, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from mumis.receipts import json_sha256

    run = copy_run(runs, tmp_path)
    receipt = json.loads((run / "receipt.json").read_text())
    receipt["payload"]["method"]["settings"]["lr"] = 0.5
    receipt["payload_sha256"] = json_sha256(receipt["payload"])  # a consistent forgery
    (run / "receipt.json").write_text(json.dumps(receipt))
    lines = mismatches(capsys, str(run))
    assert len(lines) == 1 and lines[0].startswith("method.settings.lr: the receipt says 0.5, recomputed 0.001"), lines


def test_changed_forget_sample_is_a_mismatch(runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mumis.data import load_dataset

    with np.load(runs.data) as z:
        x, y = z["x"].copy(), z["y"]
    # the npz loader splits 80/20: find the file's row of one forget sample
    target = load_dataset("npz", runs.data).x_train[FORGET[0]].numpy().reshape(8, 8)
    hit = [i for i in range(len(x)) if np.array_equal(x[i], target)]
    assert len(hit) == 1
    x[hit[0], 0, 0] = 1.0 - x[hit[0], 0, 0]  # one pixel of one forget sample
    changed = tmp_path / "digits.npz"
    np.savez(changed, x=x, y=y)
    lines = mismatches(capsys, str(runs.run), "--data-dir", str(changed))
    assert any(ln.startswith("forgotten.content_sha256:") and "forget set changed" in ln for ln in lines), lines
    assert not any(ln.startswith(("forgotten.indices_sha256", "model_")) for ln in lines), lines


def test_changed_index_file_is_a_mismatch(runs: Runs, capsys: pytest.CaptureFixture[str]) -> None:
    before = runs.index_file.read_text()
    try:
        runs.index_file.write_text("\n".join(str(i) for i in FORGET[:-1]) + "\n3\n")
        lines = mismatches(capsys, str(runs.run))
    finally:
        runs.index_file.write_text(before)
    assert len(lines) == 1 and "now lists other indices" in lines[0] and str(runs.index_file) in lines[0], lines


def test_changed_original_is_a_mismatch(runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = tmp_path / "other"
    assert main(["-q", "train", "--dataset", "npz", "--data-dir", str(runs.data), "--model", "mlp",
                 "--epochs", "3", "--seed", "1", "--device", "cpu", "--out", str(other)]) == 0
    lines = mismatches(capsys, str(runs.run), "--original", str(other))
    assert lines[0].startswith("model_before.sha256:") and "original checkpoint's weights changed" in lines[0], lines


def test_bad_input_is_exit_2(runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    decoy = tmp_path / "decoy"
    decoy.mkdir()
    (decoy / "keep.txt").write_text("not a run")
    assert "has no meta.json" in one_error_line(capsys, str(decoy))
    assert "does not exist" in one_error_line(capsys, str(tmp_path / "missing"))
    no_receipt = copy_run(runs, tmp_path)
    (no_receipt / "receipt.json").unlink()
    assert "has no receipt.json" in one_error_line(capsys, str(no_receipt))
    (no_receipt / "receipt.json").write_text(json.dumps({"format": "something else"}))
    assert "is not a mumis receipt" in one_error_line(capsys, str(no_receipt))
    line = one_error_line(capsys, str(runs.original), "--write")
    assert "is a 'train' run" in line and not (runs.original / "receipt.json").exists()
    assert "run directory" in one_error_line(capsys, str(runs.run), "--original", str(decoy))
    assert (decoy / "keep.txt").read_text() == "not a run" and sorted(p.name for p in decoy.iterdir()) == ["keep.txt"]


@pytest.mark.skipif(BROWSER is None, reason="no headless Chromium installed")
def test_receipt_page_opens_in_a_headless_browser(runs: Runs) -> None:
    res = subprocess.run([str(BROWSER), "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
                          (runs.run / "receipt.html").as_uri()], capture_output=True, text=True, timeout=120,
                         check=False)
    receipt = json.loads((runs.run / "receipt.json").read_text())
    assert re.search(r"<title>Deletion receipt req-[0-9a-f]{32}</title>", res.stdout), res.stderr[-2000:]
    assert receipt["payload"]["request_id"] in res.stdout and res.stdout.count("<table>") >= 4


def test_meta_naming_another_parent_is_a_mismatch(runs: Runs, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    run = copy_run(runs, tmp_path)
    meta = json.loads((run / "meta.json").read_text())
    meta["parent"] = str(tmp_path / "nowhere")
    (run / "meta.json").write_text(json.dumps(meta, indent=2))
    lines = mismatches(capsys, str(run))
    assert lines[0] == "run.meta_sha256: meta.json changed" and "original checkpoint named by" in lines[1], lines


def test_a_deleted_result_is_a_mismatch(runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = copy_run(runs, tmp_path)
    (run / "result.json").unlink()
    lines = mismatches(capsys, str(run))
    assert len(lines) == 1 and "result.json" in lines[0] and "is missing" in lines[0], lines


def test_another_process_recomputes_the_same_receipt(runs: Runs) -> None:
    import sys

    res = subprocess.run([sys.executable, "-m", "mumis", "-q", "verify", str(runs.run)], capture_output=True,
                         text=True, timeout=300, check=False)
    assert res.returncode == 0 and "holds" in res.stdout, res.stdout + res.stderr


def test_a_run_with_a_holdout_takes_its_unseen_samples_from_it(tmp_path: Path) -> None:
    """The holdout holds training indices (not test ones): the receipt of a random request reads
    its unseen samples there, and verify recomputes the same."""
    orig, run = tmp_path / "orig", tmp_path / "run"
    assert main(["-q", "train", "--dataset", "digits", "--model", "mlp", "--epochs", "2", "--holdout", "0.05",
                 "--out", str(orig)]) == 0
    assert main(["-q", "unlearn", "--checkpoint", str(orig), "--forget", "random:5%", "--method", "mumis",
                 "--set", "max_steps=20", "--out", str(run)]) == 0
    receipt = json.loads((run / "receipt.json").read_text())
    assert "holdout split" in json.dumps(receipt["payload"]["evidence"])
    assert main(["-q", "verify", str(run)]) == 0

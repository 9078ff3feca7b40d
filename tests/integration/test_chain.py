"""Sequential deletion requests through the CLI: `mumis unlearn --checkpoint` an unlearning run.

One chain of three requests (class:3, an index file overlapping it by one sample, class:5) on a
digits MLP, each against a model retrained without the union so far, is made
once per module; the refusals each work on their own copies.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from mumis.cli import main
from mumis.data import load_dataset

COMMON = ["--dataset", "digits", "--model", "mlp", "--device", "cpu", "--split-seed", "7"]
MUMIS = ["--method", "mumis", "--set", "max_steps=40"]


@dataclass
class Chain:
    root: Path
    original: Path
    runs: list[Path]
    refs: list[Path]
    index_file: Path
    errs: list[str]


def train(out: Path, *forget: str) -> None:
    assert main(["-q", "train", *COMMON, "--epochs", "2", *forget, "--out", str(out)]) == 0


def unlearn(checkpoint: Path, forget: str, out: Path, *extra: str) -> int:
    return main(["-q", "unlearn", "--checkpoint", str(checkpoint), "--forget", forget, "--device", "cpu",
                 *MUMIS, "--out", str(out), *extra])


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("mumis: error: "), err
    return lines[0]


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Chain:
    root = tmp_path_factory.mktemp("chain")
    y = load_dataset("digits").y_train.numpy()
    # ten class-4 samples and one class-3 sample (already forgotten by request 1: the overlap)
    idx = [*np.flatnonzero(y == 4)[:10].tolist(), int(np.flatnonzero(y == 3)[0])]
    index_file = root / "request2.txt"
    index_file.write_text(" ".join(map(str, idx)) + "\n")
    original = root / "original"
    train(original)
    specs = ["class:3", f"indices:{index_file}", "class:5"]
    runs, refs, errs = [], [], []
    parent = original
    for i, spec in enumerate(specs):
        ref = root / f"ref{i + 1}"
        # the reference of request i+1: without the chain so far and this request
        train(ref, *(["--forget", spec] if i == 0 else ["--forget-chain", str(parent), "--forget", spec]))
        out = root / f"r{i + 1}"
        buf = io.StringIO()
        with contextlib.redirect_stderr(buf):
            # no holdout: MU-Mis's stopping target on a forget set of few classes is given
            target = ["--set", "target_forget_acc=50"] if spec.startswith("indices") else []
            assert unlearn(parent, spec, out, "--reference", str(ref), *target) == 0
        errs.append(buf.getvalue())
        runs.append(out)
        refs.append(ref)
        parent = out
    return Chain(root, original, runs, refs, index_file, errs)


def meta(run: Path) -> dict:
    return json.loads((run / "meta.json").read_text())


def test_three_requests_recorded_with_their_union(chain: Chain) -> None:
    y = load_dataset("digits").y_train.numpy()
    last = meta(chain.runs[-1])["chain"]
    reqs = last["requests"]
    assert [r["forget_spec"] for r in reqs] == ["class:3", f"indices:{chain.index_file}", "class:5"]
    assert [r["overlap"] for r in reqs] == [0, 1, 0]
    assert [r["num_new"] for r in reqs] == [r["num_forget"] - r["overlap"] for r in reqs]
    assert reqs[1]["num_forget"] == 11 and reqs[1]["num_new"] == 10
    assert [r["parent"] for r in reqs] == [str(p.resolve()) for p in [chain.original, *chain.runs[:2]]]
    for r, run in zip(reqs, chain.runs, strict=True):
        assert r["manifest_hash"] == meta(run)["manifest"]["hash"]
    union = np.asarray(last["union"]["indices"])
    want = np.union1d(np.flatnonzero(np.isin(y, [3, 5])), np.loadtxt(chain.index_file, dtype=np.int64))
    assert np.array_equal(union, want) and last["union"]["num"] == len(want)  # the overlap counted once
    assert last["split_seed"] == 7
    m = meta(chain.runs[-1])["manifest"]
    assert not set(m["retain"]) & set(union.tolist())  # nothing forgotten comes back in retain
    # request 3 (class:5) after class:3: the remaining test classes hold neither
    y_test = load_dataset("digits").y_test.numpy()
    assert set(np.unique(y_test[m["test_remaining"]])) == set(range(10)) - {3, 5}
    assert set(np.unique(y_test[m["test_forgotten"]])) == {5}


def test_overlap_said_in_one_line(chain: Chain) -> None:
    notes = [ln for ln in chain.errs[1].splitlines() if "overlaps" in ln]
    assert len(notes) == 1 and "1 of its 11 samples" in notes[0]
    assert not any("overlaps" in e for e in (chain.errs[0], chain.errs[2]))


def test_reference_on_the_union_accepted_and_evaluated(chain: Chain, tmp_path: Path) -> None:
    for i, (run, ref) in enumerate(zip(chain.runs, chain.refs, strict=True)):
        result = json.loads((run / "result.json").read_text())
        assert result["reference"] == str(ref.resolve())
        spec = meta(run)["forget_spec"]
        out = tmp_path / f"eval{i}.json"
        assert main(["-q", "evaluate", "--checkpoint", str(run), "--forget", spec, "--reference", str(ref),
                     "--metrics", "accuracy", "--device", "cpu", "--json", str(out)]) == 0
        assert out.is_file()
    assert main(["-q", "verify", str(chain.runs[-1])]) == 0


def test_reference_without_the_union_refused(chain: Chain, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "u"
    capsys.readouterr()
    assert unlearn(chain.runs[0], "class:5", out, "--reference", str(chain.refs[0])) == 2
    line = one_error_line(capsys)
    assert "--forget-chain" in line and "class:5" in line and not out.exists()


def test_evaluating_a_chain_run_against_another_reference_refused(chain: Chain,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["-q", "evaluate", "--checkpoint", str(chain.runs[1]), "--forget", f"indices:{chain.index_file}",
                 "--reference", str(chain.refs[0]), "--metrics", "accuracy", "--device", "cpu"]) == 2
    line = one_error_line(capsys)
    assert f"mumis train --forget-chain {chain.runs[1]}`" in line


def test_nothing_new_refused(chain: Chain, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "u"
    capsys.readouterr()
    assert unlearn(chain.runs[-1], "class:3,5", out) == 2
    assert "selects nothing new" in one_error_line(capsys) and not out.exists()


def test_a_request_with_its_own_split_seed(chain: Chain, tmp_path: Path) -> None:
    """random:N drawn with another seed than the original's: recorded, and --forget-chain
    retrains without exactly those samples (the holdout still drawn with the original's seed)."""
    out = tmp_path / "u"
    assert unlearn(chain.runs[0], "random:30", out, "--split-seed", "3", "--set", "target_forget_acc=50",
                   "--no-receipt") == 0
    c = meta(out)["chain"]
    assert c["split_seed"] == 7 and [r["split_seed"] for r in c["requests"]] == [7, 3]
    ref = tmp_path / "ref"
    train(ref, "--forget-chain", str(out))
    assert meta(ref)["manifest"]["forget"] == c["union"]["indices"]
    assert unlearn(chain.runs[0], "random:30", tmp_path / "v", "--split-seed", "3", "--set",
                   "target_forget_acc=50", "--no-receipt", "--reference", str(ref)) == 0


def _copy_chain(chain: Chain, tmp_path: Path) -> tuple[Path, Path]:
    """A two-request chain of its own: copies of the original, then r1 made from the copy."""
    orig = tmp_path / "orig"
    shutil.copytree(chain.original, orig)
    r1 = tmp_path / "r1"
    assert unlearn(orig, "class:3", r1, "--no-receipt") == 0
    return orig, r1


def test_broken_chains_refused(chain: Chain, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    orig, r1 = _copy_chain(chain, tmp_path)
    m = meta(orig)
    changed = dict(m, manifest=dict(m["manifest"], hash="0" * 64))
    (orig / "meta.json").write_text(json.dumps(changed))
    capsys.readouterr()
    assert unlearn(r1, "class:5", tmp_path / "a") == 2
    assert "broken chain" in (line := one_error_line(capsys)) and "manifest changed" in line
    other = dict(m, dataset=dict(m["dataset"], name="fashion-mnist"))
    (orig / "meta.json").write_text(json.dumps(other))
    assert unlearn(r1, "class:5", tmp_path / "b") == 2
    assert "broken chain" in (line := one_error_line(capsys)) and "fashion-mnist" in line
    shutil.rmtree(orig)
    assert unlearn(r1, "class:5", tmp_path / "c") == 2
    assert "missing" in one_error_line(capsys)
    assert main(["-q", "train", *COMMON, "--forget-chain", str(r1), "--out", str(tmp_path / "d")]) == 2
    assert "broken chain" in one_error_line(capsys)
    assert not any((tmp_path / n).exists() for n in "abcd")


def test_reference_of_another_dataset_refused(chain: Chain, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    ref = tmp_path / "ref"
    assert main(["-q", "train", "--dataset", "digits@600", "--model", "mlp", "--device", "cpu", "--epochs", "1",
                 "--forget", "class:3", "--out", str(ref)]) == 0
    capsys.readouterr()
    assert unlearn(chain.runs[0], "class:5", tmp_path / "u", "--reference", str(ref)) == 2
    line = one_error_line(capsys)
    assert "digits@600" in line and not (tmp_path / "u").exists()


def test_forget_chain_needs_an_unlearning_run(chain: Chain, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["-q", "train", *COMMON, "--forget-chain", str(chain.original), "--out", str(tmp_path / "x")]) == 2
    assert "not an unlearning run" in one_error_line(capsys)
    assert not (tmp_path / "x").exists()


def test_forget_chain_equals_repeated_forget(chain: Chain) -> None:
    a, b = meta(chain.refs[1])["manifest"], meta(chain.refs[2])["manifest"]
    assert set(a["forget"]) < set(b["forget"])
    assert b["forget"] == meta(chain.runs[-1])["chain"]["union"]["indices"]


def test_union_manifest_equals_one_spec_of_both_classes() -> None:
    from mumis.data import resolve_manifest
    from mumis.runs.chain import union_manifest

    bundle = load_dataset("digits")
    both = resolve_manifest("class:3,5", bundle, seed=7)
    union = union_manifest(["class:3", "class:5"], bundle, [7, 7], None)
    assert union.same_split(both) and union.spec == "class:3 + class:5"
    mixed = union_manifest(["class:3", "random:40"], bundle, [7, 7], None)
    assert mixed.kind == "indices" and mixed.test_remaining is None
    parts = [resolve_manifest(s, bundle, seed=7).forget for s in ("class:3", "random:40")]
    assert np.array_equal(mixed.forget, np.union1d(*parts))


def test_chain_manifest_round_trips_and_its_hash_covers_the_earlier_requests(chain: Chain) -> None:
    from mumis.data import Manifest
    from mumis.exceptions import DataError

    d = meta(chain.runs[-1])["manifest"]
    m = Manifest.from_dict(d)
    assert m.forgotten_before is not None and len(m.union) == len(m.forget) + len(m.forgotten_before)
    assert Manifest.from_dict(m.to_dict()).hash == m.hash
    with pytest.raises(DataError, match="altered"):  # an earlier request's sample quietly put back
        Manifest.from_dict(dict(d, forgotten_before=d["forgotten_before"][1:]))

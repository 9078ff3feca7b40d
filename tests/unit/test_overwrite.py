"""`--overwrite` replaces only an earlier mumis output, and never the places a user cannot lose.

`check_overwritable` is tested table-driven on hand-made folders; then every verb that writes
(`train`, `unlearn`, `tune`, `demo`) is run in-process through `mumis.cli.main` against the
dangerous `--out` values, with the work itself patched to fail loudly, so a refusal must come
before any work and nothing may be deleted. One real digits run checks that a genuine earlier
run directory is replaced.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from mumis.checkpoint import FORMAT
from mumis.cli import main
from mumis.exceptions import ConfigError
from mumis.utils import check_outside, check_overwritable, staged_run_dir


def fake_run(d: Path, *extra: str) -> Path:
    """A folder that looks like a run directory of `mumis train` (meta.json of the mumis format)."""
    d.mkdir(parents=True, exist_ok=True)
    (d / "meta.json").write_text(json.dumps({"format": FORMAT}))
    for name in ("model.safetensors", "metrics.json", *extra):
        (d / name).write_text("x")
    return d


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under `root` with its bytes: compared before and after to prove nothing changed."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with a user's files in it, below a fake home folder."""
    home = tmp_path / "home"
    cwd = home / "project" / "sub"
    cwd.mkdir(parents=True)
    (cwd / "notes.txt").write_text("mine")
    (cwd / "data").mkdir()
    (cwd / "data" / "x.csv").write_text("1,2")
    (home / "thesis.tex").write_text("precious")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(cwd)
    return cwd


# --------------------------------------------------------------------------- check_overwritable
def test_new_and_empty_folders_are_fine(work: Path) -> None:
    check_overwritable(work / "runs" / "new", overwrite=False)
    (work / "empty").mkdir()
    check_overwritable(work / "empty", overwrite=False)
    check_overwritable(work / "empty", overwrite=True)


def test_genuine_run_dir_may_be_replaced(work: Path) -> None:
    run = fake_run(work / "runs" / "old", "result.json", "config.yaml", "history.jsonl",
                   "evaluation.json", ".meta.json.abc123.tmp")
    check_overwritable(run, overwrite=True)
    with pytest.raises(ConfigError, match="already exists and is not empty.*--overwrite"):
        check_overwritable(run, overwrite=False)


ALWAYS_REFUSED: list[tuple[str, Callable[[Path], Path], str]] = [
    ("dot", lambda w: Path("."), "is the working directory"),
    ("cwd-absolute", lambda w: w, "is the working directory"),
    ("dotdot", lambda w: Path(".."), "a folder above the working directory"),
    ("grandparent", lambda w: Path("../.."), "a folder above the working directory"),
    ("root", lambda w: Path("/"), "a folder above the working directory"),
    ("home", lambda w: Path(os.environ["HOME"]), "folder above the working directory"),
    ("trailing-dots", lambda w: w / "data" / "..", "is the working directory"),
    ("symlink-to-cwd", lambda w: _link(w.parent / "link", w), "symbolic link"),
    ("through-symlink", lambda w: _link(w / "data" / "up", w.parent) / "sub", "is the working directory"),
    ("symlink-to-run", lambda w: _link(w / "l2", fake_run(w / "r")), "symbolic link"),
    ("file", lambda w: w / "notes.txt", "is a file"),
]


def _link(link: Path, target: Path) -> Path:
    link.symlink_to(target, target_is_directory=True)
    return link


@pytest.mark.parametrize("overwrite", [False, True])
@pytest.mark.parametrize("case, make, needle", ALWAYS_REFUSED, ids=[c[0] for c in ALWAYS_REFUSED])
def test_always_refused(work: Path, case: str, make: Callable[[Path], Path], needle: str,
                        overwrite: bool) -> None:
    out = make(work)
    with pytest.raises(ConfigError, match=needle) as e:
        check_overwritable(out, overwrite=overwrite)
    assert "\n" not in str(e.value)


def test_home_itself_when_cwd_is_elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path / "elsewhere")
    with pytest.raises(ConfigError, match="is your home folder"):
        check_overwritable(home, overwrite=True)


FOREIGN: list[tuple[str, Callable[[Path], Path], str]] = [
    ("user-files", lambda w: w / "data", "has no meta.json"),
    ("extra-file-in-run", lambda w: fake_run(w / "r", "notes.txt"), "holds 'notes.txt'"),
    ("folder-in-run", lambda w: _mkdir(fake_run(w / "r") / "sub"), "holds 'sub'"),
    ("foreign-meta", lambda w: _meta(w / "r", {"format": "other/1"}), "not a mumis run description"),
    ("meta-not-json", lambda w: _meta(w / "r", None), "not a mumis run description"),
    ("symlink-in-run", lambda w: _link(fake_run(w / "r") / "result.json.d", w / "data").parent,
     "holds 'result.json.d'"),
    ("hidden-user-file-in-run", lambda w: fake_run(w / "r", ".notes.tmp"), "holds '.notes.tmp'"),
]


def _mkdir(d: Path) -> Path:
    d.mkdir()
    return d.parent


def _meta(d: Path, content: dict | None) -> Path:
    d.mkdir()
    (d / "meta.json").write_text("\x80 not json" if content is None else json.dumps(content))
    return d


@pytest.mark.parametrize("case, make, needle", FOREIGN, ids=[c[0] for c in FOREIGN])
def test_foreign_folders_are_never_replaced(work: Path, case: str, make: Callable[[Path], Path],
                                            needle: str) -> None:
    out = make(work)
    with pytest.raises(ConfigError, match=f"refusing to replace .*{needle}") as e:
        check_overwritable(out, overwrite=True)
    assert "\n" not in str(e.value)


def test_protected_paths(work: Path) -> None:
    ckpt = fake_run(work / "runs" / "original")
    inner = fake_run(ckpt.parent / "original-copy")
    for out, rel in ((ckpt, "is"), (work / "runs", "holds"), (inner, None)):
        if rel is None:
            check_overwritable(out, overwrite=True, protected=[ckpt])  # a sibling is fine
            continue
        with pytest.raises(ConfigError, match=f"it {rel} .*which this run reads"):
            check_overwritable(out, overwrite=True, protected=[ckpt, None])
    nested = fake_run(work / "data" / "run")  # a run directory inside the data folder
    with pytest.raises(ConfigError, match="is inside 'data'"):
        check_overwritable(nested, overwrite=True, protected=["data"])
    link = _link(work / "ckpt-link", ckpt)  # protected given through a symlink: compared resolved
    with pytest.raises(ConfigError, match="it is "):
        check_overwritable(ckpt, overwrite=True, protected=[link])


def _tune_dir(d: Path) -> Path:
    d.mkdir()
    (d / "tuning.json").write_text("{}")
    (d / "chosen.yaml").write_text("method: x\n")
    fake_run(d / "points" / "000", "result.json")
    fake_run(d / "points" / "001", "result.json")
    return d


def _demo_dir(d: Path) -> Path:
    d.mkdir()
    (d / "demo.json").write_text("{}")
    (d / "summary.txt").write_text("table")
    for name in ("original", "retrained", "mumis"):
        fake_run(d / name, "evaluation.json")
    return d


def test_kinds_of_output(work: Path) -> None:
    tune, demo, run = _tune_dir(work / "t"), _demo_dir(work / "d"), fake_run(work / "r")
    check_overwritable(tune, overwrite=True, kind="tune")
    check_overwritable(demo, overwrite=True, kind="demo")
    for out, kind in ((tune, "run"), (demo, "run"), (run, "tune"), (run, "demo"), (demo, "tune")):
        with pytest.raises(ConfigError, match="refusing to replace"):
            check_overwritable(out, overwrite=True, kind=kind)  # type: ignore[arg-type]
    (tune / "points" / "000" / "mine.txt").write_text("x")
    (demo / "original" / "mine.txt").write_text("x")
    with pytest.raises(ConfigError, match="holds 'points/000', which holds 'mine.txt'"):
        check_overwritable(tune, overwrite=True, kind="tune")
    with pytest.raises(ConfigError, match="holds 'original', which holds 'mine.txt'"):
        check_overwritable(demo, overwrite=True, kind="demo")
    (work / "d2").mkdir()
    (work / "d2" / "demo.json").write_text("{}")
    (work / "d2" / "photos").mkdir()
    with pytest.raises(ConfigError, match="holds 'photos', which has no meta.json"):
        check_overwritable(work / "d2", overwrite=True, kind="demo")


def test_staged_run_dir_refuses_before_the_block_runs(work: Path) -> None:
    ran = []
    with pytest.raises(ConfigError, match="refusing to replace"), staged_run_dir(work / "data", overwrite=True):
        ran.append(1)
    assert ran == [] and (work / "data" / "x.csv").read_text() == "1,2"


@pytest.mark.parametrize("overwrite", [False, True])
def test_staged_run_dir_checks_again_before_replacing(work: Path, overwrite: bool) -> None:
    """A user's file that appears in `out` during a long run is not deleted when the run ends."""
    out = fake_run(work / "runs" / "old") if overwrite else work / "runs" / "empty"
    out.mkdir(parents=True, exist_ok=True)
    with pytest.raises(ConfigError), staged_run_dir(out, overwrite=overwrite) as stage:
        fake_run(stage)
        (out / "notes.txt").write_text("written while the run was going")
    assert (out / "notes.txt").read_text() == "written while the run was going"
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]  # and no stage left


# --------------------------------------------------------------------------- every verb, in-process
def _fail_if_work_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_a: object, **_k: object) -> None:
        raise AssertionError("the work started: the --out check must come first")

    import mumis.api
    import mumis.runs.train

    monkeypatch.setattr(mumis.runs.train, "train_model", boom)
    monkeypatch.setattr(mumis.api, "unlearn", boom)


def _argv(verb: str, out: str, ckpt: Path, ref: Path, data: str | None) -> list[str]:
    data_args = ["--data-dir", data] if data else []
    if verb == "train":
        return ["-q", "train", "--epochs", "1", "--device", "cpu", *data_args, "--overwrite", "--out", out]
    if verb == "unlearn":
        return ["-q", "unlearn", "--checkpoint", str(ckpt), "--reference", str(ref), "--forget", "class:3",
                "--method", "mumis", "--device", "cpu", *data_args, "--overwrite", "--out", out]
    if verb == "tune":
        return ["-q", "tune", "--checkpoint", str(ckpt), "--reference", str(ref), "--forget", "class:3",
                "--method", "grad_ascent", "--grid", "lr=1e-3", "--device", "cpu", *data_args,
                "--overwrite", "--out", out]
    return ["-q", "demo", "--device", "cpu", *data_args, "--out", out]  # replaces its own output unasked


def _inside(w: Path, c: Path, r: Path) -> str:  # an earlier run directory inside the checkpoint
    return str(fake_run(c / "older"))


#: (case, --out, --data-dir, verbs): every case is refused with exit 2 and nothing touched.
#: --out is built from the working directory w, checkpoint c and reference r (see `work`).
ALL = ("train", "unlearn", "tune", "demo")
READERS = ("unlearn", "tune")
BAD_OUTS: list[tuple[str, Callable[[Path, Path, Path], str], str | None, tuple[str, ...]]] = [
    ("dot", lambda w, c, r: ".", None, ALL),
    ("dotdot", lambda w, c, r: "..", None, ALL),
    ("root", lambda w, c, r: "/", None, ALL),
    ("home", lambda w, c, r: os.environ["HOME"], None, ALL),
    ("cwd-ancestor", lambda w, c, r: str(w.parent.parent), None, ALL),
    ("symlink-to-cwd", lambda w, c, r: str(_link(w.parent / "link", w)), None, ALL),
    ("symlink-to-run", lambda w, c, r: str(_link(w / "link", fake_run(w / "old"))), None, ALL),
    ("user-files", lambda w, c, r: "data", None, ALL),
    ("file", lambda w, c, r: "notes.txt", None, ALL),
    ("inside-data", lambda w, c, r: str(fake_run(w / "data" / "run")), "data", ALL),
    ("is-data", lambda w, c, r: str(fake_run(w / "runs" / "data-run")), "runs/data-run", ("train", "unlearn", "tune")),
    ("checkpoint-itself", lambda w, c, r: str(c), None, READERS),
    ("reference-itself", lambda w, c, r: str(r), None, READERS),
    ("holds-checkpoint", lambda w, c, r: str(c.parent), None, READERS),
    ("inside-checkpoint", _inside, None, READERS),
]
CASES = [(case, make, data, verb) for case, make, data, verbs in BAD_OUTS for verb in verbs]


@pytest.mark.parametrize("case, make, data, verb", CASES, ids=[f"{c[3]}-{c[0]}" for c in CASES])
def test_every_verb_refuses_before_any_work(work: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str], case: str,
                                            make: Callable[[Path, Path, Path], str], data: str | None,
                                            verb: str) -> None:
    _fail_if_work_starts(monkeypatch)
    ckpt, ref = fake_run(work / "runs" / "original"), fake_run(work / "runs" / "retrained")
    out = make(work, ckpt, ref)
    if verb == "demo":  # the demo replaces an earlier demo folder: make every case look like one
        for d in (work, work / "data", work / "data" / "run"):
            if d.is_dir():
                (d / "demo.json").write_text("{}")
    home = Path(os.environ["HOME"])
    before = snapshot(home)
    assert main(_argv(verb, out, ckpt, ref, data)) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("mumis: error: "), err
    assert "--out" in err[0] or "output" in err[0], err  # refused for its --out, not for something else
    assert snapshot(home) == before  # nothing deleted, nothing written
    assert not list(home.rglob(".*partial*"))


def test_train_replaces_a_genuine_earlier_run(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = work / "runs" / "mlp"
    argv = ["-q", "train", "--epochs", "1", "--device", "cpu", "--out", str(out)]
    assert main(argv) == 0
    first = json.loads((out / "meta.json").read_text())
    assert main([*argv[:-2], "--seed", "1", "--overwrite", "--out", str(out)]) == 0
    assert json.loads((out / "meta.json").read_text())["seed"] == 1 != first["seed"]
    assert (work / "notes.txt").read_text() == "mine" and not list(out.parent.glob(".*partial*"))


# --------------------------------------------------------------------------- --json / --plot
def test_check_outside(work: Path) -> None:
    ckpt = fake_run(work / "runs" / "original")
    check_outside(None, "--json", [ckpt])
    check_outside(work / "runs" / "m.json", "--json", [ckpt, None])  # beside the run is fine
    for path in (ckpt / "meta.json", ckpt / "new.json", ckpt, _link(work / "lnk", ckpt) / "meta.json"):
        with pytest.raises(ConfigError, match="would write into .*which this run reads"):
            check_outside(path, "--json", [None, ckpt])


EVAL_OUTPUTS: list[tuple[str, list[str], str]] = [
    ("json-into-checkpoint", ["--json", "runs/original/meta.json"], "runs/original/meta.json"),
    ("json-new-file-in-checkpoint", ["--json", "runs/original/m.json"], "runs/original/meta.json"),
    ("plot-into-reference", ["--reference", "runs/retrained", "--plot", "runs/retrained/s.png"],
     "runs/retrained/meta.json"),
    ("json-is-the-indices-file", ["--forget", "indices:idx.txt", "--json", "idx.txt"], "idx.txt"),
    ("json-is-the-data-file", ["--data-dir", "d.npz", "--json", "d.npz"], "d.npz"),
]


@pytest.mark.parametrize("case, extra, kept", EVAL_OUTPUTS, ids=[c[0] for c in EVAL_OUTPUTS])
def test_evaluate_never_writes_into_what_it_reads(work: Path, capsys: pytest.CaptureFixture[str], case: str,
                                                  extra: list[str], kept: str) -> None:
    fake_run(work / "runs" / "original")
    fake_run(work / "runs" / "retrained")
    (work / "idx.txt").write_text("1\n2\n")
    (work / "d.npz").write_bytes(b"data")
    before = snapshot(work)
    argv = ["-q", "evaluate", "--checkpoint", "runs/original", "--forget", "class:3", "--device", "cpu"]
    assert main([*argv, *extra]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and "which this run reads" in err[0], err
    assert snapshot(work) == before and (work / kept).exists()

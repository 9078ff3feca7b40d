"""Nothing a file names is executed: model code in a checkpoint, pickles, YAML tags.

A checkpoint folder carrying `payload.py` (which writes a PWNED file when imported) and a
meta.json naming `payload:net` is loaded by every verb that reads run directories (evaluate,
unlearn, tune, bench) without running the code; with `--trust-model-code` (or the factory
named on the command line) it runs. Every file the tool reads is then replaced by a malicious
pickle (or a YAML tag that would call `open`), and each is refused by name with nothing run.
In-process through `mumis.cli.main`, plus a few real subprocesses of the `mumis` script.
"""

from __future__ import annotations

import json
import pickle
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from mumis.checkpoint import load_checkpoint, load_run_splits
from mumis.cli import main
from mumis.exceptions import CheckpointError

MUMIS = Path(sys.executable).with_name("mumis")
PAYLOAD = '''"""A model factory that also does something it should not: it leaves a PWNED file."""
from pathlib import Path

Path(__file__).with_name("PWNED").write_text("code from the checkpoint folder ran")

from mumis.models import MLP


def net(*, input_shape, num_classes, mean, std, **options):
    return MLP(input_shape=input_shape, num_classes=num_classes, mean=mean, std=std, **options)
'''


class Evil:
    """Unpickling this calls open(path, "w"): a harmless stand-in for os.system."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple:
        return (open, (str(self.path), "w"))


@dataclass
class Runs:
    original: Path
    retrained: Path


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    root = tmp_path_factory.mktemp("trained")
    common = ["-q", "train", "--device", "cpu", "--seed", "0"]
    assert main([*common, "--epochs", "2", "--out", str(root / "original")]) == 0
    assert main([*common, "--epochs", "1", "--forget", "class:3", "--out", str(root / "retrained")]) == 0
    return Runs(root / "original", root / "retrained")


@pytest.fixture(autouse=True)
def _forget_payload() -> Iterator[None]:
    """Each test imports `payload` afresh (or not at all)."""
    yield
    for name in [m for m in sys.modules if m == "payload" or m.startswith("payload.")]:
        del sys.modules[name]


def carry_code(src: Path, dst: Path) -> Path:
    """A copy of run `src` whose meta.json names the model factory `payload:net` shipped beside it."""
    shutil.copytree(src, dst)
    (dst / "payload.py").write_text(PAYLOAD)
    meta = json.loads((dst / "meta.json").read_text())
    meta["model"]["name"] = "payload:net"
    (dst / "meta.json").write_text(json.dumps(meta))
    return dst


@pytest.fixture
def evil(runs: Runs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Runs:
    """Code-carrying copies of both runs; the working directory is the checkpoint folder, so
    `import payload` would succeed: only the opt-in gate stands between the user and the code."""
    e = Runs(carry_code(runs.original, tmp_path / "evil"), carry_code(runs.retrained, tmp_path / "evil-ref"))
    monkeypatch.chdir(e.original)
    return e


def ran(e: Runs) -> bool:
    return (e.original / "PWNED").exists() or (e.retrained / "PWNED").exists() or "payload" in sys.modules


def one_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("mumis: error: "), err
    return err[0]


def evaluate(ckpt: Path, *extra: str) -> list[str]:
    return ["-q", "evaluate", "--checkpoint", str(ckpt), "--forget", "class:3", "--metrics", "accuracy",
            "--device", "cpu", *extra]


def unlearn(ckpt: Path, out: Path, *extra: str) -> list[str]:
    return ["-q", "unlearn", "--checkpoint", str(ckpt), "--forget", "class:3", "--method", "grad_ascent",
            "--set", "epochs=1", "--device", "cpu", "--out", str(out), *extra]


def tune(ckpt: Path, ref: Path, out: Path, *extra: str) -> list[str]:
    return ["-q", "tune", "--checkpoint", str(ckpt), "--reference", str(ref), "--forget", "class:3",
            "--method", "grad_ascent", "--grid", "lr=1e-4,1e-3", "--set", "epochs=1", "--device", "cpu",
            "--out", str(out), *extra]


# --------------------------------------------------------------------------- model code: refused
def code_cases(e: Runs, runs: Runs, tmp: Path) -> list[tuple[str, list[str], Path | None]]:
    return [
        ("evaluate checkpoint", evaluate(e.original), None),
        ("evaluate reference", evaluate(runs.original, "--reference", str(e.retrained)), None),
        ("unlearn checkpoint", unlearn(e.original, tmp / "u"), tmp / "u"),
        ("unlearn wrong name", unlearn(e.original, tmp / "u", "--trust-model-code", "other:net"), tmp / "u"),
        ("tune checkpoint", tune(e.original, runs.retrained, tmp / "t"), tmp / "t"),
        ("tune reference", tune(runs.original, e.retrained, tmp / "t"), tmp / "t"),
        ("evaluate wrong name", evaluate(e.original, "--trust-model-code", "payload:other"), None),
    ]


CODE_CASES = ["evaluate checkpoint", "evaluate reference", "unlearn checkpoint", "unlearn wrong name",
              "tune checkpoint", "tune reference", "evaluate wrong name"]


@pytest.mark.parametrize("case", CODE_CASES)
def test_model_code_is_not_run_without_opt_in(case: str, evil: Runs, runs: Runs, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    argv, out = {c: (a, o) for c, a, o in code_cases(evil, runs, tmp_path)}[case]
    assert main(argv) == 2
    line = one_error(capsys)
    assert "'payload:net'" in line and "--trust-model-code" in line, line
    assert not ran(evil), "the checkpoint's code was imported"
    assert out is None or not out.exists()


def test_unlearn_reads_an_untrusted_reference_without_importing_it(evil: Runs, runs: Runs,
                                                                   tmp_path: Path) -> None:
    # unlearn only compares the reference's split (meta.json); it never builds its model
    assert main(unlearn(runs.original, tmp_path / "u", "--reference", str(evil.retrained))) == 0
    assert not ran(evil)


def test_library_gate(evil: Runs, runs: Runs) -> None:
    with pytest.raises(CheckpointError, match="names model code 'payload:net'.*trust_model_code=True"):
        load_checkpoint(evil.original)
    with pytest.raises(CheckpointError, match="payload:net"):
        load_checkpoint(evil.original, trust_model_code=["payload:other", "x:y"])
    assert not ran(evil)
    load_run_splits(evil.retrained)  # data only: no flag needed, nothing imported
    assert not ran(evil)
    load_checkpoint(runs.original)  # built-in models need nothing
    model, meta = load_checkpoint(evil.original, trust_model_code="payload:net")
    assert meta["model"]["name"] == "payload:net" and ran(evil)


def test_a_hostile_factory_name_is_not_echoed_raw(runs: Runs, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = carry_code(runs.original, tmp_path / "evil")
    meta = json.loads((ckpt / "meta.json").read_text())
    meta["model"]["name"] = "payload:net\nmumis: all good \x1b[2K"
    (ckpt / "meta.json").write_text(json.dumps(meta))
    assert main(evaluate(ckpt)) == 2
    line = one_error(capsys)  # one line, the terminal escape shown as text, not sent
    assert "\x1b" not in line and "\\x1b" in line and "--trust-model-code (in Python" in line
    assert "payload" not in sys.modules


# --------------------------------------------------------------------------- model code: opted in
def test_opt_in_runs_the_code_and_the_name_stays_gated(evil: Runs, runs: Runs, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main(evaluate(evil.original, "--trust-model-code")) == 0
    assert (evil.original / "PWNED").exists()
    out = tmp_path / "u"
    assert main(unlearn(evil.original, out, "--trust-model-code", "payload:net")) == 0
    assert json.loads((out / "meta.json").read_text())["model"]["name"] == "payload:net"
    capsys.readouterr()
    assert main(evaluate(out)) == 2  # every later load needs the opt-in again
    assert "payload:net" in one_error(capsys)
    assert main(tune(evil.original, evil.retrained, tmp_path / "t", "--trust-model-code")) == 0
    assert (tmp_path / "t" / "chosen.yaml").is_file()


def test_opt_in_never_puts_the_checkpoint_folder_on_the_import_path(evil: Runs, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)  # payload.py is in the checkpoint folder, not here
    assert main(evaluate(evil.original, "--trust-model-code")) == 2
    assert "cannot import module 'payload'" in one_error(capsys)
    assert not ran(evil)


def test_train_names_the_factory_itself(evil: Runs, tmp_path: Path) -> None:
    out = tmp_path / "own"
    assert main(["-q", "train", "--model", "payload:net", "--epochs", "1", "--device", "cpu",
                 "--out", str(out)]) == 0  # naming it on the command line is the opt-in
    assert (evil.original / "PWNED").exists()
    assert json.loads((out / "meta.json").read_text())["model"]["name"] == "payload:net"


def test_bench_imports_only_the_factories_its_config_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = {"datasets": ["digits"], "models": ["mlp"], "scenarios": ["class:3"], "seeds": [0],
           "train": {"epochs": 1}, "metrics": ["accuracy"], "methods": {"grad_ascent": {"epochs": 1}}}
    (tmp_path / "bench.yaml").write_text(yaml.safe_dump(cfg))
    out = tmp_path / "b"
    assert main(["-q", "bench", "--config", "bench.yaml", "--out", str(out)]) == 0
    # someone hands over this bench folder with a model that names code, then it is resumed
    orig = next((out / "models").rglob("original-fine"))
    (orig / "payload.py").write_text(PAYLOAD)
    meta = json.loads((orig / "meta.json").read_text())
    meta["model"]["name"] = "payload:net"
    (orig / "meta.json").write_text(json.dumps(meta))
    for rec in (out / "records").glob("*grad_ascent*"):
        rec.unlink()
    monkeypatch.chdir(orig)
    capsys.readouterr()
    assert main(["-q", "bench", "--config", str(tmp_path / "bench.yaml"), "--out", str(out), "--resume"]) == 2
    assert "payload:net" in one_error(capsys)
    assert not (orig / "PWNED").exists() and "payload" not in sys.modules


# --------------------------------------------------------------------------- non-finite weights
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_by_every_loader(bad: float, runs: Runs, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    ckpt, ref = tmp_path / "diverged", tmp_path / "diverged-ref"
    for src, dst in ((runs.original, ckpt), (runs.retrained, ref)):
        shutil.copytree(src, dst)
        state = load_file(dst / "model.safetensors")
        key = next(k for k in state if k.endswith("weight"))
        state[key].view(-1)[3] = bad
        save_file(state, dst / "model.safetensors")
    for argv, out in ((evaluate(ckpt), None), (unlearn(ckpt, tmp_path / "u"), tmp_path / "u"),
                      (tune(ckpt, runs.retrained, tmp_path / "t"), tmp_path / "t"),
                      (tune(runs.original, ref, tmp_path / "t"), tmp_path / "t"),
                      (evaluate(runs.original, "--reference", str(ref)), None)):
        assert main(argv) == 2
        line = one_error(capsys)
        assert "non-finite weights" in line and repr(key) in line, line
        assert out is None or not out.exists()
    with pytest.raises(CheckpointError, match="diverged"):
        load_checkpoint(ckpt)
    with pytest.warns(RuntimeWarning, match="non-finite"):
        model, _ = load_checkpoint(ckpt, allow_nonfinite=True)
    assert not torch.isfinite(dict(model.state_dict())[key]).all()


# --------------------------------------------------------------------------- pickles and YAML tags
def evil_pickle(side: Path) -> bytes:
    return pickle.dumps({b"data": Evil(side), b"labels": [0], b"label_names": [b"a"]})


def write_cifar10(root: Path, side: Path, bad: str) -> Path:
    root.mkdir(parents=True)
    names = [f"c{i}".encode() for i in range(10)]
    (root / "batches.meta").write_bytes(pickle.dumps({b"label_names": names}))
    rng = np.random.default_rng(0)
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        d = {b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), b"labels": [(i + j) % 10 for j in range(4)]}
        (root / name).write_bytes(pickle.dumps(d))
    (root / bad).write_bytes(evil_pickle(side))
    return root


def write_cifar100(root: Path, side: Path, bad: str) -> Path:
    root.mkdir(parents=True)
    (root / "meta").write_bytes(pickle.dumps({b"fine_label_names": [b"a", b"b"],
                                              b"coarse_label_names": [b"x"]}))
    for split in ("train", "test"):
        (root / split).write_bytes(pickle.dumps({b"data": np.zeros((4, 3072), np.uint8),
                                                 b"fine_labels": [0, 1, 0, 1], b"coarse_labels": [0] * 4}))
    (root / bad).write_bytes(evil_pickle(side))
    return root


def _data_cases(tmp: Path, side: Path) -> dict[str, tuple[list[str], str]]:
    """Dataset files, read by `mumis train` (the loaders are shared by every verb)."""
    train = ["-q", "train", "--epochs", "1", "--device", "cpu", "--out", str(tmp / "out")]
    cases: dict[str, tuple[list[str], str]] = {}
    for bad in ("batches.meta", "data_batch_3", "test_batch"):
        root = write_cifar10(tmp / f"c10-{bad}", side, bad)
        cases[f"cifar10 {bad}"] = ([*train, "--dataset", "cifar10", "--data-dir", str(root)], bad)
    for bad in ("meta", "train", "test"):
        root = write_cifar100(tmp / f"c100-{bad}", side, bad)
        cases[f"cifar100 {bad}"] = ([*train, "--dataset", "cifar100", "--data-dir", str(root)], bad)
    npz = tmp / "evil.npz"
    np.savez(npz, x=np.array([Evil(side)], dtype=object), y=np.zeros(1, np.int64))
    cases["npz object array"] = ([*train, "--dataset", "npz", "--data-dir", str(npz)], "evil.npz")
    idx = tmp / "idx"
    idx.mkdir()
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        (idx / name).write_bytes(evil_pickle(side))
    cases["idx files"] = ([*train, "--dataset", "mnist", "--data-dir", str(idx)], "idx")
    return cases


DATA_CASES = ["cifar10 batches.meta", "cifar10 data_batch_3", "cifar10 test_batch", "cifar100 meta",
              "cifar100 train", "cifar100 test", "npz object array", "idx files"]


@pytest.mark.parametrize("case", DATA_CASES)
def test_malicious_dataset_files_are_refused_by_name(case: str, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    side = tmp_path / "SIDE_EFFECT"
    argv, name = _data_cases(tmp_path, side)[case]
    assert main(argv) == 2
    assert name in one_error(capsys)
    assert not side.exists() and not (tmp_path / "out").exists()


def _spec(argv: list[str], spec: str) -> list[str]:
    return [spec if a == "class:3" else a for a in argv]


def _run_file_cases(runs: Runs, tmp: Path, side: Path) -> dict[str, tuple[list[list[str]], str]]:
    """Files of a run directory and the other files the verbs read, each made malicious."""
    cases: dict[str, tuple[list[list[str]], str]] = {}

    def every_reader(name: str, spoil: Callable[[Path], None]) -> list[list[str]]:
        """Spoil a copy of both runs; every verb reading a run directory, as checkpoint or reference."""
        ckpt, ref = tmp / name, tmp / f"{name}-ref"
        for src, dst in ((runs.original, ckpt), (runs.retrained, ref)):
            shutil.copytree(src, dst)
            spoil(dst)
        return [evaluate(ckpt), evaluate(runs.original, "--reference", str(ref)), unlearn(ckpt, tmp / "u"),
                tune(ckpt, runs.retrained, tmp / "t"), tune(runs.original, ref, tmp / "t")]

    def torch_pickle(d: Path) -> None:  # what torch.save writes: a zip holding a pickle
        torch.save({"w": Evil(side)}, d / "model.safetensors")

    def raw_pickle(d: Path) -> None:
        (d / "model.safetensors").write_bytes(evil_pickle(side))

    def pickle_inside(d: Path) -> None:  # a valid safetensors file carrying a pickle as a tensor
        state = load_file(d / "model.safetensors")
        state["payload"] = torch.frombuffer(bytearray(evil_pickle(side)), dtype=torch.uint8)
        save_file(state, d / "model.safetensors", metadata={"pickle": evil_pickle(side).hex()})

    def meta_pickle(d: Path) -> None:
        (d / "meta.json").write_bytes(evil_pickle(side))

    cases["model.safetensors is a torch pickle"] = (every_reader("tp", torch_pickle), "model.safetensors")
    cases["model.safetensors is a raw pickle"] = (every_reader("rp", raw_pickle), "model.safetensors")
    cases["safetensors with a pickle inside"] = (every_reader("pi", pickle_inside), "'payload'")
    cases["meta.json is a pickle"] = (every_reader("mp", meta_pickle), "meta.json")

    npy = tmp / "evil.npy"
    np.save(npy, np.array([Evil(side), 1], dtype=object), allow_pickle=True)
    spec = f"indices:{npy}"
    cases["indices .npy with objects"] = ([
        ["-q", "train", "--forget", spec, "--epochs", "1", "--device", "cpu", "--out", str(tmp / "o")],
        _spec(evaluate(runs.original), spec),
        _spec(unlearn(runs.original, tmp / "u"), spec),
        _spec(tune(runs.original, runs.retrained, tmp / "t"), spec),
    ], "evil.npy")

    tag = tmp / "evil.yaml"
    tag.write_text(f"method: grad_ascent\nlr: !!python/object/apply:builtins.open [{str(side)!r}, w]\n")
    cases["YAML tag in --config"] = ([
        unlearn(runs.original, tmp / "u", "--config", str(tag)),
        tune(runs.original, runs.retrained, tmp / "t", "--config", str(tag)),
        ["-q", "bench", "--config", str(tag), "--out", str(tmp / "b")],
    ], "evil.yaml")
    run_cfg = tmp / "tagged-run"  # a run directory's own config.yaml, reused as --config
    shutil.copytree(runs.original, run_cfg)
    (run_cfg / "config.yaml").write_text(tag.read_text())
    cases["YAML tag in a run's config.yaml"] = ([unlearn(runs.original, tmp / "u", "--config",
                                                         str(run_cfg / "config.yaml"))], "config.yaml")
    cases["pickle as --config"] = ([unlearn(runs.original, tmp / "u", "--config", str(npy)),
                                    ["-q", "bench", "--config", str(npy), "--out", str(tmp / "b")]], "evil.npy")
    return cases


RUN_FILE_CASES = ["model.safetensors is a torch pickle", "model.safetensors is a raw pickle",
                  "safetensors with a pickle inside", "meta.json is a pickle", "indices .npy with objects",
                  "YAML tag in --config", "YAML tag in a run's config.yaml", "pickle as --config"]


@pytest.mark.parametrize("case", RUN_FILE_CASES)
def test_malicious_run_files_are_refused_by_name(case: str, runs: Runs, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    side = tmp_path / "SIDE_EFFECT"
    argvs, name = _run_file_cases(runs, tmp_path, side)[case]
    for argv in argvs:
        assert main(argv) == 2, argv
        line = one_error(capsys)
        assert name in line, (argv[1], line)
        assert not side.exists(), argv
        assert not any((tmp_path / d).exists() for d in ("u", "t", "b", "o")), argv


def test_yaml_tag_in_set_is_not_constructed(runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    side = tmp_path / "SIDE_EFFECT"
    value = f"lr=!!python/object/apply:builtins.open [{str(side)!r}, w]"
    assert main(unlearn(runs.original, tmp_path / "u", "--set", value)) == 2
    assert "lr" in one_error(capsys)
    assert not side.exists() and not (tmp_path / "u").exists()


def test_bench_and_report_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    side = tmp_path / "SIDE_EFFECT"
    b = tmp_path / "b"
    (b / "records").mkdir(parents=True)
    (b / "bench.json").write_bytes(evil_pickle(side))
    cfg = {"datasets": ["digits"], "models": ["mlp"], "scenarios": ["class:3"], "seeds": [0],
           "methods": {"grad_ascent": {}}}
    (tmp_path / "bench.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["-q", "bench", "--config", str(tmp_path / "bench.yaml"), "--out", str(b), "--resume"]) == 2
    assert "bench.json" in one_error(capsys)
    (b / "records" / "x.json").write_bytes(evil_pickle(side))
    assert main(["-q", "report", str(b), "--format", "md"]) == 2
    assert "x.json" in one_error(capsys)
    assert not side.exists() and not (b / "report").exists()


# --------------------------------------------------------------------------- real subprocesses
def test_console_script(evil: Runs, tmp_path: Path) -> None:
    def mumis(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(MUMIS), *args], cwd=cwd, capture_output=True, text=True, timeout=300)

    p = mumis(*evaluate(evil.original), cwd=evil.original)  # payload.py is importable from here
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "--trust-model-code" in p.stderr and not (evil.original / "PWNED").exists()
    p = mumis(*evaluate(evil.original, "--trust-model-code", "payload:net"), cwd=evil.original)
    assert p.returncode == 0, p.stderr
    assert (evil.original / "PWNED").exists()
    work = tmp_path / "work"
    work.mkdir()
    (work / "thesis.tex").write_text("precious")
    p = mumis("-q", "train", "--epochs", "1", "--out", ".", "--overwrite", cwd=work)
    assert p.returncode == 2 and "working directory" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    assert [f.name for f in work.iterdir()] == ["thesis.tex"]


@pytest.mark.slow
def test_demo_names_the_factory_itself(evil: Runs, tmp_path: Path) -> None:
    # --model on the demo's command line is the opt-in for the three runs it makes and loads
    out = tmp_path / "demo"
    assert main(["-q", "demo", "--dataset", "digits@600/300", "--model", "payload:net", "--device", "cpu",
                 "--out", str(out)]) == 0
    assert (evil.original / "PWNED").exists()
    assert json.loads((out / "mumis" / "meta.json").read_text())["model"]["name"] == "payload:net"

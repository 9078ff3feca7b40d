"""BatchNorm mode declarations: every method declares one, the conformance check catches a
false one, and `mumis methods` and `result.json` show it."""

from __future__ import annotations

import pytest

from mumis.cli.methods import format_method, format_table
from mumis.methods import METHODS
from mumis.methods.base import BATCHNORM_MODES
from mumis.testing.conformance import _patched, check_batchnorm_mode

#: What the code of each baseline does today (read from the methods' run()).
EXPECTED = {
    "finetune": "train", "grad_ascent": "train", "neggrad_plus": "train", "random_label": "train",
    "random_label_retain": "train", "l1_sparse": "train", "salun": "train", "scrub": "train",
    "bad_teacher": "train", "retrain": "train", "ssd": "eval", "boundary_shrink": "eval",
    "jit": "eval",
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_baselines_declare_what_their_code_does(name):
    cls = METHODS.get(name)
    assert cls.batchnorm_mode == EXPECTED[name] and cls.batchnorm_note
    assert cls.batchnorm_text().startswith(f"{EXPECTED[name]}: ")


def test_every_method_declares_a_known_mode():
    assert all(METHODS.get(n).batchnorm_mode in BATCHNORM_MODES for n in METHODS.names())


@pytest.mark.parametrize("name, wrong, match", [
    ("retrain", "eval", "changed the BatchNorm running statistics"),
    ("ssd", "train", "left the BatchNorm running statistics unchanged"),
    ("jit", "sometimes", "is not one of train, eval"),
])
def test_a_false_declaration_is_caught(name, wrong, match):
    with _patched(METHODS.get(name), "batchnorm_mode", wrong), pytest.raises(AssertionError, match=match):
        check_batchnorm_mode(name)


@pytest.mark.parametrize("name, mode", [("finetune", "eval"), ("jit", "train")])
def test_the_base_loop_runs_in_the_declared_mode(name, mode):
    """A LossMethod's loop takes its train/eval mode from batchnorm_mode, so the declaration
    cannot lie: flipped, the method follows it (and the check still passes)."""
    with _patched(METHODS.get(name), "batchnorm_mode", mode):
        check_batchnorm_mode(name)


def test_methods_listing_and_detail_show_the_mode():
    table = format_table()
    assert "BATCHNORM" in table.splitlines()[0]
    assert any(line.startswith("grad_ascent") and " train " in line for line in table.splitlines())
    assert "batchnorm mode:         eval: " in format_method(METHODS.get("ssd"))


def test_result_json_names_the_mode(tmp_path, capsys):
    import json

    from mumis.cli import main
    from mumis.runs import train_run

    train_run(out=tmp_path / "orig", dataset="digits", model="mlp", epochs=1, device="cpu",
              progress=False)
    rc = main(["unlearn", "--checkpoint", str(tmp_path / "orig"), "--forget", "class:3",
               "--method", "grad_ascent", "--set", "epochs=1", "--out", str(tmp_path / "ga")])
    assert rc == 0, capsys.readouterr().err
    assert json.loads((tmp_path / "ga" / "result.json").read_text())["batchnorm_mode"] == "train"

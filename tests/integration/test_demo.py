"""`mumis demo`: the README's main command, end to end on the embedded dataset."""

from __future__ import annotations

import json

from mumis.cli import main


def test_demo_runs_the_whole_pipeline(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["-q", "demo", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    for row in ("retrain", "retrain (seed 1)", "original", "mumis"):
        assert f"\n{row} " in text
    for col in ("forget", "test_kept", "mia_eff", "gap_paper", "time_s", "How to read the gaps"):
        assert col in text
    wide = [ln for ln in text.splitlines() if len(ln.rstrip()) > 80]
    assert not wide, wide  # fits an 80-column terminal
    for sub in ("original", "retrained", "retrained-seed1", "mumis"):
        assert (out / sub / "model.safetensors").is_file()
    table = json.loads((out / "demo.json").read_text())["table"]
    # the floor: the second retrained model's gap, printed beside the method's
    floor = table["retrain (seed 1)"]["gap_paper"]
    assert 0 < floor < 5
    gap = table["mumis"]["gap_paper"]
    flat_text = " ".join(text.split())
    assert f"Here gap_paper {gap:.2f} (two retrained models differ by {floor:.2f})" in flat_text
    assert ("within the floor" if gap <= floor else "beyond the floor") in flat_text
    assert "How to read this: retrain (seed N)" in text
    report = json.loads((out / "mumis" / "evaluation.json").read_text())
    assert report["floor"]["metrics"]["gap_paper"]["floor"] == [floor]
    assert table["mumis"]["forget_acc"] <= 1.0  # forgotten
    assert table["original"]["forget_acc"] >= 90.0
    assert abs(table["mumis"]["test_remaining_acc"] - table["retrain"]["test_remaining_acc"]) <= 2.0
    # the summary says what the method was handed: MU-Mis, the forget set only
    words = " ".join(text.split())
    assert "used the 146 forget samples only, no remaining data" in words
    # a second run replaces its own output; a method that needs the retain set says it used it
    assert main(["-q", "demo", "--out", str(out), "--method", "finetune", "--set", "epochs=1"]) == 0
    words = " ".join(capsys.readouterr().out.split())
    assert "finetune: " in words and "used the 146 forget samples and the 1291 remaining (retain) samples" in words
    assert "no remaining data" not in words
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["finetune", "original", "retrained", "retrained-seed1"]
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    assert main(["-q", "demo", "--out", str(foreign)]) == 2
    assert (foreign / "notes.txt").read_text() == "keep me"

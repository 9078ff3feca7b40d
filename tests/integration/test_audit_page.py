"""audit.html and the ROC points in audit.json: a CI-sized digits audit, run twice."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from mumis.audits import page as page_mod
from mumis.audits import render_audit_page, roc_points, roc_summary
from mumis.cli import main

BROWSER = next((b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
PROBE = ('<script>window.addEventListener("load", () => { const im = [...document.images]; '
         'document.title = "PROBE " + im.length + " " + '
         'im.filter(i => i.complete && i.naturalWidth > 0).length; });</script>')


@pytest.fixture(scope="module")
def audits(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("audits")
    outs = []
    for name in ("a", "b"):
        out = root / name
        assert main(["-q", "audit", "digits", "--forget", "class:3", "--method", "finetune", "--models", "3",
                     "--shadows", "4", "--epochs", "3", "--out", str(out)]) == 0
        outs.append(out)
    return outs[0], outs[1]


def test_roc_points_are_a_monotone_subset_of_the_exact_curve() -> None:
    rng = np.random.default_rng(0)
    pos, neg = rng.normal(1.0, 1.0, 3000), rng.normal(0.0, 1.0, 5000)
    roc = roc_points(pos, neg)
    fpr, tpr = np.array(roc["fpr"]), np.array(roc["tpr"])
    assert 50 < len(fpr) <= 200 and len(fpr) == len(tpr)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert (np.diff(fpr) >= 0).all() and (np.diff(tpr) >= 0).all()
    assert fpr.min() >= 0 and tpr.max() <= 1
    # every point after (0, 0) is a corner of the exact curve: the highest TPR at its FPR, that of
    # flagging every score above the next negative down
    desc = np.sort(neg)[::-1]
    for f, t in zip(fpr[1:], tpr[1:], strict=True):
        k = round(f * len(neg))
        assert t == pytest.approx((pos > desc[k]).mean() if k < len(neg) else 1.0, abs=1e-6)
    # the low-FPR end is kept for a log axis: points below 1 % FPR, and the 1 % TPR is on the curve
    assert (fpr[(fpr > 0) & (fpr < 0.01)]).size >= 10
    assert tpr[fpr <= 0.01].max() * 100 == pytest.approx(roc_summary(pos, neg)["tpr_at_1pct_fpr"], abs=0.05)
    small = roc_points(np.array([2.0, 3.0]), np.array([1.0, 2.0]))  # few scores: the whole curve
    assert small == {"fpr": [0.0, 0.0, 0.5, 1.0], "tpr": [0.0, 0.5, 1.0, 1.0]}


def test_audit_json_carries_roc_points(audits: tuple[Path, Path]) -> None:
    res = json.loads((audits[0] / "audit.json").read_text())
    assert set(res["lira"]) == {"retrain", "original", "finetune"}
    for row in res["lira"].values():
        fpr, tpr = np.array(row["roc"]["fpr"]), np.array(row["roc"]["tpr"])
        assert 2 < len(fpr) <= 200 and len(fpr) == len(tpr)
        assert ((fpr >= 0) & (fpr <= 1) & (tpr >= 0) & (tpr <= 1)).all()
        assert (np.diff(fpr) >= 0).all() and (np.diff(tpr) >= 0).all()
        assert all(v == round(v, 6) for v in row["roc"]["fpr"] + row["roc"]["tpr"])
    # the prefixes of the shadows keep the numbers only (the file stays small)
    assert all("roc" not in r for by in res["lira_by_shadows"].values() for r in by.values())
    assert res["lira"]["original"]["roc"]["tpr"][1] == 1.0  # doing nothing: told apart at FPR 0


def test_audit_html_self_contained_and_byte_identical(audits: tuple[Path, Path]) -> None:
    pytest.importorskip("matplotlib")
    page = (audits[0] / "audit.html").read_text()
    assert (audits[0] / "audit.html").read_bytes() == (audits[1] / "audit.html").read_bytes()
    assert page.count("<img ") == 2 and page.count('src="data:image/png;base64,') == 2
    assert "How to read this" in page and page.count("<table>") == 1
    assert "<td>finetune</td>" in page and "<td>reference</td>" in page and "tpr@1%" in page
    assert not re.search(r'(src|href)="(https?:)?//', page)  # no external resources


def test_page_without_matplotlib_says_so(audits: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    res = json.loads((audits[0] / "audit.json").read_text())
    monkeypatch.setattr(page_mod, "plots_available", lambda: False)
    page = render_audit_page(res)
    assert "<img" not in page and page.count("matplotlib is not installed") == 1
    assert "<td>finetune</td>" in page
    only_eps = {k: v for k, v in res.items() if k != "lira"}
    assert render_audit_page(only_eps, with_plots=False).count("<img") == 0
    if importlib.util.find_spec("matplotlib") is not None:  # one audit, one figure
        assert render_audit_page(only_eps, with_plots=True).count("<img ") == 1


@pytest.mark.skipif(BROWSER is None, reason="no headless Chromium installed")
def test_audit_page_opens_in_a_headless_browser(audits: tuple[Path, Path], tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    page = (audits[0] / "audit.html").read_text()
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", PROBE + "</body>"))
    res = subprocess.run(
        [str(BROWSER), "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000",
         "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120, check=False)
    title = re.search(r"<title>PROBE (\d+) (\d+)</title>", res.stdout)
    assert title, f"the probe did not run: {res.stderr[-2000:]}"
    assert tuple(map(int, title.groups())) == (2, 2)  # both figures decoded

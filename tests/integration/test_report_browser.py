"""The HTML report opened in a real headless browser: every plot decodes and displays.

Needs Chromium (`apt-get install chromium`; CI installs it); skipped without it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from mumis.cli import main

BROWSER = next((b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
# Counts, once the page has loaded, the images the browser decoded (naturalWidth > 0).
PROBE = ('<script>window.addEventListener("load", () => { const im = [...document.images]; '
         'document.title = "PROBE " + im.length + " " + '
         'im.filter(i => i.complete && i.naturalWidth > 0).length + " " + '
         'document.querySelectorAll("table").length; });</script>')


@pytest.mark.skipif(BROWSER is None, reason="no headless Chromium installed")
def test_report_opens_in_a_headless_browser(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    cfg = {"datasets": ["digits"], "models": ["mlp"], "scenarios": ["class:3"],
           "methods": {"mumis": {"max_steps": 20}, "grad_ascent": {"epochs": 1}}, "seeds": [0],
           "train": {"epochs": 3}, "device": "cpu"}
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(cfg))
    out = tmp_path / "bench"
    assert main(["-q", "bench", "--config", str(tmp_path / "b.yaml"), "--out", str(out)]) == 0
    assert main(["-q", "report", str(out), "--format", "html"]) == 0
    page = (out / "report" / "report.html").read_text()
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", PROBE + "</body>"))
    res = subprocess.run(
        [str(BROWSER), "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000",
         "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120, check=False)
    title = re.search(r"<title>PROBE (\d+) (\d+) (\d+)</title>", res.stdout)
    assert title, f"the probe did not run: {res.stderr[-2000:]}"
    images, decoded, tables = map(int, title.groups())
    # bars, recovery audits, sensitivity histograms, MIA score distributions, MU-Mis dynamics:
    # every <img> of the page is in the DOM and decoded
    expected = page.count("<img ")
    assert expected >= 5
    assert (images, decoded, tables) == (expected, expected, 1)
    shot = tmp_path / "shot.png"
    subprocess.run([str(BROWSER), "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1200,2000",
                    f"--screenshot={shot}", (out / "report" / "report.html").as_uri()],
                   capture_output=True, timeout=120, check=False)
    assert shot.is_file() and shot.stat().st_size > 10_000

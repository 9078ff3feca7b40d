"""`mumis.reporting` on hand-made bench records: table layout, means and stds, every format."""

from __future__ import annotations

import csv
import io
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import pytest

from mumis.cli import main
from mumis.reporting import FILES, build_tables, parse_formats, to_csv, to_latex, to_markdown, write_report
from mumis.reporting.tables import Stat
from mumis.utils import atomic_write_json

CLASSWISE = {"test_forgotten_acc": 0.0, "test_remaining_acc": 98.0, "test_acc": 88.0, "mia_efficacy": 100.0,
             "forget_acc": 0.0, "retain_acc": 99.0}
RANDOM = {"forget_acc": 97.0, "retain_acc": 99.5, "test_acc": 98.0, "mia_efficacy": 6.0}


def _record(scenario: str, method: str, seed: int, shift: float, *, name: str | None = None) -> dict[str, Any]:
    base = CLASSWISE if scenario.startswith("class") else RANDOM
    ref = method == "retrain"
    model = {k: v + shift for k, v in base.items()}
    cid = f"digits__mlp__{scenario.replace(':', '-')}__{method}__s{seed}"
    return {
        "format": "mumis-bench-record/1", "cell": cid, "dataset": "digits", "model": "mlp",
        "scenario": scenario, "seed": seed, "role": "reference" if ref else "method", "method": method,
        "method_name": None if ref else (name or method),
        "evaluation": {"model": model, **({} if ref else {"reference": dict(base)})},
        "gap_paper": 0.0 if ref else 1.0 + shift, "gap_salun": 0.0 if ref else 2.0 + shift,
        "time_s": 0.5 + seed, "steps": None if ref else 10 + seed, "run_dir": f"runs/{cid}",
    }


@pytest.fixture()
def bench_dir(tmp_path: Path) -> Path:
    out = tmp_path / "bench"
    methods = [("grad_ascent", None), ("mumis", "mumis")]
    recs = []
    for scenario in ("class:3", "random:0.1"):
        for seed, shift in ((0, 0.0), (1, 1.5), (2, 4.0)):
            recs.append(_record(scenario, "retrain", seed, 0.0))
            for i, (label, name) in enumerate(methods):
                recs.append(_record(scenario, label, seed, shift * (i + 1), name=name))
    for r in recs:
        atomic_write_json(out / "records" / f"{r['cell']}.json", r)
        if r["method_name"] == "mumis":
            hist = [{"step": s, "forget_acc": 100.0 - 10 * s, "s_target": 5.0 - 0.3 * s, "s_irrelevant": 4.0 + 0.1 * s}
                    for s in range(0, r["steps"] + 1, 2)]
            (out / r["run_dir"]).mkdir(parents=True)
            (out / r["run_dir"] / "history.jsonl").write_text("".join(json.dumps(h) + "\n" for h in hist))
    # the grid's order: mumis before grad_ascent, random before class
    atomic_write_json(out / "bench.json", {"config": {
        "name": "unit", "datasets": ["digits"], "models": ["mlp"], "scenarios": ["random:0.1", "class:3"],
        "methods": [{"label": "mumis"}, {"label": "grad_ascent"}]}})
    return out


def _records(out: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted((out / "records").glob("*.json"))]


def test_stat_mean_std_and_missing_values() -> None:
    s = Stat.of([1.0, 2.0, None, float("nan"), 4.0])
    assert s.n == 3 and s.mean == pytest.approx(7 / 3) and s.std == pytest.approx(statistics.stdev([1, 2, 4]))
    assert s.text(1) == f"2.3 ± {statistics.stdev([1, 2, 4]):.1f}"
    assert Stat.of([5.0]).text() == "5.00"  # one seed: no std
    assert Stat.of([None]).text() == "n/a"


def test_tables_order_columns_and_means(bench_dir: Path) -> None:
    bench = json.loads((bench_dir / "bench.json").read_text())
    tables = build_tables(_records(bench_dir), bench)
    assert [t.scenario for t in tables] == ["random:0.1", "class:3"]
    rnd, cls = tables
    assert [r.method for r in rnd.rows] == ["retrain", "mumis", "grad_ascent"]
    assert rnd.rows[0].reference and not rnd.rows[1].reference
    assert [k for k, _ in cls.columns][:3] == ["test_forgotten_acc", "test_remaining_acc", "test_acc"]
    assert [k for k, _ in rnd.columns][:3] == ["forget_acc", "retain_acc", "test_acc"]
    assert [k for k, _ in rnd.columns][3:] == ["mia_efficacy", "gap_paper", "gap_salun", "time_s"]
    mumis = cls.rows[1]
    assert mumis.seeds == [0, 1, 2]
    shifts = [0.0, 3.0, 8.0]  # mumis is the second method: shift x 2
    assert mumis.values["test_remaining_acc"].mean == pytest.approx(98.0 + statistics.fmean(shifts))
    assert mumis.values["gap_paper"].std == pytest.approx(statistics.stdev(shifts))
    assert mumis.values["time_s"].mean == pytest.approx(1.5)
    assert cls.rows[0].values["gap_paper"].mean == 0.0


def _md_tables(text: str) -> dict[str, dict[str, list[str]]]:
    """heading -> method -> cells, from the Markdown tables."""
    out: dict[str, dict[str, list[str]]] = {}
    current = ""
    for line in text.splitlines():
        if line.startswith("### "):
            current = line[4:]
            out[current] = {}
        elif line.startswith("| ") and current and not line.startswith("| method"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            out[current][cells[0]] = cells[1:]
    return out


def test_markdown_numbers_are_the_records_means(bench_dir: Path) -> None:
    recs = _records(bench_dir)
    tables = build_tables(recs)
    md = _md_tables(to_markdown(tables))
    for t in tables:
        (heading,) = [h for h in md if h.startswith(t.title)]
        assert "mean ± std over 3 seeds" in heading
        for method, cells in md[heading].items():
            mine = [r for r in recs if r["scenario"] == t.scenario and r["method"] == method]
            assert len(mine) == 3
            for (key, _), cell in zip(t.columns, cells, strict=True):
                vals = [r[key] if key in ("gap_paper", "gap_salun", "time_s") else r["evaluation"]["model"][key]
                        for r in mine]
                mean = cell.split(" ± ")[0]
                assert float(mean) == pytest.approx(round(statistics.fmean(vals), 2), abs=1e-9), (method, key)
                if len(set(vals)) > 1:
                    assert float(cell.split(" ± ")[1]) == pytest.approx(round(statistics.stdev(vals), 2))


def test_csv_and_latex(bench_dir: Path) -> None:
    tables = build_tables(_records(bench_dir))
    rows = list(csv.DictReader(io.StringIO(to_csv(tables))))
    assert len(rows) == 6
    row = next(r for r in rows if r["scenario"] == "random:0.1" and r["method"] == "grad_ascent")
    assert float(row["forget_acc_mean"]) == pytest.approx(97.0 + statistics.fmean([0, 1.5, 4.0]))
    assert row["n_seeds"] == "3" and row["test_forgotten_acc_mean"] == ""
    ref = next(r for r in rows if r["method"] == "retrain")
    assert ref["gap_paper_std"] == "0.0" and ref["method_name"] == ""
    tex = to_latex(tables)
    assert tex.count(r"\begin{table}") == 2 and r"grad\_ascent" in tex and r"\pm" in tex
    assert tex.count(r"\begin{table}") == tex.count(r"\end{table}")


def test_html_has_tables_and_plots(bench_dir: Path) -> None:
    pytest.importorskip("matplotlib")
    paths = write_report(bench_dir, formats=["html"])
    page = paths["html"].read_text()
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page
    assert page.count("<table>") == 2
    # a bar chart per table + one dynamics plot per table (mumis)
    assert page.count("<img") == 4 and page.count("data:image/png;base64,") == 4
    assert "MU-Mis dynamics" in page and "not installed" not in page
    assert "http://" not in page and "https://" not in page  # self-contained


def test_html_without_matplotlib_keeps_the_tables(bench_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for mod in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    page = write_report(bench_dir, formats=["html"])["html"].read_text()
    assert "matplotlib is not installed" in page
    assert page.count("<table>") == 2 and "<img" not in page


def test_cli_report_formats(bench_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(bench_dir), "--format", "md,csv"]) == 0
    printed = capsys.readouterr().out
    assert "### digits / mlp / random:0.1" in printed
    assert sorted(p.name for p in (bench_dir / "report").iterdir()) == sorted([FILES["md"], FILES["csv"]])
    assert main(["-q", "report", str(bench_dir)]) == 0
    assert sorted(p.name for p in (bench_dir / "report").iterdir()) == sorted(FILES.values())


def test_cli_report_bad_input(tmp_path: Path, bench_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(bench_dir), "--format", "md,pdf"]) == 2
    err = capsys.readouterr().err.strip()
    assert "unknown report format 'pdf'" in err and len(err.splitlines()) == 1
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "holds no bench records" in capsys.readouterr().err
    assert parse_formats("md, html,md") == ["md", "html"]


def _with_samples(rec: dict[str, Any], loss: list[float], sens: list[float]) -> dict[str, Any]:
    splits = ("forget", "retain", "test")
    return {**rec, "samples": {"loss": {k: loss for k in splits},
                               "sensitivity_target": {k: sens for k in splits}}}


def test_original_row_and_pooled_samples(bench_dir: Path) -> None:
    from mumis.reporting.html import table_samples

    for seed in (0, 1):
        orig = _record("class:3", "original", seed, 2.0)
        orig.update(role="original", method_name=None)
        atomic_write_json(bench_dir / "records" / f"{orig['cell']}.json",
                          _with_samples(orig, [0.1 * (seed + 1)], [1.0 + seed]))
    mumis = json.loads((bench_dir / "records" / "digits__mlp__class-3__mumis__s0.json").read_text())
    atomic_write_json(bench_dir / "records" / "digits__mlp__class-3__mumis__s0.json",
                      _with_samples(mumis, [5.0, 6.0], [0.5]))
    bench = json.loads((bench_dir / "bench.json").read_text())
    cls = build_tables(_records(bench_dir), bench)[1]
    # the oracle, then the original (context rows), then the methods in the grid's order
    assert [r.method for r in cls.rows] == ["retrain", "original", "mumis", "grad_ascent"]
    assert [(r.reference, r.context) for r in cls.rows] == [(True, True), (False, True),
                                                           (False, False), (False, False)]
    assert cls.rows[1].seeds == [0, 1]
    tex = to_latex([cls])
    lines = tex.splitlines()
    assert lines[lines.index(next(x for x in lines if x.startswith("original"))) + 1] == r"\midrule"
    samples = table_samples(_records(bench_dir), cls)
    assert list(samples) == ["original", "mumis"]  # table order; rows without samples left out
    assert samples["original"]["loss"]["forget"] == [0.1, 0.2]  # pooled over seeds, seed order
    assert samples["original"]["sensitivity_target"]["test"] == [1.0, 2.0]
    assert samples["mumis"]["loss"]["test"] == [5.0, 6.0]


def test_html_sample_charts(bench_dir: Path) -> None:
    pytest.importorskip("matplotlib")
    for r in _records(bench_dir):
        if r["scenario"] == "class:3":
            atomic_write_json(bench_dir / "records" / f"{r['cell']}.json",
                              _with_samples(r, [1e-9, 0.01, 0.5, 3.0], [0.2, 0.4, 0.8]))
    page = write_report(bench_dir, formats=["html"])["html"].read_text()
    # class:3 gains the sensitivity histograms and the MIA score distributions; random does not
    assert page.count("<img") == 6
    assert page.count('alt="input sensitivity histograms, digits / mlp / class:3"') == 1
    assert page.count('alt="membership-inference score distributions, digits / mlp / class:3"') == 1


def test_dynamics_of_every_mumis_variant_in_row_order(bench_dir: Path) -> None:
    from mumis.reporting.html import mumis_runs

    rec = _record("class:3", "published", 0, 0.5, name="mumis_published")
    atomic_write_json(bench_dir / "records" / f"{rec['cell']}.json", rec)
    (bench_dir / rec["run_dir"]).mkdir(parents=True)
    (bench_dir / rec["run_dir"] / "history.jsonl").write_text(
        json.dumps({"step": 0, "loss": 3.0, "forget_acc": 100.0}) + "\nnot json\n")
    bench = json.loads((bench_dir / "bench.json").read_text())
    cls = build_tables(_records(bench_dir), bench)[1]
    runs = mumis_runs(bench_dir, _records(bench_dir), cls)
    assert list(runs) == ["mumis", "published"]  # grad_ascent has no dynamics
    assert [r["label"] for r in runs["mumis"]] == ["seed 0", "seed 1", "seed 2"]
    assert runs["published"][0]["history"] == [{"step": 0, "loss": 3.0, "forget_acc": 100.0}]
    assert runs["published"][0]["stop_step"] == 10


def test_recovery_columns_and_panel(bench_dir: Path) -> None:
    """Records with the recovery audits get their columns (before the time) and a bar panel."""
    from mumis.reporting import plots

    for f in sorted((bench_dir / "records").glob("*class-3*.json")):
        r = json.loads(f.read_text())
        came_back = 0.0 if r["method"] == "retrain" else 90.0 + r["seed"]
        r["evaluation"]["model"].update({"bn_reestimated_test_forgotten_acc": came_back,
                                         "relearn_test_forgotten_acc": came_back / 2})
        r["gap_recovery"] = (came_back + came_back / 2) / 2
        atomic_write_json(f, r)
    bench = json.loads((bench_dir / "bench.json").read_text())
    rnd, cls = build_tables(_records(bench_dir), bench)
    assert [k for k, _ in rnd.columns][3:] == ["mia_efficacy", "gap_paper", "gap_salun", "time_s"]
    assert [k for k, _ in cls.columns][3:] == [
        "mia_efficacy", "gap_paper", "gap_salun", "bn_reestimated_test_forgotten_acc",
        "relearn_test_forgotten_acc", "gap_recovery", "time_s"]
    cells = _md_tables(to_markdown([cls]))[next(iter(_md_tables(to_markdown([cls]))))]
    assert cells["retrain"][6:9] == ["0.00 ± 0.00"] * 3
    assert cells["mumis"][6:9] == ["91.00 ± 1.00", "45.50 ± 0.50", "68.25 ± 0.75"]
    assert "gap_recovery_mean" in to_csv([rnd, cls]).splitlines()[0]
    if plots.available():
        assert plots.has_recovery(cls) and not plots.has_recovery(rnd)
        assert plots.recovery_chart(cls)[:8] == b"\x89PNG\r\n\x1a\n"
        page = (bench_dir / "report" / "report.html")
        write_report(bench_dir, formats=("html",))
        assert "recovery audits per method, digits / mlp / class:3" in page.read_text()


def _floor_records() -> list[dict[str, Any]]:
    """class:3 over two seeds: the oracle, a seed-1 retrain (the floor row) and two methods,
    each method record with the floor block `mumis.evaluation.floor` writes."""
    recs = []
    for seed in (0, 1):
        fl = {"test_forgotten_acc": 1.0 + seed, "gap_paper": 2.0 + seed}  # floor per key (max)
        for method, role, dist in (("retrain", "reference", None), ("retrain (seed 1)", "floor", None),
                                   ("near", "method", {"test_forgotten_acc": 0.5, "gap_paper": 1.0 + seed}),
                                   ("far", "method", {"test_forgotten_acc": 0.5 + 2 * seed, "gap_paper": 9.0})):
            rec = _record("class:3", method, seed, 0.0)
            rec["role"] = role
            if dist is not None:
                rec["evaluation"]["floor"] = {"metrics": {
                    k: {"model": dist[k], "floor": [fl[k]], "mean": fl[k], "max": fl[k],
                        "within": dist[k] <= fl[k]} for k in fl}}
            recs.append(rec)
    return recs


def test_floor_rows_marks_and_band(monkeypatch: pytest.MonkeyPatch) -> None:
    from mumis.reporting import plots

    (t,) = build_tables(_floor_records())
    assert [r.method for r in t.rows] == ["retrain", "retrain (seed 1)", "far", "near"]
    # the floor: its largest retrain-vs-retrain distance, mean over the two seeds
    assert t.floor["gap_paper"].mean == pytest.approx(2.5) and t.floor["test_forgotten_acc"].mean == 1.5
    near, far = t.rows[3], t.rows[2]
    assert near.within == {"test_forgotten_acc": True, "gap_paper": True}
    # within in seed 0 only (0.5 <= 1, then 2.5 > 2): not marked
    assert far.within == {"test_forgotten_acc": False, "gap_paper": False}
    md = to_markdown([t])
    assert md.count(" * |") == 2 and "| near | 0.00 ± 0.00 * |" in md and "retrain (seed X)" in md
    assert to_csv([t]).splitlines()[0].endswith("time_s_mean,time_s_std,time_s_within")
    if not plots.available():
        pytest.skip("matplotlib is not installed")
    figs: list[Any] = []
    monkeypatch.setattr(plots, "_png", lambda fig: figs.append(fig) or b"")
    plots.accuracy_gap_chart(t)
    acc_ax, gap_ax = figs[0].axes[:2]

    def boxes(ax: Any) -> list[Any]:
        return [p for p in ax.patches if p.get_linestyle() == "--"]

    # one box per row for each column with a floor: forget acc (accuracies), gap (paper) (gaps)
    assert len(boxes(acc_ax)) == len(t.rows) and len(boxes(gap_ax)) == len(t.rows)
    b = boxes(gap_ax)[0]
    assert (b.get_y(), b.get_height()) == (0.0, pytest.approx(2.5))
    centre = t.rows[0].values["test_forgotten_acc"].mean
    b = boxes(acc_ax)[0]
    assert (b.get_y(), b.get_y() + b.get_height()) == (pytest.approx(centre - 1.5), pytest.approx(centre + 1.5))
    # records without a floor: no boxes
    figs.clear()
    plots.accuracy_gap_chart(build_tables([_record("class:3", "x", 0, 0.0)])[0])
    assert not boxes(figs[0].axes[0]) and not boxes(figs[0].axes[1])

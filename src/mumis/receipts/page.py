"""`receipt.html`: the receipt on one self-contained page (inline style, no script, no link out)."""

from __future__ import annotations

import html
import json
from typing import Any

_STYLE = """body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:1.6rem;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.4rem 0}td,th{border:1px solid #ccc;padding:.25rem .5rem;text-align:left}
th{background:#f3f3f3}code{font-size:.85rem;word-break:break-all}.verdict{background:#fff8e0;padding:.6rem;
border-left:4px solid #d9a400}.small{color:#666;font-size:.85rem}"""


def _e(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (dict, list)):
        return f"<code>{html.escape(json.dumps(v, sort_keys=True))}</code>"
    return html.escape(str(v))


def _rows(pairs: list[tuple[str, Any]]) -> str:
    return "<table>" + "".join(f"<tr><th>{html.escape(k)}</th><td>{_e(v)}</td></tr>" for k, v in pairs) + "</table>"


def _code(v: Any) -> str:
    return "n/a" if v is None else f"<code>{html.escape(str(v))}</code>"


def _test(t: dict[str, Any] | None) -> str:
    if not t or t.get("p_value") is None:
        return "n/a"
    return (f"p = {_e(t['p_value'])}; detects |AUC - 50| &ge; {_e(t['detectable_auc_shift'])} points with "
            f"{100 * t['power']:.0f} % power at level {t['alpha']}")


def _evidence_table(ev: dict[str, Any]) -> str:
    head = "<tr><th>model</th><th>split</th><th>accuracy (%)</th><th>mean confidence</th><th>mean loss</th></tr>"
    body = ""
    for who in ("before", "after"):
        for split in ("forget", "unseen"):
            s = ev[who][split]
            body += (f"<tr><td>{who}</td><td>{split}</td><td>{_e(s['accuracy'])}</td>"
                     f"<td>{_e(s['confidence'])}</td><td>{_e(s['loss'])}</td></tr>")
    attack = "".join(f"<tr><td>{w}</td><td>{_e(ev[w]['loss_attack_auc'])}</td><td>{_e(ev[w]['loss_attack_acc'])}</td>"
                     f"<td>{_test(ev[w].get('loss_test'))}</td></tr>" for w in ("before", "after"))
    sens = ev["sensitivity"]
    return (f"<table>{head}{body}</table><p>Membership attack, forget (member) vs unseen, on the per-sample "
            "loss: 50 = cannot tell them apart. The rank test (Mann-Whitney U) asks whether the two loss "
            "distributions differ at all; its power says how large a difference it would find.</p>"
            "<table><tr><th>model</th><th>threshold AUC</th>"
            f"<th>cross-validated accuracy</th><th>rank test</th></tr>{attack}</table>"
            f"<p>Input sensitivity ({html.escape(sens['statistic'])}, up to {sens['n_per_split']} samples per "
            "side):</p>" + _rows([
                ("forget / unseen, before", sens["forget_to_unseen_before"]),
                ("forget / unseen, after", sens["forget_to_unseen_after"]),
                ("forget after / forget before", sens["forget_shift"])]))


def render_html(receipt: dict[str, Any]) -> str:
    """The page: verdict first, then what was forgotten, the models, the method and the evidence."""
    p = receipt["payload"]
    f, m, ev = p["forgotten"], p["method"], p["evidence"]
    ref = p.get("reference")
    ref_html = "<p>No evaluation against a retrained model in the run directory.</p>" if ref is None else _rows(
        [("source", ref["source"]), ("gap_paper", ref["gap_paper"]), ("gap_salun", ref["gap_salun"]),
         ("kl_to_retrain", ref["kl_to_retrain"]), ("|model - retrain|", ref["abs_diff"]),
         ("retraining floor", ref["floor"])])
    run = p.get("run") or {}
    parts = [
        f"<h1>Deletion receipt <code>{html.escape(p['request_id'])}</code></h1>",
        f"<p class=verdict>{html.escape(p['verdict'])}</p>",
        "<h2>What was forgotten</h2>",
        _rows([("forget spec", f.get("spec")), ("samples", f["n"]), ("dataset", (p.get("dataset") or {}).get("name")),
               ("split manifest hash", f.get("manifest_hash"))])
        + f"<p>sorted indices sha256 {_code(f['indices_sha256'])}<br>samples' content sha256 "
          f"{_code(f['content_sha256'])}</p>",
        "<h2>Models</h2>",
        f"<p>before: {_code(p['model_before']['sha256'])} ({p['model_before']['tensors']} tensors)"
        + ("" if not p.get("previous_receipt") else
           f", itself the result of request {_code(p['previous_receipt']['request_id'])}") + "<br>"
        f"after: {_code(p['model_after']['sha256'])} ({p['model_after']['tensors']} tensors)</p>",
        "<h2>Method and the data it was given</h2>",
        _rows([("method", m["name"]), ("seed", m["seed"]), ("settings", m["settings"]),
               ("needs remaining data", m["requires_retain"]), ("data given", m["data_given"]["text"]),
               ("steps", run.get("steps")), ("stopped", run.get("stop_reason")), ("versions", p.get("versions"))]),
        f"<h2>Evidence (without a retrained model; unseen = {html.escape(str(ev['unseen']['source']))}, "
        f"{ev['unseen']['n']} samples)</h2>",
        _evidence_table(ev),
        "<h2>Distances to a retrained model</h2>", ref_html,
        "<h2>Checking this receipt</h2>",
        f"<p><code>mumis verify RUN_DIR</code> recomputes every hash and the evidence from the files and "
        f"the data. payload sha256 {_code(receipt['payload_sha256'])}</p>",
        # no creation time here: identical runs give byte-identical pages (receipt.json has it)
        f"<p class=small>{html.escape(str(receipt.get('note', '')))}</p>",
    ]
    return ("<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8><title>Deletion receipt "
            f"{html.escape(p['request_id'])}</title><style>{_STYLE}</style></head><body>\n"
            + "\n".join(parts) + "\n</body></html>\n")

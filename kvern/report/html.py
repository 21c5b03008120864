"""``report.html``: one self-contained page per report folder, for a person or a CI artifact.

Rendered from the folder's files (``kvern.report.folder``), so every command and
``kvern report DIR`` share it. Self-contained: charts are embedded as base64 PNG data URIs and
the CSS is inline; no script, no network, so it opens from a downloaded artifact with a
double-click. Deterministic: no timestamps, no absolute paths, settings in sorted order, so a
rerun is byte-identical like the other files. Every value from the data is escaped (prompt
text may hold HTML); prompt text appears only where the data has it (``analyze --show-text``).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Sequence
from html import escape
from pathlib import Path
from typing import Any

from kvern.infra.files import atomic_open
from kvern.report.folder import ReportFolder, best_row, read_folder

REPORT_FILE = "report.html"

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2330;
background:#f6f7f9}
main{max-width:1180px;margin:0 auto;padding:24px 28px 48px}
h1{font-size:22px;margin:0 0 4px}
h2{font-size:17px;margin:28px 0 10px;border-bottom:1px solid #dde1e8;padding-bottom:4px}
h3{font-size:15px;margin:18px 0 8px}.sub{color:#5b6475;margin:0 0 16px}
.partial{background:#fde8e8;border:1px solid #e7a1a1;
color:#8a1c1c;padding:8px 12px;border-radius:6px;margin:12px 0}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:12px 0}
.card{background:#fff;border:1px solid #dde1e8;border-radius:8px;padding:8px 14px;min-width:140px}
.card .k{color:#5b6475;font-size:12px}.card .v{font-size:19px;font-weight:600}
table{border-collapse:collapse;background:#fff;margin:6px 0 12px;font-size:13px}
th,td{border:1px solid #dde1e8;padding:4px 9px;text-align:left;vertical-align:top}
th{background:#eef1f5;font-weight:600}td.n{text-align:right;font-variant-numeric:tabular-nums}
tr.best td{background:#eaf6ea}tr.dim td{color:#6b7280}
.pass{color:#17692c;font-weight:700}.fail{color:#a3141a;font-weight:700}
figure{margin:12px 0 20px;background:#fff;border:1px solid #dde1e8;border-radius:8px;padding:10px}
figure img{max-width:100%;height:auto;display:block}figcaption{color:#5b6475;font-size:12px;margin-top:4px}
details{margin:3px 0 3px 14px}summary{cursor:pointer}details>summary{padding:2px 0}
pre,code{font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
pre{background:#fff;border:1px solid #dde1e8;padding:8px;white-space:pre-wrap;word-break:break-word;
max-height:320px;overflow:auto}
.muted{color:#5b6475}ul.files{columns:3;color:#5b6475}
"""


# -- entry points ---------------------------------------------------------------------------------

def write_html(folder: str | Path) -> Path:
    """Write ``folder/report.html`` (atomically) from the folder's files; return its path."""
    report = read_folder(folder)
    path = report.path / REPORT_FILE
    with atomic_open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(render_html(report))
    return path


def render_html(report: ReportFolder) -> str:
    body = [f"<h1>{_e(report.title)}</h1>",
            f'<p class="sub">report folder <code>{_e(report.name)}</code></p>']
    if report.partial:
        body.append('<div class="partial"><b>PARTIAL</b>: the run was interrupted; this report holds '
                    "what finished.</div>")
    body.append(_cards(report.headline()))
    body.extend(_BODIES[report.kind](report))
    if report.charts:
        body.append("<h2>Charts</h2>")
        body.extend(_figure(p) for p in report.charts)
    body.append("<h2>Settings</h2>")
    body.append(_kv_table(_flatten(report.settings)))
    body.append("<h2>Files</h2>")
    files = sorted(p.name for p in report.path.iterdir()
                   if p.is_file() and not p.name.startswith(".") and p.name != REPORT_FILE)
    body.append('<ul class="files">' + "".join(f"<li>{_e(n)}</li>" for n in files) + "</ul>")
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            '<meta name="viewport" content="width=device-width,initial-scale=1">\n'
            f"<title>{_e(report.title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n<main>\n"
            + "\n".join(body) + "\n</main>\n</body>\n</html>\n")


# -- per kind -------------------------------------------------------------------------------------

def _compare_body(r: ReportFolder) -> list[str]:
    rows = r.summary_rows()
    best = {}
    for cap in dict.fromkeys(x.get("capacity") for x in rows):
        b = best_row([x for x in rows if x.get("capacity") == cap])
        if b is not None:
            best[cap] = b.get("policy")
    out = ["<h2>Summary</h2>", '<p class="muted">over the whole trace; ★ the best online policy at each '
           "capacity (Belady is the offline optimum)</p>", _summary_table(rows, best)]
    all_rows = r.document.get("summary", [])
    per_model = [x for x in all_rows if x.get("model") != "*"]
    if len(rows) != len(all_rows) and per_model:
        out.append("<details><summary>per model</summary>" + _summary_table(per_model, {}, model=True)
                   + "</details>")
    not_run = r.settings.get("not_run")
    if not_run:
        out.append(f'<p class="muted">not run: {_e(", ".join(map(str, not_run)))}</p>')
    return out


def _summary_table(rows: Sequence[dict[str, Any]], best: dict[Any, Any], model: bool = False) -> str:
    head = (["model"] if model else []) + [
        "policy", "capacity", "blocks", "token hit rate", "request hit rate", "cached tokens",
        "prompt tokens", "prefill saved (s)", "gap to Belady", "unschedulable"]
    body = []
    for x in rows:
        star = best.get(x.get("capacity")) == x.get("policy")
        cells = ([_td(x.get("model"))] if model else []) + [
            _td(f"{x.get('policy_label') or x.get('policy')}{' ★' if star else ''}"), _td(x.get("capacity")),
            _tdn(_int(x.get("capacity_blocks"))), _tdn(_pct(x.get("token_hit_rate"))),
            _tdn(_pct(x.get("request_hit_rate"))), _tdn(_int(x.get("cached_tokens"))),
            _tdn(_int(x.get("prompt_tokens"))), _tdn(_float(x.get("time_saved_s"), 2)),
            _tdn(_pts(x.get("gap_to_belady"), sign=False)), _tdn(_int(x.get("unschedulable_requests")))]
        cls = ' class="best"' if star else (' class="dim"' if x.get("policy") == "belady" else "")
        body.append(f"<tr{cls}>" + "".join(cells) + "</tr>")
    return _table(head, body)


def _sweep_body(r: ReportFolder) -> list[str]:
    out = ["<h2>Capacity answers</h2>", '<p class="muted">blocks needed to reach that share of the '
           "achievable token hit rate (≤ N: the smallest sampled capacity that does)</p>"]
    for m in r.document.get("models", []):
        out.append(f"<h3>{_e(m.get('model'))} · achievable token hit rate "
                   f"{_e(_pct(m.get('achievable_token_hit_rate')))} · block size "
                   f"{_e(m.get('block_size'))}</h3>")
        answers = m.get("answers", [])
        percents = sorted({a["percent"] for a in answers})
        body = []
        for policy in dict.fromkeys(a["policy"] for a in answers):
            cells = [_td(policy)]
            for pct in percents:
                a = next((a for a in answers if a["policy"] == policy and a["percent"] == pct), None)
                cells.append(_tdn(_answer(a)))
            cls = ' class="dim"' if policy == "belady" else ""
            body.append(f"<tr{cls}>" + "".join(cells) + "</tr>")
        out.append(_table(["policy", *[f"{p}%" for p in percents]], body))
        words = [a.get("words") for a in answers if a.get("policy") == "lru" and a.get("words")]
        if words:
            out.append("<ul>" + "".join(f"<li>{_e(w)}</li>" for w in words) + "</ul>")
    return out


def _answer(a: dict[str, Any] | None) -> str:
    if a is None:
        return "not run"
    if a.get("target_cached_tokens") == 0:
        return "0"
    if a.get("capacity_blocks") is None:
        return "not reached"
    return f"{'' if a.get('exact') else '≤ '}{a['capacity_blocks']:,}"


def _analyze_body(r: ReportFolder) -> list[str]:
    doc = r.document
    out = ["<h2>Trace profile</h2>", _profile_table(doc.get("profile", {}))]
    out += _breakers_section(doc)
    hot = doc.get("hot_prefixes", [])
    out.append("<h2>Hot prefixes</h2>")
    if hot:
        hint = "" if any("text" in h for h in hot) else " (prompt text only with <code>--show-text</code>)"
        out.append(f'<p class="muted">tokens saved = reuses × prefix tokens; click to expand{hint}</p>')
        out.append(hot_prefix_tree(hot))
    else:
        out.append('<p class="muted">none</p>')
    out += _notes(doc)
    return out


def _profile_table(prof: dict[str, Any]) -> str:
    summary = prof.get("summary", {})
    rows = [*summary.get("models", []), *([summary["total"]] if "total" in summary else [])]
    body = ["<tr>" + "".join([
        _td(m.get("model")), _tdn(_int(m.get("requests"))), _tdn(_int(m.get("sessions"))),
        _tdn(_int(m.get("prompt_tokens"))), _tdn(_float(m.get("mean_prompt_tokens"), 1)),
        _tdn(_int(m.get("p50_prompt_tokens"))), _tdn(_int(m.get("p99_prompt_tokens"))),
        _tdn(_int(m.get("unique_blocks"))), _tdn(_pct(m.get("infinite_cache_hit_rate")))]) + "</tr>"
        for m in rows]
    table = _table(["model", "requests", "sessions", "prompt tokens", "mean", "p50", "p99", "unique blocks",
                    "infinite-cache token hit rate"], body)
    reuse = prof.get("capacity_for_reuses") or {}
    extra = ""
    if reuse:
        extra = ('<p class="muted">LRU capacity (blocks) serving this share of block reuses: '
                 + _e(", ".join(f"{k}: {v:,}" for k, v in reuse.items())) + "</p>")
    return table + extra


def _breakers_section(doc: dict[str, Any]) -> list[str]:
    breakers = doc.get("breakers", [])
    out = ["<h2>Cache breakers</h2>"]
    if not breakers:
        out.append('<p class="muted">none found</p>')
    else:
        gains = {(g["rule"]["pattern"], g["rule"]["replace"]): g for g in doc.get("rule_gains", [])}
        body = []
        for b in breakers:
            rule = b.get("rule")
            g = gains.get((rule["pattern"], rule["replace"])) if rule else None
            where = f"{b.get('role') or 'prompt'}, token {b.get('offset')}"
            cells = [_td(b.get("pattern")), _td(b.get("kind")), _td(where), _tdn(_int(b.get("lost_tokens"))),
                     _tdn(_pct(b.get("share"))), _tdn(_int(b.get("requests"))),
                     "<td>" + (f"<code>{_e(rule['pattern'])}</code> → <code>{_e(rule['replace'])}</code>"
                               if rule else "—") + "</td>",
                     _td(gain_text(g))]
            if "example" in b:
                cells.append(f"<td><code>{_e(b['example'])}</code></td>")
            body.append("<tr>" + "".join(cells) + "</tr>")
        head = ["pattern", "field", "where", "lost tokens", "share of cacheable", "requests", "rule",
                "measured with the rule"] + (["example"] if any("example" in b for b in breakers) else [])
        out.append(_table(head, body))
    if doc.get("rule_gains"):
        out.append("<h3>Rules to paste into config.yaml</h3>")
        out.append(f"<pre>{_e(rules_yaml(doc['rule_gains']))}</pre>")
    return out


def rules_yaml(rule_gains: Sequence[dict[str, Any]]) -> str:
    """The measured rules as a ``normalize:`` block for config.yaml (JSON strings are YAML)."""
    lines = ["normalize:"]
    for g in rule_gains:
        rule = g["rule"]
        lines.append(f"  - {{name: {json.dumps(rule.get('name'))}, pattern: {json.dumps(rule['pattern'])}, "
                     f"replace: {json.dumps(rule['replace'])}}}")
    return "\n".join(lines)


def gain_text(g: dict[str, Any] | None) -> str:
    """A measured rule in words: the metric and the infinite-cache bound, before → after."""
    if g is None:
        return "not measured"
    name = str(g.get("metric", "")).replace("_", " ")
    return (f"{name} {_pct(g['before'])} → {_pct(g['after'])} ({_pts(g['gain'])}); infinite-cache bound "
            f"{_pct(g['infinite_cache_before'])} → {_pct(g['infinite_cache_after'])}")


def hot_prefix_tree(hot: Sequence[dict[str, Any]]) -> str:
    """The hot prefixes as nested ``<details>``: each under the longest shown prefix it extends.
    Shared with the dashboard's prefix-tree page."""
    children: dict[str | None, list[dict[str, Any]]] = {}
    keys = {h["key"] for h in hot}
    for h in hot:
        parent = h.get("parent") if h.get("parent") in keys else None
        children.setdefault(parent, []).append(h)

    def node(h: dict[str, Any]) -> str:
        label = (f"<b>{_int(h.get('tokens_saved'))}</b> tokens saved · {_int(h.get('reuses'))} reuses · "
                 f"depth {_int(h.get('depth_tokens'))} tokens · {_e(h.get('model'))} · "
                 f"<code>{_e(h.get('key'))}</code>")
        text = h.get("text")
        if text is not None:
            label += f" · <code>{_e(_short(text))}</code>"
        inner = "".join(node(c) for c in children.get(h["key"], []))
        full = f"<pre>{_e(text)}</pre>" if text is not None else ""
        return f"<details><summary>{label}</summary>{full}{inner}</details>"

    return '<div class="tree">' + "".join(node(h) for h in children.get(None, [])) + "</div>"


def _short(text: str, n: int = 60) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= n else flat[: n - 1] + "…"


def _gate_body(r: ReportFolder) -> list[str]:
    doc = r.document
    v = doc.get("verdict")
    out = ["<h2>Verdict</h2>"]
    if v is None:
        name = Path(str(doc.get("baseline_written"))).name  # the name only: no machine's path
        out.append(f"<p>baseline recorded: <code>{_e(name)}</code></p>")
    else:
        cls, word = ("pass", "PASSED") if doc.get("passed") else ("fail", "FAILED")
        name = str(v.get("metric", "")).replace("_", " ")
        change = v.get("change")
        out.append(f'<p><span class="{cls}">{word}</span>: {_e(name)} {_e(_pct(v.get("current")))}'
                   + (f", baseline {_e(_pct(v.get('baseline')))} ({_e(_pts(change))})" if change is not None
                      else "") + f" · {_e(v.get('policy'))} at {_e(_int(v.get('capacity_blocks')))} blocks, "
                   f"profile {_e(v.get('profile'))}</p>")
        body = ["<tr>" + _td(c["name"]) + _tdn(_check_value(c)) + _tdn(_check_limit(c))
                + ('<td class="pass">pass</td>' if c["passed"] else '<td class="fail">FAIL</td>') + "</tr>"
                for c in v.get("checks", [])]
        out.append(_table(["check", "value", "limit", "result"], body))
    row = doc.get("row", {})
    if row:
        out.append("<details><summary>the simulated summary row</summary>"
                   + _kv_table(_flatten(row)) + "</details>")
    out += _breakers_section(doc)
    out += _notes(doc)
    return out


def _check_value(c: dict[str, Any]) -> str:
    return _pts(c["value"]) if c["name"] == "drop" else _pct(c["value"])


def _check_limit(c: dict[str, Any]) -> str:
    return f"≤ {_pts(c['limit'])}" if c["name"] == "drop" else f"≥ {_pct(c['limit'])}"


_LIVE_LABELS = {
    "requests": "requests sent", "succeeded": "requests ok", "failed": "requests failed",
    "prompt_tokens": "prompt tokens", "observed_cached_tokens": "cached tokens, observed",
    "predicted_cached_tokens": "cached tokens, predicted",
    "observed_token_hit_rate": "token hit rate, observed",
    "predicted_token_hit_rate": "token hit rate, predicted",
    "server_token_hit_rate": "server-side hit rate (/metrics)", "compared": "requests compared",
    "agreed": "requests where prediction = observation", "agreement_rate": "agreement rate",
    "mean_abs_gap": "mean |observed − predicted| (tokens)", "ttft_p50_ms": "TTFT p50 (ms)",
    "ttft_p99_ms": "TTFT p99 (ms)", "e2e_p50_ms": "end-to-end p50 (ms)", "e2e_p99_ms": "end-to-end p99 (ms)",
    "send_lag_p99_ms": "send lag p99 (ms)", "retries": "retries",
}


def _live_body(r: ReportFolder) -> list[str]:
    d = r.document
    rows = []
    for key, label in _LIVE_LABELS.items():
        if key in d:
            v = d[key]
            rows.append((label, _pct(v) if key.endswith("rate") else _fmt(v)))
    rows += [(f"gap cause: {k}", _int(v)) for k, v in (d.get("gap_causes") or {}).items()]
    return ["<h2>Summary</h2>", _kv_table(rows)]


def _notes(doc: dict[str, Any]) -> list[str]:
    notes = doc.get("notes") or []
    return ["<h2>Notes</h2><ul>" + "".join(f"<li>{_e(n)}</li>" for n in notes) + "</ul>"] if notes else []


def _cluster_body(r: ReportFolder) -> list[str]:
    rows = r.document.get("summary", [])
    head = ["model", "replicas", "router", "offload", "token hit rate", "GPU", "lower tiers", "one cache",
            "lost", "imbalance max/mean", "TTFT p50 (s, est.)", "TTFT p99 (s, est.)"]
    body = []
    for x in rows:
        lower = (x.get("cpu_token_hit_rate") or 0.0) + (x.get("disk_token_hit_rate") or 0.0)
        body.append("<tr>" + "".join([
            _td(x.get("model")), _tdn(_int(x.get("replicas"))), _td(x.get("router_label") or x.get("router")),
            _td(x.get("offload") or "none"), _tdn(_pct(x.get("token_hit_rate"))),
            _tdn(_pct(x.get("gpu_token_hit_rate"))), _tdn(_pct(lower)),
            _tdn(_pct(x.get("global_token_hit_rate"))), _tdn(_pts(x.get("hit_rate_lost"), sign=False)),
            _tdn(_float(x.get("prefill_imbalance_max_mean"), 2)), _tdn(_float(x.get("ttft_p50_s"), 3)),
            _tdn(_float(x.get("ttft_p99_s"), 3))]) + "</tr>")
    return ["<h2>Replicas × routers</h2>",
            '<p class="muted">token hit rate per setting; "one cache" is a single cache of the summed '
            "capacity, \"lost\" what the fleet gives up against it; TTFT is the time model's estimate</p>",
            _table(head, body)]


_BODIES = {"cluster": _cluster_body, "compare": _compare_body, "replay": _compare_body, "sweep": _sweep_body,
           "analyze": _analyze_body,
           "gate": _gate_body, "live": _live_body}


# -- small pieces ---------------------------------------------------------------------------------

def _figure(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure><img alt="{_e(path.name)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{_e(path.name)}</figcaption></figure>")


def format_value(key: str, v: Any) -> str:
    """A headline value as shown: rates (by their name) as percentages."""
    return _pct(v) if "rate" in key and isinstance(v, float) else _fmt(v)


def headline_text(headline: dict[str, Any]) -> str:
    return " · ".join(f"{k} {format_value(k, v)}" for k, v in headline.items())


def _cards(headline: dict[str, Any]) -> str:
    cards = []
    for k, v in headline.items():
        value = format_value(k, v)
        cards.append(f'<div class="card"><div class="k">{_e(k)}</div><div class="v">{_e(value)}</div></div>')
    return '<div class="cards">' + "".join(cards) + "</div>"


def _flatten(d: dict[str, Any]) -> list[tuple[str, str]]:
    """Sorted (key, value) pairs; nested values as compact sorted JSON."""
    out = []
    for k in sorted(d):
        v = d[k]
        text = json.dumps(v, sort_keys=True, ensure_ascii=False) if isinstance(v, dict | list) else _fmt(v)
        out.append((str(k), text))
    return out


def _kv_table(rows: Iterable[tuple[str, str]]) -> str:
    return "<table>" + "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows) + "</table>"


def _table(head: Sequence[str], body: Sequence[str]) -> str:
    return ("<table><thead><tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr></thead><tbody>"
            + "".join(body) + "</tbody></table>")


def _td(v: Any) -> str:
    return f"<td>{_e('—' if v is None else v)}</td>"


def _tdn(text: str) -> str:
    return f'<td class="n">{_e(text)}</td>'


def _e(v: Any) -> str:
    return escape(str(v), quote=True)


def _fmt(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.0f}" if v.is_integer() and abs(v) >= 1 else f"{v:,.4g}"
    return str(v)


def _pct(v: Any) -> str:
    return "—" if not isinstance(v, int | float) else f"{v:.2%}"


def _pts(v: Any, sign: bool = True) -> str:
    if not isinstance(v, int | float):
        return "—"
    return f"{v * 100:+.2f} pt" if sign else f"{v * 100:.2f} pt"


def _int(v: Any) -> str:
    return "—" if not isinstance(v, int | float) else f"{int(v):,}"


def _float(v: Any, digits: int) -> str:
    return "—" if not isinstance(v, int | float) else f"{v:,.{digits}f}"

"""Read a report folder back from its files, whatever command wrote it.

``report.html``, ``kvern report DIR`` and the dashboard all start from the folder on disk, not
from a command's in-memory result, so a folder from an older run, a CI artifact or a live
replay renders the same way. The command is recognized by its JSON document:

| document | written by |
|---|---|
| ``summary.json`` | ``kvern compare`` (several policies) / ``kvern replay`` (one) |
| ``sweep.json`` | ``kvern sweep`` |
| ``analysis.json`` | ``kvern analyze`` |
| ``gate.json`` | ``kvern gate -o DIR`` |
| ``live_summary.json`` | ``kvern replay --backend URL`` |
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kvern.infra.errors import InputError

DOCUMENTS: tuple[tuple[str, str], ...] = (
    ("live_summary.json", "live"),
    ("gate.json", "gate"),
    ("analysis.json", "analyze"),
    ("sweep.json", "sweep"),
    ("summary.json", "compare"),
)
"""(file, kind) in the order a folder is recognized by (the first present wins)."""

REPORT_FILES = frozenset({
    "requests.parquet", "summary.parquet", "summary.json", "policies.png", "capacity.png", "timeline.png",
    "sweep.parquet", "sweep.json", "lru_curve.parquet", "sweep.png",
    "analysis.json", "profile.png", "breakers.png",
    "gate.json",
    "live.parquet", "reconcile.parquet", "live_summary.json", "ttft_vs_cached.png",
    "cluster.parquet", "cluster_hit_rate.png", "cluster_frontier.png", "cluster_offload.png",
    "report.html",
})
"""Every file a kvern command writes into a report folder: what a new run may remove there."""


def is_report_file(name: str) -> bool:
    """A file kvern wrote into a report folder: one of ``REPORT_FILES``, or the temp file of an
    atomic write that a killed run left (``.<name>.<random>.tmp``)."""
    if name in REPORT_FILES:
        return True
    return name.startswith(".") and name.endswith(".tmp") and name[1:].split(".tmp")[0].rsplit(".", 1)[0] \
        in REPORT_FILES


CHART_ORDER = ("policies.png", "capacity.png", "timeline.png", "sweep.png", "ttft_vs_cached.png",
               "breakers.png", "profile.png", "cluster_hit_rate.png", "cluster_frontier.png",
               "cluster_offload.png")
"""Charts in reading order; any other PNG follows, sorted by name."""


@dataclass(frozen=True)
class ReportFolder:
    """One report folder: its kind, its JSON document and its charts."""

    path: Path
    kind: str
    """compare, replay, sweep, analyze, gate, live or cluster."""
    document: dict[str, Any]
    charts: tuple[Path, ...]

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def settings(self) -> dict[str, Any]:
        doc = self.document
        if self.kind == "live":
            keys = ("backend", "profile", "pacing", "requests_planned", "wall_s", "stop_reason")
            return {k: doc[k] for k in keys if k in doc}
        if self.kind in ("analyze", "gate"):
            return {**doc.get("settings", {}), "trace": doc.get("trace")}
        return dict(doc.get("settings", {}))

    @property
    def trace(self) -> str:
        if self.kind == "live":
            return str(self.document.get("trace", ""))
        return str(self.settings.get("trace") or "")

    @property
    def profile(self) -> str:
        return str(self.settings.get("profile") or "")

    @property
    def partial(self) -> bool:
        return bool(self.settings.get("partial") or self.document.get("partial"))

    @property
    def title(self) -> str:
        what = {"compare": "policy comparison", "replay": "replay", "sweep": "capacity sweep",
                "analyze": "cache analysis", "gate": "CI gate", "live": "live replay",
                "cluster": "replicas behind routers"}[self.kind]
        parts = [f"kvern {self.kind}: {what}", self.trace, f"profile {self.profile}" if self.profile else ""]
        return " · ".join(p for p in parts if p)

    def summary_rows(self) -> list[dict[str, Any]]:
        """compare/replay: the rows over the whole trace (policy × capacity)."""
        from kvern.sim.metrics import aggregate_rows

        return aggregate_rows(self.document.get("summary", []))

    def headline(self) -> dict[str, float | str | None]:
        """The few numbers that say how the run went (label -> value; rates as fractions)."""
        return _HEADLINES[self.kind](self)


def read_folder(path: str | Path) -> ReportFolder:
    """The report in ``path``; an ``InputError`` when it holds none or a garbled one."""
    path = Path(path)
    if not path.is_dir():
        raise InputError("not a report folder (no such directory)", path)
    for file, kind in DOCUMENTS:
        doc_path = path / file
        if doc_path.is_file():
            try:
                doc = json.loads(doc_path.read_text(encoding="utf-8"))
            except (ValueError, UnicodeDecodeError) as e:
                raise InputError(f"not valid JSON ({e})", doc_path) from None
            if not isinstance(doc, dict):
                raise InputError("expected a JSON object", doc_path)
            if kind == "compare" and (path / "cluster.parquet").is_file():
                kind = "cluster"  # kvern cluster writes summary.json too, beside its cluster.parquet
            elif kind == "compare" and len(doc.get("settings", {}).get("policies", [])) == 1:
                kind = "replay"
            if kind == "live":  # the trace and settings are in live.parquet's metadata
                doc = {**_live_meta(path / "live.parquet"), **doc}
            return ReportFolder(path, kind, doc, _charts(path))
    names = ", ".join(f for f, _ in DOCUMENTS)
    raise InputError(f"not a report folder: none of {names}", path)


def find_folders(roots: Iterable[str | Path], errors: list[str] | None = None) -> list[ReportFolder]:
    """Every report folder at or below ``roots`` (sorted by path; hidden folders skipped).

    A missing root or a garbled folder raises ``InputError``, or with ``errors`` is appended
    to it as a message and skipped (the dashboard shows what it can)."""
    found: dict[Path, ReportFolder] = {}
    for root in roots:
        root = Path(root)
        if not root.is_dir():
            _fail(InputError("no such directory", root), errors)
            continue
        candidates = {root} | {p.parent for f, _ in DOCUMENTS for p in root.rglob(f)}
        for folder in sorted(candidates):
            if any(part.startswith(".") for part in folder.relative_to(root).parts):
                continue
            if any((folder / f).is_file() for f, _ in DOCUMENTS) and folder.resolve() not in found:
                try:
                    found[folder.resolve()] = read_folder(folder)
                except InputError as e:
                    _fail(e, errors)
    return sorted(found.values(), key=lambda f: str(f.path))


def _fail(error: InputError, errors: list[str] | None) -> None:
    if errors is None:
        raise error
    errors.append(error.message)


def _live_meta(path: Path) -> dict[str, Any]:
    """The run settings ``live.parquet`` carries (trace name, backend, pacing); {} without it."""
    import pyarrow.parquet as pq

    try:
        raw = (pq.read_schema(path).metadata or {}).get(b"kvern.live")
        meta = json.loads(raw) if raw else {}
    except (OSError, ValueError):
        return {}
    keys = ("trace", "backend", "pacing", "profile", "requests_planned")
    return {k: meta[k] for k in keys if k in meta} if isinstance(meta, dict) else {}


def _charts(path: Path) -> tuple[Path, ...]:
    pngs = {p.name: p for p in path.glob("*.png") if not p.name.startswith(".")}
    known = [pngs.pop(n) for n in CHART_ORDER if n in pngs]
    return tuple(known + [pngs[n] for n in sorted(pngs)])


# -- headline numbers per kind --------------------------------------------------------------------

def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and math.isfinite(v) else None


def best_row(rows: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The online policy with the highest token hit rate at the largest capacity."""
    online = [r for r in rows if r.get("policy") != "belady"] or list(rows)
    if not online:
        return None
    top = max(r.get("capacity_blocks") or 0 for r in online)
    at_top = [r for r in online if (r.get("capacity_blocks") or 0) == top]
    return max(at_top, key=lambda r: r.get("token_hit_rate") or 0.0)


def _compare_headline(f: ReportFolder) -> dict[str, float | str | None]:
    rows = f.summary_rows()
    best = best_row(rows)
    if best is None:
        return {"runs": 0}
    belady = next((r for r in rows if r.get("policy") == "belady"
                   and r.get("capacity") == best.get("capacity")), None)
    return {"best policy": best.get("policy_label") or best.get("policy"),
            "at capacity": str(best.get("capacity")),
            "token hit rate": _num(best.get("token_hit_rate")),
            "request hit rate": _num(best.get("request_hit_rate")),
            "belady token hit rate": None if belady is None else _num(belady.get("token_hit_rate")),
            "prefill time saved (s)": _num(best.get("time_saved_s"))}


def _sweep_headline(f: ReportFolder) -> dict[str, float | str | None]:
    out: dict[str, float | str | None] = {}
    for m in f.document.get("models", []):
        out[f"{m['model']}: achievable token hit rate"] = _num(m.get("achievable_token_hit_rate"))
        for a in m.get("answers", []):
            if a.get("percent") == 90 and a.get("policy") == "lru":
                out[f"{m['model']}: LRU blocks for 90%"] = _num(a.get("capacity_blocks"))
    return out


def _analyze_headline(f: ReportFolder) -> dict[str, float | str | None]:
    doc = f.document
    prof = doc.get("profile", {})
    return {"requests": _num(prof.get("summary", {}).get("total", {}).get("requests")),
            "infinite-cache token hit rate": _num(prof.get("infinite_token_hit_rate")),
            "cache breakers": len(doc.get("breakers", [])),
            "cacheable tokens lost": _num(doc.get("lost_tokens")),
            "hot prefixes": len(doc.get("hot_prefixes", []))}


def _gate_headline(f: ReportFolder) -> dict[str, float | str | None]:
    doc = f.document
    v = doc.get("verdict") or {}
    return {"verdict": "baseline recorded" if not v else ("passed" if doc.get("passed") else "FAILED"),
            "metric": v.get("metric"), "now": _num(v.get("current")), "baseline": _num(v.get("baseline")),
            "token hit rate": _num(doc.get("row", {}).get("token_hit_rate"))}


def _live_headline(f: ReportFolder) -> dict[str, float | str | None]:
    d = f.document
    return {"requests ok": _num(d.get("succeeded")), "requests failed": _num(d.get("failed")),
            "observed token hit rate": _num(d.get("observed_token_hit_rate")),
            "predicted token hit rate": _num(d.get("predicted_token_hit_rate")),
            "agreement rate": _num(d.get("agreement_rate")), "TTFT p50 (ms)": _num(d.get("ttft_p50_ms"))}


def _cluster_headline(f: ReportFolder) -> dict[str, float | str | None]:
    rows = [r for r in f.document.get("summary", []) if r.get("model") in ("*", None)] \
        or f.document.get("summary", [])
    if not rows:
        return {"settings": 0}
    top = max(r.get("replicas") or 0 for r in rows)
    best = max((r for r in rows if r.get("replicas") == top), key=lambda r: r.get("token_hit_rate") or 0.0)
    return {"replicas": top, "best router": best.get("router_label") or best.get("router"),
            "token hit rate": _num(best.get("token_hit_rate")),
            "one cache of the summed capacity": _num(best.get("global_token_hit_rate")),
            "load imbalance (max/mean)": _num(best.get("prefill_imbalance_max_mean"))}


_HEADLINES = {"compare": _compare_headline, "replay": _compare_headline, "sweep": _sweep_headline,
              "analyze": _analyze_headline, "gate": _gate_headline, "live": _live_headline,
              "cluster": _cluster_headline}

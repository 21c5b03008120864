"""Breakers: what broke prefix caching in an analyze (or failed gate) run, with the
normalization rule that fixes each and its measured gain."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import streamlit as st

from kvern.dashboard.widgets import pick_run
from kvern.report.folder import ReportFolder
from kvern.report.html import gain_text, rules_yaml

TITLE = "Breakers"
URL = "breakers"


def render(runs: Sequence[ReportFolder]) -> None:
    st.title("Cache breakers")
    f = pick_run(runs, ("analyze", "gate"), "breakers_run", "analyze or gate run", "analyze")
    if f is None:
        return
    doc = f.document
    if f.kind == "gate":
        v = f.headline()
        st.markdown(f"Gate verdict: **{v['verdict']}**")
    else:
        lost, cacheable = doc.get("lost_tokens") or 0, doc.get("cacheable_tokens") or 0
        st.markdown(f"Cacheable tokens lost behind a divergence: **{lost:,}** of {cacheable:,}")
    breakers = doc.get("breakers", [])
    if not breakers:
        st.success("no cache breakers found")
        return
    gains = {(g["rule"]["pattern"], g["rule"]["replace"]): g for g in doc.get("rule_gains", [])}
    rows = []
    for b in breakers:
        rule = b.get("rule")
        g = gains.get((rule["pattern"], rule["replace"])) if rule else None
        rows.append({
            "pattern": b.get("pattern"), "field": b.get("kind"),
            "where": f"{b.get('role')}, token {b.get('offset')}",
            "lost tokens": b.get("lost_tokens"), "share of cacheable": b.get("share"),
            "requests": b.get("requests"), "rule": f"{rule['pattern']} → {rule['replace']}" if rule else None,
            "gain (pt)": None if g is None else round(g["gain"] * 100, 3),
            "measured": gain_text(g), **({"example": b["example"]} if "example" in b else {}),
        })
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch",
                 column_config={"share of cacheable": st.column_config.NumberColumn(format="percent")})
    if doc.get("rule_gains"):
        st.markdown("Rules to paste into `config.yaml`:")
        st.code(rules_yaml(doc["rule_gains"]), language="yaml")
    for n in doc.get("notes", []):
        st.caption(n)

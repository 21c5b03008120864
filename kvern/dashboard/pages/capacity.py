"""Capacity: a sweep's hit rate against capacity, interactive, and the capacity answers
(how much KV memory reaches 50/80/90/95 % of the achievable hit rate)."""

from __future__ import annotations

from collections.abc import Sequence

import altair as alt
import pandas as pd
import streamlit as st

from kvern.dashboard.data import lru_curve, sweep_points
from kvern.dashboard.widgets import log_axis, pick_run
from kvern.report.folder import ReportFolder

TITLE = "Capacity"
URL = "capacity"
UNITS = {"blocks": "capacity_blocks", "tokens": "capacity_tokens", "GiB of KV": "capacity_gib"}
TOOLTIP = ["model", "policy", "source", "capacity_blocks", "capacity_tokens", "capacity_gib",
           "token_hit_rate", "request_hit_rate", "cached_tokens"]


def render(runs: Sequence[ReportFolder]) -> None:
    st.title("Capacity")
    f = pick_run(runs, ("sweep",), "capacity_run", "sweep run", "sweep")
    if f is None:
        return
    points = sweep_points(f)
    models = [m["model"] for m in f.document.get("models", [])]
    c1, c2, c3 = st.columns(3)
    chosen_models = c1.multiselect("models", models, default=models[:1], key="capacity_models")
    policies = list(f.settings.get("policies", [])) or sorted(set(points.get("policy", [])))
    chosen_policies = c2.multiselect("policies", policies, default=policies, key="capacity_policies")
    has_bytes = "capacity_bytes" in points and points["capacity_bytes"].notna().any()
    units = list(UNITS) if has_bytes else list(UNITS)[:2]
    unit = c3.selectbox("capacity in", units, key="capacity_unit") or "blocks"
    log = log_axis("capacity_axis")
    if points.empty or not chosen_models:
        st.info("choose at least one model" if not points.empty else "this sweep has no points")
    else:
        keep = points["model"].isin(chosen_models) & points["policy"].isin(chosen_policies)
        view = _with_units(points[keep])
        curve = _curve(f, points, chosen_models) if "lru" in chosen_policies else pd.DataFrame()
        st.altair_chart(_chart(view, curve, f, chosen_models, UNITS[unit], unit, log), width="stretch")
    for m in f.document.get("models", []):
        if m["model"] in chosen_models:
            _answers(m, chosen_policies)


def _with_units(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    df["capacity_gib"] = df["capacity_bytes"] / 2**30 if "capacity_bytes" in df else None
    return df


def _curve(f: ReportFolder, points: pd.DataFrame, models: list[str]) -> pd.DataFrame:
    """The exact LRU curve, with tokens and bytes per block taken from the sampled points."""
    curve = lru_curve(f)
    if curve.empty:
        return curve
    curve = curve[curve["model"].isin(models)].copy()
    geo = points.groupby("model").agg(block_size=("block_size", "first"),
                                      bytes_per_block=("capacity_bytes", "first"),
                                      blocks=("capacity_blocks", "first"))
    geo["bytes_per_block"] = geo["bytes_per_block"] / geo["blocks"]
    curve = curve.join(geo[["block_size", "bytes_per_block"]], on="model")
    curve["capacity_tokens"] = curve["capacity_blocks"] * curve["block_size"]
    curve["capacity_gib"] = curve["capacity_blocks"] * curve["bytes_per_block"] / 2**30
    curve["policy"] = "lru (exact curve)"
    curve["source"] = "curve"
    return curve


def _chart(view: pd.DataFrame, curve: pd.DataFrame, f: ReportFolder, models: list[str], x: str, unit: str,
           log: bool) -> alt.LayerChart:
    xs = alt.X(f"{x}:Q", title=f"capacity ({unit})", scale=alt.Scale(type="log" if log else "linear"))
    y = alt.Y("token_hit_rate:Q", title="token hit rate", axis=alt.Axis(format=".0%"))
    tip = [c for c in TOOLTIP if c in view]
    layers = [alt.Chart(view).mark_line(point=True).encode(
        x=xs, y=y, color=alt.Color("policy:N", title="policy"), strokeDash=alt.StrokeDash("model:N"),
        tooltip=tip)]
    if not curve.empty:
        layers.append(alt.Chart(curve).mark_line(opacity=0.6).encode(
            x=xs, y=y, color=alt.Color("policy:N"), strokeDash=alt.StrokeDash("model:N"),
            tooltip=[c for c in TOOLTIP if c in curve]))
    achievable = pd.DataFrame([{"model": m["model"], "achievable": m.get("achievable_token_hit_rate")}
                               for m in f.document.get("models", []) if m["model"] in models])
    if not achievable.empty:
        layers.append(alt.Chart(achievable).mark_rule(strokeDash=[4, 4], color="gray").encode(
            y="achievable:Q", tooltip=["model", alt.Tooltip("achievable:Q", format=".2%",
                                                            title="achievable (infinite cache)")]))
    return alt.layer(*layers).interactive()


def _answers(m: dict, policies: list[str]) -> None:
    st.subheader(f"{m['model']}: capacity to reach a share of the achievable "
                 f"{m.get('achievable_token_hit_rate') or 0:.2%}")
    rows = [{"policy": a["policy"], "share": f"{a['percent']}%", "blocks": a.get("capacity_blocks"),
             "tokens": a.get("capacity_tokens"),
             "GiB": None if a.get("capacity_bytes") is None else round(a["capacity_bytes"] / 2**30, 4),
             "exact": a.get("exact"), "in words": a.get("words")}
            for a in m.get("answers", []) if a["policy"] in policies]
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")

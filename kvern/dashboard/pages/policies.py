"""Policies: the comparison chart of a compare/replay run, interactive (hover for exact values,
choose models, policies, the metric and the capacity axis)."""

from __future__ import annotations

from collections.abc import Sequence

import altair as alt
import pandas as pd
import streamlit as st

from kvern.dashboard.data import summary_frame
from kvern.dashboard.widgets import log_axis, pick_run
from kvern.report.folder import ReportFolder, best_row

TITLE = "Policies"
URL = "policies"
METRICS = {"token hit rate": "token_hit_rate", "request hit rate": "request_hit_rate",
           "prefill time saved (s)": "time_saved_s", "cached tokens": "cached_tokens",
           "gap to Belady": "gap_to_belady"}
TOOLTIP = ["model", "policy_label", "capacity", "capacity_blocks", "token_hit_rate", "request_hit_rate",
           "cached_tokens", "prompt_tokens", "time_saved_s", "gap_to_belady"]


def render(runs: Sequence[ReportFolder]) -> None:
    st.title("Policies")
    f = pick_run(runs, ("compare", "replay"), "policies_run", "compare or replay run", "compare")
    if f is None:
        return
    df = summary_frame(f)
    if df.empty:
        st.warning("this run has no summary rows (interrupted before the first simulation finished)")
        return
    models = list(dict.fromkeys(df["model"]))
    c1, c2, c3 = st.columns(3)
    chosen_models = c1.multiselect("models", models, default=models[:1], key="policies_models")
    policies = list(dict.fromkeys(df["policy"]))
    chosen_policies = c2.multiselect("policies", policies, default=policies, key="policies_policies")
    metric_name = c3.selectbox("metric", list(METRICS), key="policies_metric")
    metric = METRICS[metric_name or "token hit rate"]
    if metric not in df or df[metric].isna().all():
        st.info(f"{metric_name}: not in this run (the model's geometry is unknown)")
        return
    view = df[df["model"].isin(chosen_models) & df["policy"].isin(chosen_policies)]
    if view.empty:
        st.info("choose at least one model and one policy")
        return
    _best_line(view)
    st.altair_chart(_bars(view, metric, metric_name or metric), width="stretch")
    if view["capacity_blocks"].nunique() > 1:
        log = log_axis("policies_axis")
        st.altair_chart(_lines(view, metric, metric_name or metric, log), width="stretch")
    cols = [c for c in TOOLTIP if c in view] + [c for c in ("flops_saved_ratio", "unschedulable_requests")
                                                 if c in view]
    st.dataframe(view[cols], hide_index=True, width="stretch")


def _best_line(view: pd.DataFrame) -> None:
    parts = []
    for (model, cap), g in view.groupby(["model", "capacity"], sort=False):
        b = best_row(g.to_dict("records"))
        if b is not None:
            parts.append(f"{model} @ {cap}: **{b['policy_label']}** {b['token_hit_rate']:.2%}")
    st.markdown("Best online policy by token hit rate — " + "; ".join(parts))


def _axis_format(metric: str) -> str:
    return ".0%" if metric.endswith("rate") or metric == "gap_to_belady" else ",.4~g"


def _bars(view: pd.DataFrame, metric: str, title: str) -> alt.Chart:
    order = list(dict.fromkeys(view.sort_values("capacity_blocks")["capacity"]))
    chart = alt.Chart(view).mark_bar().encode(
        x=alt.X("capacity:N", sort=order, title="capacity", axis=alt.Axis(labelAngle=0)),
        xOffset=alt.XOffset("policy_label:N", sort=list(dict.fromkeys(view["policy_label"]))),
        y=alt.Y(f"{metric}:Q", title=title, axis=alt.Axis(format=_axis_format(metric))),
        color=alt.Color("policy_label:N", title="policy"),
        tooltip=[c for c in TOOLTIP if c in view],
    )
    if view["model"].nunique() > 1:
        chart = chart.properties(width=320).facet(column=alt.Column("model:N", title=None))
    return chart


def _lines(view: pd.DataFrame, metric: str, title: str, log: bool) -> alt.Chart:
    return alt.Chart(view).mark_line(point=True).encode(
        x=alt.X("capacity_blocks:Q", title="capacity (blocks)",
                scale=alt.Scale(type="log" if log else "linear")),
        y=alt.Y(f"{metric}:Q", title=title, axis=alt.Axis(format=_axis_format(metric))),
        color=alt.Color("policy_label:N", title="policy"),
        strokeDash=alt.StrokeDash("model:N", title="model"),
        tooltip=[c for c in TOOLTIP if c in view],
    )

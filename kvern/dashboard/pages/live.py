"""Live: a running ``kvern proxy`` seen through its SQLite store, refreshed every few seconds.

Requests per minute, predicted against server-reported token hit rate over time, TTFT and
proxy overhead percentiles, per model, and how far the analytics are behind. The store is read
read-only (``data.read_store``); only the part below the controls reruns on the timer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

from kvern.dashboard.data import LiveStore, live_lag, live_latency, live_minutes, live_models, read_store

TITLE = "Live"
URL = "live"
INPUT = "store"
"""What ``render`` takes: the store path of ``kvern dashboard --store FILE`` (None without)."""
REFRESH_S = 3
WINDOWS: dict[str, float | None] = {"15 min": 900, "1 hour": 3600, "6 hours": 6 * 3600, "whole run": None}
HINT = ("`kvern dashboard --store proxy-logs/analytics.sqlite` shows the store of "
        "`kvern proxy --log-dir proxy-logs` (`<log-dir>/analytics.sqlite`, or the proxy's `--store FILE`).")


def render(store: Path | None) -> None:
    st.title("Live")
    if store is None:
        st.info("No proxy store given. " + HINT)
        return
    runs = read_store(store, window_s=0).runs
    c1, c2, c3 = st.columns([4, 2, 2])
    window = c1.radio("window", list(WINDOWS), index=1, horizontal=True, key="live_window") or "1 hour"
    run = (c2.selectbox("proxy run", runs[::-1], key="live_run") if len(runs) > 1
           else (runs[0] if runs else None))
    auto = c3.toggle(f"refresh every {REFRESH_S} s", value=True, key="live_auto")

    @st.fragment(run_every=REFRESH_S if auto else None)
    def live() -> None:
        show(read_store(store, run, WINDOWS[window]), window)

    live()


def show(s: LiveStore, window: str) -> None:
    """Everything below the controls, from one read of the store."""
    if s.error:
        st.warning(f"{s.error}. {HINT}")
        return
    if s.run is None:
        st.info(f"{s.path.name} holds no proxy run yet: it appears here once `kvern proxy` starts.")
        return
    lag = live_lag(s)
    st.caption(_caption(s, lag))
    models = live_models(s)
    overall = models.iloc[0] if not models.empty else None
    cols = st.columns(4)
    cols[0].metric("requests", f"{int(overall['requests']):,}" if overall is not None else "0")
    cols[1].metric("failed", f"{int(overall['failed']):,}" if overall is not None else "0")
    cols[2].metric("predicted token hit rate", _percent(overall, "predicted hit rate"))
    cols[3].metric("server-reported token hit rate", _percent(overall, "server hit rate"))
    cols = st.columns(4)
    for col, (name, key) in zip(cols, (("TTFT p50", "TTFT p50 ms"), ("TTFT p99", "TTFT p99 ms"),
                                       ("proxy overhead p50", "overhead p50 ms"),
                                       ("proxy overhead p99", "overhead p99 ms")), strict=True):
        col.metric(f"{name} ({window})", _ms(overall, key))
    if lag["prediction_error"]:
        st.warning(f"No predictions: {lag['prediction_error']}")
    if models.empty:
        st.info("No request analyzed yet in this run: send some through the proxy.")
        _lag(lag)
        return
    st.dataframe(models, hide_index=True, width="stretch", column_config={
        "predicted hit rate": st.column_config.NumberColumn(format="percent"),
        "server hit rate": st.column_config.NumberColumn(format="percent"),
        **{c: st.column_config.NumberColumn(format="%.1f") for c in models.columns if c.endswith(" ms")}})
    minutes = live_minutes(s)
    left, right = st.columns(2)
    with left:
        st.markdown("**Requests per minute**")
        st.altair_chart(_requests_chart(minutes), width="stretch")
    with right:
        st.markdown("**Token hit rate: predicted (solid) and server-reported (dashed)**")
        st.altair_chart(_rate_chart(minutes), width="stretch")
    latency = live_latency(s)
    left, right = st.columns(2)
    for col, metric, title in ((left, "TTFT", "TTFT (ms)"), (right, "overhead", "Proxy overhead (ms)")):
        with col:
            st.markdown(f"**{title}, p50 and p99 per minute**")
            part = latency[latency["metric"] == metric]
            if part.empty:
                st.caption("no served request in the window")
            else:
                st.altair_chart(_latency_chart(part, title), width="stretch")
    _lag(lag)


def _caption(s: LiveStore, lag: dict[str, Any]) -> str:
    st_ = s.settings
    parts = [f"run {s.run}", f"upstream {st_.get('upstream', '?')}",
             f"prediction {st_.get('profile', '?')} · {st_.get('policy', '?')} · {st_.get('capacity', '?')}"]
    if s.latest_s is not None:
        parts.append(f"latest request {pd.Timestamp(s.latest_s, unit='s'):%H:%M:%S} UTC")
    ago = lag["last_write_s_ago"]
    if ago is not None and ago > 10:
        parts.append(f"**not live**: the proxy's analytics last wrote {ago:,.0f} s ago")
    return " · ".join(parts)


def _lag(lag: dict[str, Any]) -> None:
    st.subheader("Analytics lag")
    cols = st.columns(4)
    cols[0].metric("analyzed", f"{lag['analyzed']:,}")
    cols[1].metric("queued in the worker", f"{lag['queued']:,}")
    cols[2].metric("request end → analyzed, p50", _seconds(lag["delay_p50_s"]))
    cols[3].metric("request end → analyzed, max", _seconds(lag["delay_max_s"]))
    st.caption(f"{lag['caught_up']:,} read back from the log after the queue was full, {lag['lost']:,} lost; "
               "the proxy's /health has the exact count behind (analytics_lag).")


def _percent(row: pd.Series | None, key: str) -> str:
    v = None if row is None else row[key]
    return "—" if v is None or pd.isna(v) else f"{v:.2%}"


def _ms(row: pd.Series | None, key: str) -> str:
    v = None if row is None else row[key]
    return "—" if v is None or pd.isna(v) else f"{v:,.1f} ms"


def _seconds(v: float | None) -> str:
    return "—" if v is None else f"{v:,.2f} s"


def _time_axis() -> alt.X:
    return alt.X("time:T", title="minute (UTC)", axis=alt.Axis(format="%H:%M"))


def _requests_chart(df: pd.DataFrame) -> alt.Chart:
    one = df[df["source"] == "predicted"]
    return alt.Chart(one).mark_line(point=True).encode(
        x=_time_axis(), y=alt.Y("requests:Q", title="requests"),
        color=alt.Color("model:N"), tooltip=["time:T", "model:N", "requests:Q"]).properties(height=260)


def _rate_chart(df: pd.DataFrame) -> alt.Chart:
    return alt.Chart(df.dropna(subset=["token hit rate"])).mark_line(point=True).encode(
        x=_time_axis(),
        y=alt.Y("token hit rate:Q", axis=alt.Axis(format=".0%"), scale=alt.Scale(domain=[0, 1])),
        color=alt.Color("model:N"),
        strokeDash=alt.StrokeDash("source:N", sort=["predicted", "server-reported"]),
        tooltip=["time:T", "model:N", "source:N", alt.Tooltip("token hit rate:Q", format=".2%")],
    ).properties(height=260)


def _latency_chart(df: pd.DataFrame, title: str) -> alt.Chart:
    return alt.Chart(df).mark_line(point=True).encode(
        x=_time_axis(), y=alt.Y("ms:Q", title=title), color=alt.Color("model:N"),
        strokeDash=alt.StrokeDash("percentile:N"),
        tooltip=["time:T", "model:N", "percentile:N", alt.Tooltip("ms:Q", format=",.1f")],
    ).properties(height=220)

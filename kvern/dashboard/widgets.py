"""Streamlit pieces the pages share: choosing a run, an axis scale, a metric."""

from __future__ import annotations

from collections.abc import Sequence

import streamlit as st

from kvern.dashboard.data import label
from kvern.report.folder import ReportFolder

HINTS = {
    "compare": "kvern compare TRACE --policies lru,lfu,belady --capacity 64,256,1024 -o reports/NAME",
    "sweep": "kvern sweep TRACE -o reports/NAME",
    "analyze": "kvern analyze TRACE -o reports/NAME",
}


def pick_run(runs: Sequence[ReportFolder], kinds: Sequence[str], key: str, what: str,
             hint: str) -> ReportFolder | None:
    """A run of one of ``kinds`` chosen by the user; None (with how to make one) when there is none."""
    chosen = [f for f in runs if f.kind in kinds]
    if not chosen:
        st.info(f"No {what} among the report folders. `{HINTS[hint]}` writes one.")
        return None
    i = st.selectbox("run", range(len(chosen)), format_func=lambda i: label(chosen[i]), key=key)
    f = chosen[i or 0]
    st.caption(f.title + (" · **partial** (interrupted run)" if f.partial else ""))
    return f


def log_axis(key: str, default_log: bool = True) -> bool:
    choice = st.radio("capacity axis", ["log", "linear"], index=0 if default_log else 1, horizontal=True,
                      key=key)
    return choice == "log"

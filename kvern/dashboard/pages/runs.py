"""Runs: every report folder found, and two of them side by side (e.g. before/after a change)."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import streamlit as st

from kvern.dashboard.data import label, runs_table
from kvern.report.folder import ReportFolder
from kvern.report.html import format_value

TITLE = "Runs"
URL = "runs"


def render(runs: Sequence[ReportFolder]) -> None:
    st.title("Runs")
    if not runs:
        st.info("No report folders found. `kvern compare TRACE -o reports/NAME` (or sweep, analyze, "
                "gate -o, replay) writes one.")
        return
    st.dataframe(runs_table(runs).drop(columns="folder"), hide_index=True, width="stretch")
    st.subheader("Side by side")
    if len(runs) < 2:
        st.caption("one run only: a second appears here to compare with")
    pick = st.columns(2)
    a = pick[0].selectbox("run A", range(len(runs)), format_func=lambda i: label(runs[i]), key="run_a")
    b = pick[1].selectbox("run B", range(len(runs)), index=min(1, len(runs) - 1),
                          format_func=lambda i: label(runs[i]), key="run_b")
    left, right = runs[a or 0], runs[b or 0]
    cols = st.columns(2)
    for col, run, other in ((cols[0], left, None), (cols[1], right, left)):
        with col:
            st.markdown(f"**{run.title}**")
            st.caption(f"folder {run.name}" + (" · partial" if run.partial else ""))
            base = other.headline() if other is not None else {}
            for k, v in run.headline().items():
                st.metric(k, format_value(k, v), delta=_delta(k, v, base.get(k)))
    diff = _settings_diff(left, right)
    st.markdown("**Settings**" + (" (differences first)" if not diff.empty else ""))
    st.dataframe(diff, hide_index=True, width="stretch")


def _delta(key: str, v: object, base: object) -> str | None:
    if not isinstance(v, int | float) or not isinstance(base, int | float) or isinstance(v, bool):
        return None
    d = v - base
    return f"{d * 100:+.2f} pt" if "rate" in key else f"{d:+,.4g}"


def _settings_diff(a: ReportFolder, b: ReportFolder) -> pd.DataFrame:
    sa, sb = a.settings, b.settings
    rows = []
    for k in sorted(set(sa) | set(sb)):
        va, vb = _text(sa.get(k)), _text(sb.get(k))
        rows.append({"setting": k, "run A": va, "run B": vb, "differs": va != vb})
    df = pd.DataFrame(rows, columns=["setting", "run A", "run B", "differs"])
    return df.sort_values(["differs", "setting"], ascending=[False, True], kind="stable")


def _text(v: object) -> str:
    import json

    return json.dumps(v, sort_keys=True) if isinstance(v, dict | list) else ("—" if v is None else str(v))

"""Prefix tree: an analyze run's hot prefixes as an expandable tree (reuses, depth, tokens
saved; prompt text only when the run was made with ``--show-text``)."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import streamlit as st

from kvern.dashboard.widgets import pick_run
from kvern.report.folder import ReportFolder
from kvern.report.html import hot_prefix_tree

TITLE = "Prefix tree"
URL = "prefix-tree"
_STYLE = ("<style>.tree details{margin:2px 0 2px 16px}.tree summary{cursor:pointer}"
          ".tree pre{white-space:pre-wrap;max-height:260px;overflow:auto;font-size:12px}</style>")


def render(runs: Sequence[ReportFolder]) -> None:
    st.title("Prefix tree")
    f = pick_run(runs, ("analyze",), "tree_run", "analyze run", "analyze")
    if f is None:
        return
    hot = f.document.get("hot_prefixes", [])
    if not hot:
        st.info("this run found no hot prefixes (or ran with --top-prefixes 0)")
        return
    models = list(dict.fromkeys(h["model"] for h in hot))
    chosen = st.multiselect("models", models, default=models, key="tree_models")
    shown = [h for h in hot if h["model"] in chosen]
    has_text = any("text" in h for h in shown)
    st.caption(f"{len(shown)} hot prefixes · tokens saved = reuses × prefix tokens"
               + ("" if has_text else " · rerun analyze with --show-text to see their text"))
    st.html(_STYLE + hot_prefix_tree(shown))
    cols = ["model", "tokens_saved", "reuses", "depth_tokens", "key", "parent"]
    cols += ["text"] if has_text else []
    st.dataframe(pd.DataFrame(shown).reindex(columns=cols), hide_index=True, width="stretch")

"""The Streamlit entry of ``kvern dashboard``: ``streamlit run app.py -- REPORTS_DIR ...``.

Every rerun reads the report folders afresh (a few small JSON files), so a run written while
the dashboard is open appears on the next interaction. Pages are registered in
``kvern.dashboard.pages.PAGES``.
"""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path

import streamlit as st

from kvern.dashboard.data import load_runs
from kvern.dashboard.pages import PAGES


def main(dirs: list[str]) -> None:
    st.set_page_config(page_title="kvern", layout="wide")
    errors: list[str] = []
    runs = load_runs(dirs, errors)
    pages = [st.Page(partial(p.render, runs), title=p.TITLE, url_path=p.URL, default=i == 0)
             for i, p in enumerate(PAGES)]
    nav = st.navigation(pages)
    st.sidebar.caption(f"{len(runs)} report folder(s) in " + ", ".join(Path(d).name or d for d in dirs))
    for e in errors:
        st.sidebar.warning(e)
    nav.run()


if __name__ == "__main__":  # streamlit runs this file as __main__; importing it draws nothing
    main(sys.argv[1:] or ["reports"])

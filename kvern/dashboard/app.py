"""The Streamlit entry of ``kvern dashboard``: ``streamlit run app.py -- [--store FILE] REPORTS_DIR ...``.

Every rerun reads the report folders afresh (a few small JSON files), so a run written while
the dashboard is open appears on the next interaction; the Live page reads the proxy's store
on its own timer. Pages are registered in ``kvern.dashboard.pages.PAGES``.
"""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

import streamlit as st

from kvern.dashboard.data import load_runs
from kvern.dashboard.pages import PAGES


def main(dirs: list[str], store: str | None = None) -> None:
    st.set_page_config(page_title="kvern", layout="wide")
    errors: list[str] = []
    runs = load_runs(dirs, errors)
    store_path = Path(store) if store else None
    default = "live" if store_path is not None else PAGES[0].URL  # --store: open on what was asked for
    pages = [st.Page(partial(p.render, store_path if getattr(p, "INPUT", "runs") == "store" else runs),
                     title=p.TITLE, url_path=p.URL, default=default == p.URL) for p in PAGES]
    nav = st.navigation(pages)
    if dirs:
        st.sidebar.caption(f"{len(runs)} report folder(s) in " + ", ".join(Path(d).name or d for d in dirs))
    if store_path is not None:
        st.sidebar.caption(f"proxy store {store_path.name}")
    for e in errors:
        st.sidebar.warning(e)
    nav.run()


def parse(argv: list[str]) -> tuple[list[str], str | None]:
    """The app's arguments (what ``launch.streamlit_command`` puts after ``--``)."""
    p = argparse.ArgumentParser(prog="kvern-dashboard")
    p.add_argument("--store")
    p.add_argument("dirs", nargs="*")
    a = p.parse_args(argv)
    return a.dirs, a.store


if __name__ == "__main__":  # streamlit runs this file as __main__; importing it draws nothing
    _dirs, _store = parse(sys.argv[1:])
    main(_dirs or ([] if _store else ["reports"]), _store)

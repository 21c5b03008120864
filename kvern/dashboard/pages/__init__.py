"""The dashboard's pages, in sidebar order. A page is a module with ``TITLE``, ``URL`` and
``render(runs)``; adding one is a module and a line here."""

from __future__ import annotations

from types import ModuleType

from kvern.dashboard.pages import breakers, capacity, policies, prefix_tree, runs

PAGES: list[ModuleType] = [runs, policies, capacity, prefix_tree, breakers]
# Live (the proxy's SQLite store, refreshed every few seconds) will be pages/live.py, listed here
# after `runs`; it takes the store path that `kvern dashboard --store FILE` will pass.

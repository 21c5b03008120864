"""The dashboard's pages, in sidebar order. A page is a module with ``TITLE``, ``URL`` and
``render(runs)``; adding one is a module and a line here. A page whose ``INPUT`` is ``"store"``
(Live) is given the proxy store of ``kvern dashboard --store FILE`` (or None) instead of the runs."""

from __future__ import annotations

from types import ModuleType

from kvern.dashboard.pages import breakers, capacity, live, policies, prefix_tree, runs

PAGES: list[ModuleType] = [runs, live, policies, capacity, prefix_tree, breakers]

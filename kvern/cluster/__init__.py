"""Fleets: N replicas of an engine profile behind a router, with offload tiers (docs/cluster.md).

``run_cluster`` (``run.py``) runs every setting; ``fleet.run_setting`` one of them; the
routers are in ``routers/`` (one file each, ``ROUTERS``), the offload tiers in ``tiers.py``,
the time model in ``timing.py``, what routers see in ``view.py``, the tables in ``metrics.py``.
"""

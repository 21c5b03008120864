"""The simulator: policies, engine profiles, capacities, runs (docs/architecture.md §3–7).

The engines' loops are compiled by numba and cached on disk (``kvern.infra.compiled``).
"""

from __future__ import annotations

from kvern.infra.compiled import use_kvern_cache

use_kvern_cache()

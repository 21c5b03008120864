"""Cache capacities from the command line (docs/architecture.md §5, §11) into blocks.

Grammar, one spec per comma-separated item: ``1000`` or ``1000 blocks`` (blocks, the
default), ``64k tok`` / ``64ktok`` (tokens), ``8GiB`` / ``512MB`` (bytes of KV); ``k``/``M``/``G``
multiply by 10³/10⁶/10⁹ (``Ki``/``Mi``/``Gi`` by 2¹⁰…). A range ``1k:1M`` (a unit after the
upper end applies to both ends) gives ``points`` log-spaced capacities for sweeps. ``G`` and
``T`` without a unit are refused: ``8G`` is far more often meant as 8 GB of KV than as eight
billion blocks, and the message names the readings.

Memory is bounded by the trace, never by the capacity asked for: ``useful_capacity`` is the
size beyond which a profile's cache never evicts, and a larger capacity is simulated at that
size (the same hits, the asked capacity in the report) and said so (docs/architecture.md §5).

Tokens become blocks by flooring to whole blocks of the stream's ``block_size``; bytes go
through the model's KV bytes per token (2 × layers × kv_heads × head_dim × dtype bytes), so
a byte capacity needs ``models.<name>.geometry`` in the config.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from kvern.infra.config import Config
from kvern.infra.console import Output
from kvern.infra.errors import UsageError
from kvern.ingest.stream import BlockStream

Unit = Literal["blocks", "tokens", "bytes"]

_MULT = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12,
         "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}
_ITEM = re.compile(
    r"^\s*(?P<num>\d+(?:\.\d+)?)\s*(?P<mult>ki|mi|gi|ti|k|m|g|t)?\s*(?P<unit>blocks?|tok(?:ens?)?|b|bytes?)?\s*$",
    re.IGNORECASE)
RANGE_POINTS = 12
"""Capacities a range (``1k:1M``) spans in ``replay``/``compare``, which take no ``--points``."""
MAX_CAPACITY = 2**53
"""Largest capacity value accepted in any unit (exact as a float; far beyond any cache)."""


@dataclass(frozen=True, slots=True)
class CapacitySpec:
    """One capacity as the user wrote it: ``value`` in ``unit``."""

    value: int
    unit: Unit
    label: str

    def blocks(self, block_size: int, kv_bytes_per_token: int | None, model: str) -> int:
        if self.unit == "blocks":
            n = self.value
        elif self.unit == "tokens":
            n = self.value // block_size
        else:
            if kv_bytes_per_token is None:
                raise UsageError(f"--capacity {self.label}: a capacity in bytes needs the KV geometry of "
                                 f"model {model!r}; set models.{model}.geometry in the config")
            n = self.value // (kv_bytes_per_token * block_size)
        if n < 1:
            raise UsageError(f"--capacity {self.label}: less than one block of {block_size} tokens "
                             f"for model {model!r}")
        return int(n)


def parse_capacity(text: str, points: int | None = None) -> list[CapacitySpec]:
    """Parse ``"1000,10000"``, ``"64k tok"``, ``"8GiB"`` or a range ``"1k:1M"`` (``points`` specs)."""
    if not text or not text.strip():
        raise UsageError("--capacity: empty")
    out: list[CapacitySpec] = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        if ":" in item:
            out.extend(_range(item, points or RANGE_POINTS))
        else:
            out.append(_one(item, None))
    seen: dict[tuple[int, str], CapacitySpec] = {}
    for spec in out:
        seen.setdefault((spec.value, spec.unit), spec)
    return list(seen.values())


def _one(item: str, default_unit: Unit | None) -> CapacitySpec:
    m = _ITEM.match(item)
    if not m:
        raise UsageError(f"--capacity: cannot read {item!r} (try 1000, '64k tok', 8GiB or 1k:1M)")
    mult_s = (m.group("mult") or "").lower()
    unit_s = (m.group("unit") or "").lower()
    if unit_s in ("b", "byte", "bytes"):
        unit: Unit = "bytes"
    elif unit_s.startswith("tok"):
        unit = "tokens"
    elif unit_s.startswith("block"):
        unit = "blocks"
    else:
        if default_unit is None and mult_s in ("g", "t"):
            num, big = m.group("num"), m.group("mult")
            raise UsageError(
                f"--capacity {item}: ambiguous unit; write {num}{big}iB or {num}{big}B for bytes of KV, "
                f"'{num}{big} tok' for tokens, or '{num}{big} blocks' for blocks")
        unit = default_unit or ("bytes" if mult_s.endswith("i") else "blocks")
    value = float(m.group("num")) * _MULT[mult_s]
    if value < 1 or not value.is_integer():
        raise UsageError(f"--capacity: {item!r} must be a whole, positive number of {unit}")
    if value > MAX_CAPACITY:
        raise UsageError(f"--capacity: {item!r} is beyond any cache (at most {MAX_CAPACITY:.3g} {unit})")
    return CapacitySpec(int(value), unit, item)


def _range(item: str, points: int) -> list[CapacitySpec]:
    lo_s, _, hi_s = item.partition(":")
    hi = _one(hi_s, None)
    lo = _one(lo_s, hi.unit)
    if lo.unit != hi.unit:
        raise UsageError(f"--capacity {item}: both ends need the same unit")
    if lo.value >= hi.value:
        raise UsageError(f"--capacity {item}: the range must go from small to large")
    if points < 2:
        raise UsageError(f"--points: {points}; a range needs at least 2 points")
    values = np.unique(np.round(np.geomspace(lo.value, hi.value, points)).astype(np.int64))
    suffix = {"blocks": "", "tokens": " tok", "bytes": " B"}[hi.unit]
    return [CapacitySpec(int(v), hi.unit, f"{int(v)}{suffix}") for v in values]


def useful_capacity(stream: BlockStream, profile: str) -> int | None:
    """Blocks beyond which ``profile``'s cache over ``stream`` never evicts, so that any larger
    capacity gives the same hits: every key once, a second copy per request (vLLM's
    block-aligned repeat), the running request, one more; never more than the accesses + 1.
    None for ``llamacpp``, whose capacity is a token budget that allocates nothing."""
    if profile == "llamacpp":
        return None
    longest = int(np.diff(stream.req_offsets).max()) if stream.num_requests else 0
    return min(len(stream.block_ids), stream.num_unique + stream.num_requests + longest) + 1


def say_capacity_bound(stream: BlockStream, profile: str, caps: Sequence[tuple[str, int]],
                       out: Output) -> dict[str, Any] | None:
    """Warn once per model when capacities exceed what its trace can ever fill: they run at
    that size (``kvern.sim.simulate``), with the same hits as any larger cache. Returns the
    note for the run's settings (``capacity_bounded`` in summary.json), None when none is over."""
    bound = useful_capacity(stream, profile)
    over = [label for label, blocks in caps if bound is not None and blocks > bound]
    if not over:
        return None
    out.info(f"note: --capacity {', '.join(over[:3])}{' …' if len(over) > 3 else ''}: more than the "
             f"{bound:,} blocks model {stream.model!r} can ever fill in this trace; simulated as "
             f"{bound:,} blocks, where nothing is evicted (the same hits as any larger cache)")
    return {"model": stream.model, "capacities": over, "simulated_as_blocks": bound}


def capacity_blocks(specs: list[CapacitySpec], cfg: Config, model: str, block_size: int) -> list[int]:
    """Each spec in blocks of ``block_size`` tokens for ``model`` (bytes via its geometry)."""
    geometry = cfg.model(model).geometry
    per_token = None if geometry is None else geometry.kv_bytes_per_token
    return [spec.blocks(block_size, per_token, model) for spec in specs]


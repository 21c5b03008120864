"""followup: evict what is least likely to be followed up soon, learned online (docs/architecture.md §4).

Reuse in a conversation trace is the next turn of the same conversation, minutes later; later turns
are followed up more often than first ones, and a partial last block is almost never reused. So:

* **Structure, at arrival.** A request whose leading run of already-seen blocks is at least two
  blocks long *extends* the latest earlier request that held the deepest of them (one shared
  block is a system prompt, not a conversation); its turn is that request's turn + 1 (0 when it
  extends none). Its class is (turn, prompt length).
* **Hazard, learned as the trace streams.** Once a request is ``horizon_s`` old its outcome is
  known (was it extended within the horizon?); per class the counts give the odds of a follow-up,
  shrunk towards the pooled rate by a prior of ``prior`` requests, refitted every
  ``refit_every`` requests. Only the past is used: an outcome counts once its horizon has passed.
* **Score.** If the chance of a follow-up decays exponentially with age (time constant
  ``tau_s``), comparing log-odds ``logit p_c − age/τ`` ranks leaves the same at every moment, so a
  block's priority at its last touch, ``arrival + τ · logit p_c``, never needs updating (the lazy
  heap stays valid): LRU by arrival time, shifted by how likely the class is to continue. Before
  any outcome is known all classes share the prior and the order is LRU's.
* **Partial last blocks first** (``partial_first``): they are a request's leaf and almost never
  reused, so dropping them frees a block and exposes the reusable full block above.

State: per entry nothing; per request its class, the request it extends and when it was first
extended (three numbers); per class two counts and the fitted odds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numba
import numpy as np

from kvern.ingest.stream import BlockStream
from kvern.sim.policies.base import Policy, PolicyContext, PolicyState

TURNS = 9
"""Turn classes 0..8 (8 = eighth turn or later)."""
TOKEN_EDGES = np.array([2048, 4096, 8192, 16384], dtype=np.int64)
"""Prompt-length classes, in tokens."""
CLASSES = TURNS * (len(TOKEN_EDGES) + 1)
PARTIAL_OFFSET = 1.0e9
"""Seconds subtracted from a partial tail's priority: it goes before any full block."""
# scalars
TAU, HORIZON, PRIOR, REFIT, LAST_T, MATURE, PARTIAL, SINCE_FIT = range(8)
# table layout: [0, C) fitted log-odds, [C, 2C) outcomes, [2C, 3C) follow-ups
LOGIT, N_ALL, N_FOL = 0, CLASSES, 2 * CLASSES


@numba.njit(cache=True)
def _extends(offsets, ids, prompt_tokens, block_size, num_unique):  # type: ignore[no-untyped-def]
    """Per request: the request it extends (-1: none) and its turn, from earlier requests only."""
    r_count = len(prompt_tokens)
    seen = np.zeros(num_unique, np.uint8)
    ends_at = np.full(num_unique, -1, np.int64)  # latest request holding each block
    parent = np.full(r_count, -1, np.int64)
    turn = np.zeros(r_count, np.int64)
    for r in range(r_count):
        lo, hi = offsets[r], offsets[r + 1]
        k = 0
        while lo + k < hi and seen[ids[lo + k]]:
            k += 1
        if k >= 2:
            parent[r] = ends_at[ids[lo + k - 1]]
            turn[r] = turn[parent[r]] + 1
        for j in range(lo, hi):
            seen[ids[j]] = 1
            ends_at[ids[j]] = r
    return parent, turn


def request_classes(stream: BlockStream) -> tuple[np.ndarray, np.ndarray]:
    """(class, extended request) of every request; each uses only the requests before it."""
    parent, turn = _extends(stream.req_offsets.astype(np.int64), stream.block_ids.astype(np.int64),
                            stream.prompt_tokens.astype(np.int64), int(stream.block_size), stream.num_unique)
    length = np.searchsorted(TOKEN_EDGES, stream.prompt_tokens.astype(np.int64), side="right")
    return np.minimum(turn, TURNS - 1) * (len(TOKEN_EDGES) + 1) + length, parent


@numba.njit(cache=True)
def _refit(s):  # type: ignore[no-untyped-def]
    tab = s.table
    prior = s.scalars[PRIOR]
    n_all = 0.0
    n_fol = 0.0
    for c in range(CLASSES):
        n_all += tab[N_ALL + c]
        n_fol += tab[N_FOL + c]
    base = (n_fol + 0.5) / (n_all + 1.0)
    for c in range(CLASSES):
        fol = tab[N_FOL + c] + prior * base
        rest = tab[N_ALL + c] - tab[N_FOL + c] + prior * (1.0 - base)
        tab[LOGIT + c] = np.log(fol / rest)


@numba.njit(cache=True)
def _arrive(s, t):  # type: ignore[no-untyped-def]
    """Request t arrived: note whom it extends, count the outcomes that became known, refit."""
    cls = s.access_i  # reused: per request class (see ``state``)
    arrival = s.block_f  # reused: per request arrival
    n = len(arrival)
    parent = s.entry_m[t, 0]
    if parent >= 0 and s.entry_m[parent, 1] < 0:
        s.entry_m[parent, 1] = t
    now = arrival[t]
    m = int(s.scalars[MATURE])
    while m < t and arrival[m] <= now - s.scalars[HORIZON]:
        c = cls[m]
        s.table[N_ALL + c] += 1.0
        f = s.entry_m[m, 1]
        if f >= 0 and arrival[f] <= arrival[m] + s.scalars[HORIZON]:
            s.table[N_FOL + c] += 1.0
        m += 1
    s.scalars[MATURE] = m
    s.scalars[SINCE_FIT] += 1.0
    if s.scalars[SINCE_FIT] >= s.scalars[REFIT]:
        s.scalars[SINCE_FIT] = 0.0
        _refit(s)
    s.scalars[LAST_T] = t
    return n


@numba.njit(cache=True, inline="always")
def touch(s, entry, block, t, occ, new):  # type: ignore[no-untyped-def]
    if t != s.scalars[LAST_T]:
        _arrive(s, t)
    p = s.block_f[t] + s.scalars[TAU] * s.table[LOGIT + s.access_i[t]]
    if s.scalars[PARTIAL] > 0.0 and s.entry_i[block] != 0:
        p -= PARTIAL_OFFSET
    return p, 0.0


@numba.njit(cache=True, inline="always")
def evicted(s, entry, block, p1):  # type: ignore[no-untyped-def]
    pass


class Followup(Policy):
    name = "followup"
    summary = "learned: least likely to be followed up soon (conversation turns)"
    code = 11
    defaults: ClassVar[Mapping[str, Any]] = {"tau_s": 300, "horizon_s": 300, "prior": 2, "refit_every": 64,
                                             "partial_first": 1}

    def state(self, ctx: PolicyContext) -> PolicyState:
        st = ctx.stream
        cls, parent = request_classes(st)
        per_request = np.full((st.num_requests, 2), -1, np.int64)  # [extends, first extended by]
        per_request[:, 0] = parent
        partial = (st.block_tokens < st.block_size).astype(np.int64)  # per block
        s = PolicyState.empty(1)
        # the generic arrays, by what this policy indexes them with: entry_i[block] = partial tail,
        # block_f[request] = arrival, access_i[request] = class, entry_m[request] = (extends,
        # first extended by), table = fitted log-odds and outcome counts per class
        s.scalars[TAU] = float(self.params["tau_s"])
        s.scalars[HORIZON] = float(self.params["horizon_s"])
        s.scalars[PRIOR] = float(self.params["prior"])
        s.scalars[REFIT] = float(self.params["refit_every"])
        s.scalars[LAST_T] = -1.0
        s.scalars[PARTIAL] = float(self.params["partial_first"])
        return s._replace(entry_i=np.ascontiguousarray(partial), block_f=st.arrival_s.astype(np.float64),
                          access_i=cls.astype(np.int64), entry_m=per_request, table=np.zeros(3 * CLASSES))

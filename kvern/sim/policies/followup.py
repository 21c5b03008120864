"""followup: evict the block with the least expected follow-up per block-second, learned online.

Reuse in a conversation trace is the next turn of the same conversation, usually one to five
minutes later, almost never within the first seconds. So a block's worth depends on its age: a
block a few seconds old still has most of its wait ahead (holding it costs much before it can pay),
one a minute old is near its likeliest follow-up, one twenty minutes old is probably dead. LRU
keeps exactly the young ones, which is why it does so badly at small capacities.

* **Structure, at arrival.** A request whose leading run of already-seen blocks is at least two
  blocks long *extends* the latest earlier request that held the deepest of them (one shared block
  is a system prompt, not a conversation); its turn is that request's turn + 1 (0 when it extends
  none). Its class is (turn, prompt length, pace: the gap since the request it extends).
* **Follow-up delays, learned as the trace streams.** Per class and age bin, a discrete hazard:
  of the requests that reached the bin's start without a follow-up, how many got one within the
  bin. A bin's counts take a request as soon as it is older than the bin's end (a censored,
  Kaplan–Meier estimate: young bins learn within seconds, without waiting for whole outcomes).
  Classes are many and thin, so each is shrunk (by ``prior`` requests) towards a proportional-
  hazards model, pooled hazard(age) × f_turn × f_length × f_pace, whose factors are observed over
  expected follow-ups; refitted every ``refit_every`` requests.
* **Score: the best follow-up rate ahead** (a Gittins index; cf. LHD's hit density, Beckmann et
  al., NSDI 2018): the most follow-ups per block-second of holding that keeping the block for some
  further time can buy, ``max_T P(follow-up in (a, a+T]) / E[block-seconds held]``. A young block
  scores low until its likely follow-up is near; a long-silent one scores low for good.
* **Lazy heap, exact ranking.** The key ``arrival + age + τ · log rate(age)`` (per class and bin,
  made non-decreasing in age, linear within a bin) equals ``now + τ · log rate`` for every block
  at once, so at any moment the order of keys is the order of rates (where a rate falls faster
  than ``e^(-age/τ)`` the key stays flat: LRU among those); since a block's key only grows as it
  ages, the key stored at its last touch is a lower bound, and ``on_pop`` re-reads the heap's top:
  if its key grew by more than ``step_s`` it goes back in, else it is the lowest rate and goes.
* **Partial last blocks first** (``partial_first``): they are a request's leaf and almost never
  reused, so dropping them frees a block and exposes the reusable full block above.

Before any outcome is known every key is the arrival time: LRU. State: per block its last request
and whether it is a partial tail (8 bytes); per request its class, the request it extends and the
first one extending it (the bounded history); per class × age bin two counts and the fitted key.

Tuned on the Mooncake conversation trace (``tau_s``, ``prior``, ``refit_every``); BENCHMARKS.md
reports it on every shipped trace.
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
GAP_EDGES = np.array([45.0, 120.0])
"""Pace classes: seconds since the extended request (a first turn has its own class)."""
PACES = len(GAP_EDGES) + 2
CLASSES = TURNS * (len(TOKEN_EDGES) + 1) * PACES
AGE_EDGES = np.array([0, 4, 8, 15, 25, 40, 60, 80, 100, 125, 150, 180, 220, 270, 330, 400, 500, 650,
                      850, 1100, 1400], dtype=np.float64)
"""Age bins in seconds (the last edge is the horizon: older blocks keep their last bin's key)."""
BINS = len(AGE_EDGES) - 1
PARTIAL_OFFSET = 1.0e9
"""Seconds subtracted from a partial tail's key: it goes before any full block."""
MIN_RISK = 20.0
"""Pooled requests a bin needs before its hazard counts (until then: the previous bin's)."""
# scalars
TAU, PRIOR, REFIT, LAST_T, PARTIAL, SINCE_FIT, FITTED, STEP = range(8)
# table layout (flat): [0, CB) keys, [CB, 2CB) at risk, [2CB, 3CB) follow-ups, then one
# maturation pointer per bin, the bin edges, and the refit's scratch (pooled hazard, factors,
# survival: the engines' loops allocate nothing)
CB = CLASSES * BINS
KEY, RISK, EVENT, PTR, EDGE = 0, CB, 2 * CB, 3 * CB, 3 * CB + BINS
LEVELS = max(TURNS, len(TOKEN_EDGES) + 1, PACES)
POOLED = EDGE + BINS + 1
FACTOR = POOLED + BINS
SURV = FACTOR + 3 * LEVELS
TABLE = SURV + BINS + 1


@numba.njit(cache=True)
def _extends(offsets, ids, prompt_tokens, block_size, num_unique):  # type: ignore[no-untyped-def]
    """Per request: the request it extends (-1: none) and its turn, from earlier requests only."""
    r_count = len(prompt_tokens)
    seen = np.zeros(num_unique, np.uint8)
    ends_at = np.full(num_unique, -1, np.int32)  # latest request holding each block
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
    # the block ids read in place (an int64 copy is 8 bytes per access: most of the policy's memory)
    parent, turn = _extends(stream.req_offsets.astype(np.int64), np.ascontiguousarray(stream.block_ids),
                            stream.prompt_tokens.astype(np.int64), int(stream.block_size), stream.num_unique)
    length = np.searchsorted(TOKEN_EDGES, stream.prompt_tokens.astype(np.int64), side="right")
    arrival = stream.arrival_s.astype(np.float64)
    gap = arrival - arrival[np.maximum(parent, 0)] if len(parent) else arrival
    pace = np.where(parent >= 0, 1 + np.searchsorted(GAP_EDGES, gap, side="right"), 0)
    return (np.minimum(turn, TURNS - 1) * (len(TOKEN_EDGES) + 1) + length) * PACES + pace, parent


@numba.njit(cache=True)
def _refit(s):  # type: ignore[no-untyped-def]
    """Hazards -> hit density per class and age bin -> keys (non-decreasing in age)."""
    tab = s.table
    tau = s.scalars[TAU]
    prior = s.scalars[PRIOR]
    pooled = tab[POOLED:FACTOR]
    pooled[:] = 0.0
    for i in range(BINS):
        risk = 0.0
        ev = 0.0
        for c in range(CLASSES):
            risk += tab[RISK + c * BINS + i]
            ev += tab[EVENT + c * BINS + i]
        if risk >= MIN_RISK:
            pooled[i] = ev / risk
        elif i > 0:
            pooled[i] = pooled[i - 1]
        else:
            return  # nothing known yet: keys stay 0 (LRU)
    s.scalars[FITTED] = 1.0
    # proportional hazards: pooled(age) x f_turn x f_length, each factor observed / expected events
    lengths = len(TOKEN_EDGES) + 1
    sizes = (TURNS, lengths, PACES)
    factor = tab[FACTOR:SURV].reshape((3, LEVELS))
    factor[:, :] = 1.0
    for _ in range(2):
        for d in range(3):
            for g in range(sizes[d]):
                ev = 0.0
                exp = 0.0
                for c in range(CLASSES):
                    level = (c // (lengths * PACES), (c // PACES) % lengths, c % PACES)
                    if level[d] != g:
                        continue
                    other = 1.0
                    for e in range(3):
                        if e != d:
                            other *= factor[e, level[e]]
                    for i in range(BINS):
                        ev += tab[EVENT + c * BINS + i]
                        exp += tab[RISK + c * BINS + i] * pooled[i] * other
                factor[d, g] = (ev + prior * 0.5) / (exp + prior * 0.5)  # shrunk towards 1
    surv = tab[SURV:TABLE]
    surv[:] = 0.0
    for c in range(CLASSES):
        surv[0] = 1.0
        model = (factor[0, c // (lengths * PACES)] * factor[1, (c // PACES) % lengths]
                 * factor[2, c % PACES])
        for i in range(BINS):
            risk = tab[RISK + c * BINS + i]
            lam = (tab[EVENT + c * BINS + i] + prior * min(pooled[i] * model, 0.999)) / (risk + prior)
            surv[i + 1] = surv[i] * (1.0 - lam)
        for i in range(BINS):  # the best rate of follow-ups per block-second from age i on
            hold = 0.0
            best = 1e-12
            for j in range(i, BINS):
                hold += (tab[EDGE + j + 1] - tab[EDGE + j]) * 0.5 * (surv[j] + surv[j + 1])
                best = max(best, (surv[i] - surv[j + 1]) / max(hold, 1e-12))
            tab[KEY + c * BINS + i] = tau * np.log(best)
        top = -np.inf
        for i in range(BINS):
            top = max(top, tab[EDGE + i] + tab[KEY + c * BINS + i])
            tab[KEY + c * BINS + i] = top


@numba.njit(cache=True)
def _arrive(s, t):  # type: ignore[no-untyped-def]
    """Request t arrived: note whom it extends, count the bins that became known, refit."""
    cls = s.access_i  # reused: per request class (see ``state``)
    arrival = s.block_f  # reused: per request arrival
    tab = s.table
    parent = s.entry_m[t, 0]
    if parent >= 0 and s.entry_m[parent, 1] < 0:
        s.entry_m[parent, 1] = t
    now = arrival[t]
    for i in range(BINS):
        lo = tab[EDGE + i]
        hi = tab[EDGE + i + 1]
        m = int(tab[PTR + i])
        while m < t and arrival[m] <= now - hi:
            f = s.entry_m[m, 1]
            delay = arrival[f] - arrival[m] if f >= 0 else np.inf
            if delay >= lo:
                tab[RISK + cls[m] * BINS + i] += 1.0
                if delay < hi:
                    tab[EVENT + cls[m] * BINS + i] += 1.0
            m += 1
        tab[PTR + i] = m
    s.scalars[SINCE_FIT] += 1.0
    if s.scalars[SINCE_FIT] >= s.scalars[REFIT]:
        s.scalars[SINCE_FIT] = 0.0
        _refit(s)
    s.scalars[LAST_T] = t


@numba.njit(cache=True, inline="always")
def _key(s, r, now):  # type: ignore[no-untyped-def]
    """Request r's blocks' key at time ``now``: linear between the bins' keys (LRU before any fit)."""
    age = now - s.block_f[r]
    i = 0
    while i + 1 < BINS and s.table[EDGE + i + 1] <= age:
        i += 1
    row = KEY + s.access_i[r] * BINS
    k = s.table[row + i]
    if i + 1 < BINS:
        lo = s.table[EDGE + i]
        w = (age - lo) / (s.table[EDGE + i + 1] - lo)
        k += max(w, 0.0) * (s.table[row + i + 1] - k)
    return s.block_f[r] + k


@numba.njit(cache=True, inline="always")
def touch(s, entry, block, t, occ, new):  # type: ignore[no-untyped-def]
    if t != s.scalars[LAST_T]:
        _arrive(s, t)
    partial = s.block_i[block] & 1
    s.block_i[block] = (t << 1) | partial
    if s.scalars[PARTIAL] > 0.0 and partial != 0:
        return s.block_f[t] - PARTIAL_OFFSET, 0.0
    return _key(s, t, s.block_f[t]), 0.0


@numba.njit(cache=True, inline="always")
def on_pop(s, entry, block, t, p1, p2):  # type: ignore[no-untyped-def]
    if s.scalars[FITTED] == 0.0:
        return False, p1, p2
    last = s.block_i[block]
    if s.scalars[PARTIAL] > 0.0 and last & 1 != 0:
        return False, p1, p2
    k = _key(s, last >> 1, s.block_f[t])
    if k > p1 + s.scalars[STEP]:  # it aged into a denser bin (or the fit moved): back in with its current key
        return True, k, p2
    return False, p1, p2


@numba.njit(cache=True, inline="always")
def evicted(s, entry, block, p1):  # type: ignore[no-untyped-def]
    pass


class Followup(Policy):
    name = "followup"
    summary = "learned: least expected follow-up per block-second (conversation turns, age)"
    code = 11
    second_key = False
    requeue_in_place = True
    defaults: ClassVar[Mapping[str, Any]] = {"tau_s": 20, "prior": 10, "refit_every": 16, "partial_first": 1,
                                             "step_s": 1}

    def state(self, ctx: PolicyContext) -> PolicyState:
        st = ctx.stream
        cls, parent = request_classes(st)
        per_request = np.full((max(st.num_requests, 1), 2), -1, np.int64)  # [extends, first extended by]
        per_request[: st.num_requests, 0] = parent
        # per block: its last request << 1 | 1 for a partial tail (one array, one cache miss for both)
        last_partial = (st.block_tokens < st.block_size).astype(np.int64)
        table = np.zeros(TABLE)
        table[EDGE:POOLED] = AGE_EDGES
        s = PolicyState.empty(1)
        # the generic arrays, by what this policy indexes them with: block_i[block] = its last
        # request << 1 | partial tail, block_f[request] = arrival, access_i[request] = class,
        # entry_m[request] = (extends, first extended by), table = keys, counts, pointers, edges
        s.scalars[TAU] = float(self.params["tau_s"])
        s.scalars[PRIOR] = float(self.params["prior"])
        s.scalars[REFIT] = float(self.params["refit_every"])
        s.scalars[LAST_T] = -1.0
        s.scalars[PARTIAL] = float(self.params["partial_first"])
        s.scalars[STEP] = float(self.params["step_s"])
        return s._replace(block_f=st.arrival_s.astype(np.float64), access_i=cls.astype(np.int64),
                          entry_m=per_request, block_i=np.ascontiguousarray(last_partial), table=table)

"""A compiled binary min-heap with lazy deletion, for the engines' evictable entries.

Rows are a struct of arrays, ordered lexicographically by ``(p1, p2, tie)``: the policy's
priority, then docs/architecture.md §4's tie-breaks packed in one int64, ``tie = (2³¹ - 1 -
depth) << 32 | id`` (deeper first, then the lower id). ``ver`` is the entry's version when the
row was pushed: a row is stale when the engine's version of its id moved on; engines skip stale
rows when they pop and drop them when they compact a full heap. A policy whose second key is
always 0 (``Policy.second_key``) gets a one-element ``p2`` and no second column.

An engine with two queues keeps two heaps in the same arrays: queue q's rows are
``[q·H, q·H + size[q])``; every function takes the queue's first row ``base``. Which of two
equal-key rows pops first is left to the heap; engines only act on current rows, of which
there is at most one per entry, so their results do not depend on it.

The functions are inlined into the engines' helpers: calling a compiled function with arrays
can cost reference counting (two atomic operations per array) on every call, which was most of
an engine's time.
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np

MAX_DEPTH = (1 << 31) - 1
ID_MASK = (1 << 32) - 1


class Heap(NamedTuple):
    """The rows of ``queues`` heaps of ``H`` rows each, and their lengths."""

    p1: np.ndarray
    """float64[Q·H]"""
    p2: np.ndarray
    """float64[Q·H], or float64[1] when the policy's second key is always 0."""
    tie: np.ndarray
    """int64[Q·H]: ``(MAX_DEPTH - depth) << 32 | id``."""
    ver: np.ndarray
    """int32[Q·H]"""
    size: np.ndarray
    """int64[Q]: rows in each queue's heap."""


def rows_for(bound: int) -> int:
    """Rows per queue for at most ``bound`` current entries: twice as many (a compaction then
    always frees half), and some slack."""
    return 2 * max(int(bound), 1) + 1024


def new_heap(queues: int, bound: int, second_key: bool = True) -> Heap:
    h = int(queues) * rows_for(bound)
    return Heap(np.zeros(h, np.float64), np.zeros(h if second_key else 1, np.float64), np.zeros(h, np.int64),
                np.zeros(h, np.int32), np.zeros(int(queues), np.int64))


@numba.njit(cache=True, inline="always")
def tie_of(depth, ident):  # type: ignore[no-untyped-def]
    return ((MAX_DEPTH - np.int64(depth)) << 32) | np.int64(ident)


@numba.njit(cache=True, inline="always")
def id_of(tie):  # type: ignore[no-untyped-def]
    return tie & ID_MASK


# The functions take the Heap's arrays one by one (``h.p1, h.p2, h.tie, h.ver, h.size``), not the
# NamedTuple, and are inlined into the engines' helpers, which are compiled without reference
# counting (see ``kvern.sim.profiles.ideal``).

@numba.njit(cache=True, inline="always")
def _lt(a1, a2, at, b1, b2, bt):  # type: ignore[no-untyped-def]
    """Key a < key b (scalars only: no arrays, no reference counting)."""
    if a1 != b1:
        return a1 < b1
    if a2 != b2:
        return a2 < b2
    return at < bt


@numba.njit(cache=True, inline="always")
def _sift_down(p1s, p2s, ties, vers, base, i, n, p1, p2, tie, ver):  # type: ignore[no-untyped-def]
    """Place the key at relative position i of a heap of n rows, moving smaller children up."""
    two = len(p2s) > 1
    while True:
        child = 2 * i + 1
        if child >= n:
            break
        c = base + child
        if child + 1 < n and _lt(p1s[c + 1], p2s[c + 1] if two else 0.0, ties[c + 1],
                                 p1s[c], p2s[c] if two else 0.0, ties[c]):
            c += 1
            child += 1
        if not _lt(p1s[c], p2s[c] if two else 0.0, ties[c], p1, p2, tie):
            break
        d = base + i
        p1s[d] = p1s[c]
        if two:
            p2s[d] = p2s[c]
        ties[d] = ties[c]
        vers[d] = vers[c]
        i = child
    d = base + i
    p1s[d] = p1
    if two:
        p2s[d] = p2
    ties[d] = tie
    vers[d] = ver


@numba.njit(cache=True, inline="always")
def push(p1s, p2s, ties, vers, sizes, q, base, p1, p2, tie, ver):  # type: ignore[no-untyped-def]
    """Add a row to queue q's heap. The caller makes room (``sizes[q] < H``)."""
    two = len(p2s) > 1
    i = sizes[q]
    sizes[q] = i + 1
    while i > 0:
        parent = (i - 1) >> 1
        s = base + parent
        if not _lt(p1, p2, tie, p1s[s], p2s[s] if two else 0.0, ties[s]):
            break
        d = base + i
        p1s[d] = p1s[s]
        if two:
            p2s[d] = p2s[s]
        ties[d] = ties[s]
        vers[d] = vers[s]
        i = parent
    d = base + i
    p1s[d] = p1
    if two:
        p2s[d] = p2
    ties[d] = tie
    vers[d] = ver


@numba.njit(cache=True, inline="always")
def pop(p1s, p2s, ties, vers, sizes, q, base):  # type: ignore[no-untyped-def]
    """Drop queue q's smallest row (read row ``base`` first)."""
    n = sizes[q] - 1
    sizes[q] = n
    if n > 0:
        last = base + n
        p2 = p2s[last] if len(p2s) > 1 else 0.0
        _sift_down(p1s, p2s, ties, vers, base, 0, n, p1s[last], p2, ties[last], vers[last])


@numba.njit(cache=True, inline="always")
def replace_top(p1s, p2s, ties, vers, sizes, q, base, p1, p2, tie, ver):  # type: ignore[no-untyped-def]
    """Pop queue q's smallest row and push this one, in one pass down from the top (a policy's
    re-insertion: a key that grew a little stops near the top)."""
    _sift_down(p1s, p2s, ties, vers, base, 0, sizes[q], p1, p2, tie, ver)


@numba.njit(cache=True, inline="always")
def heapify(p1s, p2s, ties, vers, sizes, q, base):  # type: ignore[no-untyped-def]
    n = sizes[q]
    for i in range(n // 2 - 1, -1, -1):
        j = base + i
        p2 = p2s[j] if len(p2s) > 1 else 0.0
        _sift_down(p1s, p2s, ties, vers, base, i, n, p1s[j], p2, ties[j], vers[j])


# Called, not inlined, by both engines' loops, and compiled without reference counting
# (``_nrt=False``: they allocate nothing), so their bodies stay out of the loops.

@numba.njit(cache=True, _nrt=False)
def pop_top(p1s, p2s, ties, vers, sizes, q, base):  # type: ignore[no-untyped-def]
    pop(p1s, p2s, ties, vers, sizes, q, base)


@numba.njit(cache=True, _nrt=False)
def requeue_top(x, version, xp1, xp2, p1s, p2s, ties, vers, sizes, q, base):  # type: ignore[no-untyped-def]
    """Entry x, queue q's top, stays in q with its new priority (``xp1[x]``, ``xp2[x]``): its
    version moves on and its row is replaced in one pass (as a pop, then a push of a new row)."""
    v = version[x] + 1
    version[x] = v
    replace_top(p1s, p2s, ties, vers, sizes, q, base, xp1[x], xp2[x] if len(xp2) > 1 else 0.0, ties[base], v)

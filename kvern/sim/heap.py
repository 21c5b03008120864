"""A compiled binary min-heap with lazy deletion, for the engines' evictable entries.

Rows of a float64 array ``H[size, 5]``: ``(p1, p2, -depth, id, version)``, ordered
lexicographically on the first four columns — the policy's priority, then docs/architecture.md §4's
tie-breaks (deeper first, then lower id). Ids, depths and versions are integers below 2⁵³, so
float64 holds them exactly. An entry is stale when the engine's version of its id moved on;
engines skip stale rows when they pop and drop them when they compact a full heap.
"""

from __future__ import annotations

import numba
import numpy as np

ROW = 5
P1, P2, NEG_DEPTH, ID, VERSION = range(ROW)
"""The columns of a row, by name."""


def new_heap(bound: int) -> np.ndarray:
    """Room for twice ``bound`` valid entries (a compaction then always frees half)."""
    return np.zeros((2 * max(int(bound), 1) + 1024, ROW), dtype=np.float64)


def new_heaps(queues: int, bound: int) -> np.ndarray:
    """``queues`` heaps of ``new_heap(bound)`` rows each, as one float64[queues, H, 5] array."""
    return np.zeros((int(queues), *new_heap(bound).shape), dtype=np.float64)


@numba.njit(cache=True, inline="always")
def _less(h, i, j):  # type: ignore[no-untyped-def]
    for c in range(VERSION):  # the order: every column but the version
        if h[i, c] != h[j, c]:
            return h[i, c] < h[j, c]
    return False


@numba.njit(cache=True, inline="always")
def _swap(h, i, j):  # type: ignore[no-untyped-def]
    for c in range(ROW):
        tmp = h[i, c]
        h[i, c] = h[j, c]
        h[j, c] = tmp


@numba.njit(cache=True)
def _sift_down(h, i, n):  # type: ignore[no-untyped-def]
    while True:
        left = 2 * i + 1
        if left >= n:
            return
        m = left
        if left + 1 < n and _less(h, left + 1, left):
            m = left + 1
        if not _less(h, m, i):
            return
        _swap(h, i, m)
        i = m


@numba.njit(cache=True, inline="always")
def push(h, n, p1, p2, neg_depth, ident, version):  # type: ignore[no-untyped-def]
    """Add a row; return the new length. The caller makes room (``n < len(h)``)."""
    h[n, P1] = p1
    h[n, P2] = p2
    h[n, NEG_DEPTH] = neg_depth
    h[n, ID] = ident
    h[n, VERSION] = version
    i = n
    while i > 0:
        parent = (i - 1) // 2
        if not _less(h, i, parent):
            break
        _swap(h, i, parent)
        i = parent
    return n + 1


@numba.njit(cache=True, inline="always")
def pop(h, n):  # type: ignore[no-untyped-def]
    """Drop the smallest row (read ``h[0]`` first); return the new length."""
    n -= 1
    if n > 0:
        for c in range(ROW):
            h[0, c] = h[n, c]
        _sift_down(h, 0, n)
    return n


@numba.njit(cache=True)
def heapify(h, n):  # type: ignore[no-untyped-def]
    for i in range(n // 2 - 1, -1, -1):
        _sift_down(h, i, n)

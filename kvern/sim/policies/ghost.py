"""Ghost queues: FIFOs of evicted block ids (S3-FIFO's ghost, ARC's B1/B2), bounded by a count.

Kept in ``PolicyState.log_i[g]`` (a log of twice the ghost's bound, whose live entries move to
its front, in order, when its end is reached) with ``log_ctr[g] = (head, tail, count)``, and
``block_i[b]`` = ``2 × position + g`` of block b in ghost g, or -1 (a block is in at most one
ghost). A removed block leaves a dead slot behind; trimming and that move skip it. At most half
the log is live when its end is reached, so the moves cost O(1) per insert, and the memory is
that of the cache's size, not of the trace's length.

A ghost hit is known when the request looks its blocks up, before the evictions it causes
(libCacheSim's ``find``), but the block joins its queue only after them: ``take`` removes the
block and marks it ``-2 - g`` (taken from ghost g) until ``taken`` reads and clears the mark.
"""

from __future__ import annotations

import numba
import numpy as np

HEAD, TAIL, COUNT = range(3)


def fresh(num_blocks: int, ghosts: int, bound: int,
          inserts: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``block_i``, ``log_i`` and ``log_ctr`` for ``ghosts`` empty ghosts of at most ``bound``
    entries each, which see at most ``inserts`` inserts (a log that long never fills up)."""
    size = max(min(2 * bound + 2, inserts), 1)
    return (np.full(num_blocks, -1, np.int64), np.full((ghosts, size), -1, np.int64),
            np.zeros((ghosts, 3), np.int64))


@numba.njit(cache=True, inline="always")
def member(s, g, block):  # type: ignore[no-untyped-def]
    v = s.block_i[block]
    return v >= 0 and v % 2 == g


@numba.njit(cache=True, inline="always")
def take(s, block):  # type: ignore[no-untyped-def]
    """Remove ``block`` from its ghost, if any, and mark it as taken from that ghost."""
    v = s.block_i[block]
    if v >= 0:
        s.log_ctr[v % 2, COUNT] -= 1
        s.block_i[block] = -2 - v % 2


@numba.njit(cache=True, inline="always")
def taken(s, block):  # type: ignore[no-untyped-def]
    """The ghost ``block`` was taken from since its mark was last read (-1: none); clears the mark."""
    v = s.block_i[block]
    if v >= 0:
        return -1
    s.block_i[block] = -1
    return -2 - v


@numba.njit(cache=True)
def trim(s, g, bound):  # type: ignore[no-untyped-def]
    """Drop the oldest members of ghost g until it holds at most ``bound``."""
    while s.log_ctr[g, COUNT] > bound:
        pos = s.log_ctr[g, HEAD]
        b = s.log_i[g, pos]
        if s.block_i[b] == 2 * pos + g:
            s.block_i[b] = -1
            s.log_ctr[g, COUNT] -= 1
        s.log_ctr[g, HEAD] = pos + 1


@numba.njit(cache=True)
def insert(s, g, block, bound):  # type: ignore[no-untyped-def]
    """Append ``block`` to ghost g (a FIFO cache of ``bound`` entries: room is made first)."""
    if bound <= 0:
        return
    trim(s, g, bound - 1)
    if s.log_ctr[g, TAIL] == s.log_i.shape[1]:
        _compact(s, g)
    pos = s.log_ctr[g, TAIL]
    s.log_i[g, pos] = block
    s.block_i[block] = 2 * pos + g
    s.log_ctr[g, TAIL] = pos + 1
    s.log_ctr[g, COUNT] += 1


@numba.njit(cache=True)
def _compact(s, g):  # type: ignore[no-untyped-def]
    """Move ghost g's live entries to the front of its log, in order (its end was reached)."""
    at = 0
    for pos in range(s.log_ctr[g, HEAD], s.log_ctr[g, TAIL]):
        b = s.log_i[g, pos]
        if s.block_i[b] == 2 * pos + g:
            s.log_i[g, at] = b
            s.block_i[b] = 2 * at + g
            at += 1
    s.log_ctr[g, HEAD] = 0
    s.log_ctr[g, TAIL] = at

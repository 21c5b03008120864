"""A compiled LRU set of block ids: the offload tiers and the routers' approximate caches.

The same intrusive doubly linked recency list as ``kvern.sim.kernels`` (slot ``U`` is the
sentinel, ``nxt`` runs from most to least recent), plus the time of each entry's last touch,
so that one structure serves an offload tier (capacity in blocks, evict from the tail), an
approximate router tree that is pruned to a size now and then (SGLang's router) and one whose
entries expire after a time to live (Dynamo's router without KV events). Every operation is
O(1) per block. It keeps no prefix closure: a plain LRU, whose tail a request touching its
blocks tail → head always leaves a leaf anyway.
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np

SIZE = 0
"""Index of the entry count in ``counters``."""


class BlockLRU(NamedTuple):
    nxt: np.ndarray
    """int32[U+1]"""
    prv: np.ndarray
    """int32[U+1]"""
    present: np.ndarray
    """bool[U]"""
    stamp: np.ndarray
    """float64[U]: time of the entry's last touch."""
    counters: np.ndarray
    """int64[1]: SIZE."""


def new_lru(num_unique: int) -> BlockLRU:
    nxt = np.empty(num_unique + 1, np.int32)
    prv = np.empty(num_unique + 1, np.int32)
    nxt[num_unique] = prv[num_unique] = num_unique
    return BlockLRU(nxt, prv, np.zeros(num_unique, np.bool_), np.zeros(num_unique, np.float64),
                    np.zeros(1, np.int64))


def call(fn, key, *args):  # type: ignore[no-untyped-def]
    """``fn(*args)`` through its compiled entry point, resolved once per ``(fn, key)``.

    Numba's dispatcher types every argument on every call, which for a NamedTuple of arrays
    costs more than the work of one request; ``key`` names what may vary in the argument
    types (the caller passes Python ints and floats and arrays of one layout).
    """
    entry = _ENTRIES.get((fn, key))
    if entry is None:
        entry = _ENTRIES[(fn, key)] = fn.compile(tuple(numba.typeof(a) for a in args))
    return entry(*args)


_ENTRIES: dict = {}


def touch_prompt(lru: BlockLRU, ids: np.ndarray, lo: int, hi: int, t: float) -> None:
    """Touch ``ids[lo:hi]`` tail → head, so that a prefix is more recent than its extensions."""
    call(_touch_prompt, ids.dtype.char, lru, ids, int(lo), int(hi), float(t))


def shrink(lru: BlockLRU, capacity: int) -> int:
    """Drop least recent entries until at most ``capacity`` remain; return how many went."""
    return int(call(_shrink, None, lru, int(capacity)))


def expire(lru: BlockLRU, oldest: float) -> None:
    """Drop the entries last touched before ``oldest`` (they sit at the tail)."""
    call(_expire, None, lru, float(oldest))


def leading(ids: np.ndarray, lo: int, hi: int, present: np.ndarray) -> int:
    """Leading blocks of ``ids[lo:hi]`` that ``present`` (any array, nonzero = held) holds."""
    return int(call(_leading, (ids.dtype.char, present.dtype.char), ids, int(lo), int(hi), present))


class PresenceList(NamedTuple):
    """Several presence arrays of one type (the replicas' caches, a router's trees) as one
    compiled argument, so that one call asks all of them (``leading_each``, ``union_leading``).

    A tuple, not a ``numba.typed.List``: a typed list is built by compiled code that numba does
    not cache, about 0.1 s per process for each list; a tuple's kernels load from the disk
    cache (one per array count)."""

    arrays: tuple[np.ndarray, ...]
    key: tuple[str, str, int]
    """(dtype of the arrays, their layout, how many): what the compiled entry point is resolved for."""
    out: np.ndarray
    """int64[n]: scratch for ``leading_each``."""


def presence_list(arrays: list[np.ndarray | None] | list[np.ndarray]) -> PresenceList | None:
    """The arrays (read in place, never copied) as one ``PresenceList``; None if one is missing
    or they differ in type (then ask them one by one)."""
    if not arrays or any(a is None for a in arrays):
        return None
    kinds = {(a.dtype.char, a.ndim, a.flags.c_contiguous) for a in arrays}  # type: ignore[union-attr]
    if len(kinds) != 1 or next(iter(kinds))[1] != 1:
        return None
    char, _, contiguous = next(iter(kinds))
    return PresenceList(tuple(arrays), (char, "C" if contiguous else "A", len(arrays)),  # type: ignore[arg-type]
                        np.zeros(len(arrays), np.int64))


def leading_each(ids: np.ndarray, lo: int, hi: int, presences: PresenceList) -> list[int]:
    """``leading`` of ``ids[lo:hi]`` in each array of ``presences``, in one compiled call."""
    call(_leading_each, (ids.dtype.char, presences.key), ids, int(lo), int(hi), presences.arrays,
         presences.out)
    return presences.out.tolist()  # type: ignore[no-any-return]


def union_leading(ids: np.ndarray, lo: int, hi: int, k: int, presences: PresenceList) -> int:
    """From ``k`` (blocks known held), the leading blocks of ``ids[lo:hi]`` of which each is
    held by some array of ``presences`` (not necessarily the same one)."""
    return int(call(_union_leading, (ids.dtype.char, presences.key), ids, int(lo), int(hi), int(k),
                    presences.arrays))


def size(lru: BlockLRU) -> int:
    return int(lru.counters[SIZE])


@numba.njit(cache=True, inline="always")
def unlink(lru, b):  # type: ignore[no-untyped-def]
    """Remove ``b`` if present; return whether it was."""
    if not lru.present[b]:
        return False
    a = lru.prv[b]
    c = lru.nxt[b]
    lru.nxt[a] = c
    lru.prv[c] = a
    lru.present[b] = False
    lru.counters[SIZE] -= 1
    return True


@numba.njit(cache=True, inline="always")
def push_front(lru, b, t):  # type: ignore[no-untyped-def]
    """Make ``b`` the most recent entry (inserting it if absent), touched at time ``t``."""
    head = len(lru.present)
    if lru.present[b]:
        a = lru.prv[b]
        c = lru.nxt[b]
        lru.nxt[a] = c
        lru.prv[c] = a
    else:
        lru.present[b] = True
        lru.counters[SIZE] += 1
    first = lru.nxt[head]
    lru.nxt[b] = first
    lru.prv[b] = head
    lru.prv[first] = b
    lru.nxt[head] = b
    lru.stamp[b] = t


@numba.njit(cache=True, inline="always")
def pop_tail(lru):  # type: ignore[no-untyped-def]
    """Remove and return the least recent entry (-1 when empty)."""
    head = len(lru.present)
    v = lru.prv[head]
    if v == head:
        return -1
    unlink(lru, v)
    return v


@numba.njit(cache=True)
def _touch_prompt(lru, ids, lo, hi, t):  # type: ignore[no-untyped-def]
    """Touch ``ids[lo:hi]`` tail → head, so that a prefix is more recent than its extensions."""
    for j in range(hi - 1, lo - 1, -1):
        push_front(lru, ids[j], t)


@numba.njit(cache=True)
def _shrink(lru, capacity):  # type: ignore[no-untyped-def]
    """Drop least recent entries until at most ``capacity`` remain; return how many went."""
    n = 0
    while lru.counters[SIZE] > capacity:
        pop_tail(lru)
        n += 1
    return n


@numba.njit(cache=True)
def _expire(lru, oldest):  # type: ignore[no-untyped-def]
    """Drop the entries last touched before ``oldest`` (they sit at the tail)."""
    head = len(lru.present)
    while lru.prv[head] != head and lru.stamp[lru.prv[head]] < oldest:
        pop_tail(lru)


@numba.njit(cache=True)
def _leading(ids, lo, hi, present):  # type: ignore[no-untyped-def]
    """Leading blocks of ``ids[lo:hi]`` that ``present`` (any array, nonzero = held) holds."""
    k = 0
    while lo + k < hi and present[ids[lo + k]]:
        k += 1
    return k


@numba.njit(cache=True)
def _leading_each(ids, lo, hi, arrays, out):  # type: ignore[no-untyped-def]
    for i in range(len(arrays)):
        present = arrays[i]
        k = 0
        while lo + k < hi and present[ids[lo + k]]:
            k += 1
        out[i] = k


@numba.njit(cache=True)
def _union_leading(ids, lo, hi, k, arrays):  # type: ignore[no-untyped-def]
    while lo + k < hi:
        b = ids[lo + k]
        held = False
        for i in range(len(arrays)):
            if arrays[i][b]:
                held = True
                break
        if not held:
            break
        k += 1
    return k

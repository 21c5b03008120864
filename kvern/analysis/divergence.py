"""Where prompts diverge: each request against the nearest earlier prompt it nearly repeats.

For every request we find the earlier prompt of the same model that shares its longest
prefix, the first token where the two differ, and whether they agree again shortly after (a
field such as a date or a request id was swapped in, inserted or removed). The tokens that
agree again after such a short divergence are cacheable tokens the request lost.

The search works on interned block ids (``kvern.ingest.stream``), not on tokens: because block
keys are chained, the blocks a request shares with everything before it are exactly its
leading blocks seen before, and every earlier prompt sharing them continues with a child of
the last shared block. Tokens are compared only inside the first differing block (against
the recent children of that block) and in a small window after the divergence.

Definitions (stated once, used by every report):

- *the earlier prompt* a request is compared with: among earlier prompts of the same model
  that hold all of its leading blocks seen before and go on past the tokens they share with
  it, the one with the longest common token prefix (ties: the most recently used; only the
  ``MAX_CHILDREN`` continuations of the block first seen most recently are compared). A
  request that repeats or only extends earlier prompts, or is a prefix of one, has none.
- *first diverging token* ``position``: the length of that common token prefix.
- *span*: the shortest pair of stretches (``span_tokens`` in the request, ``ref_span_tokens`` in
  the earlier prompt, each at most ``MAX_SPAN``) after which both agree for ``WINDOW`` tokens.
- *lost tokens*: the length of that agreeing run: prompt the request shares with the earlier
  one, but past a divergence, so no prefix cache can serve it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numba
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kvern.infra.console import NULL_OUTPUT, Output
from kvern.ingest.stream import BlockStream, block_streams
from kvern.ingest.trace import Trace

WINDOW = 16
"""Tokens that must agree again after a divergence for it to count as a swapped field: a block of
the default size, so that chat-template tokens alone (``<|im_end|>`` … ``user``) never qualify and a
loss is at least what one block cache entry would have held."""
MAX_SPAN = 32
"""Longest stretch (tokens, on either side) that still counts as a field, not new content."""
MAX_CHILDREN = 1024
"""Earlier continuations of a block compared per request (the most recent ones)."""


@dataclass(frozen=True, slots=True)
class Divergence:
    model: str
    row: int
    """Trace row of the request."""
    ref_row: int
    """Trace row of the earlier prompt it nearly repeats."""
    position: int
    """0-based index of the first diverging token in both prompts."""
    span_tokens: int
    ref_span_tokens: int
    lost_tokens: int


@dataclass(frozen=True)
class Scan:
    divergences: list[Divergence]
    """Only those with lost tokens, in trace order per model."""
    prompt_tokens: int
    hit_tokens: int
    """Tokens of leading blocks seen before (an infinite cache, whole blocks, no last-token rule)."""
    skipped_models: tuple[str, ...] = ()
    """Models without token ids (hash-id traces): their hits count, their divergences can't be told."""

    @property
    def lost_tokens(self) -> int:
        return sum(d.lost_tokens for d in self.divergences)

    @property
    def cacheable_tokens(self) -> int:
        """What an infinite cache would serve had no prompt diverged: hits plus lost tokens."""
        return self.hit_tokens + self.lost_tokens


def scan(trace: Trace, *, out: Output = NULL_OUTPUT) -> Scan:
    """Find the divergences of every request of ``trace`` that cost cacheable tokens."""
    divs: list[Divergence] = []
    prompt = hits = 0
    skipped: list[str] = []
    streams = block_streams(trace, tokens=False)
    column = trace.column("token_ids")  # every request's, at once: a divergence compares any two
    with out.progress("finding divergences", trace.num_requests) as advance:
        for model, stream in streams.items():
            tokens = _token_column(column, stream)
            if tokens is None:
                skipped.append(model)
                tokens = np.zeros(0, np.int32), np.zeros(stream.num_requests + 1, np.int64)
            p, h = _scan_model(stream, *tokens, divs, advance)
            prompt += p
            hits += h
    return Scan(divs, prompt, hits, tuple(skipped))


def realign(a: np.ndarray, b: np.ndarray) -> tuple[int, int, int] | None:
    """Where ``a`` and ``b`` (two suffixes starting at a differing token) agree again.

    Returns ``(span_a, span_b, run)``: skip ``span_a`` tokens of ``a`` and ``span_b`` of ``b``
    (each ≤ MAX_SPAN, not both 0) and the next ``run`` ≥ WINDOW tokens are equal. The pair
    with the smallest ``span_a + span_b`` wins (the least edit), then the smaller larger span,
    then the smaller ``span_a``. None when no pair agrees for WINDOW tokens.
    """
    a32, b32 = np.ascontiguousarray(a, dtype=np.int32), np.ascontiguousarray(b, dtype=np.int32)
    i, j, run = _realign(a32, 0, len(a32), b32, 0, len(b32), WINDOW, MAX_SPAN)
    return None if i < 0 else (int(i), int(j), int(run))


# -- per model --------------------------------------------------------------------------------


def _token_column(column: pa.ChunkedArray, stream: BlockStream) -> tuple[np.ndarray, np.ndarray] | None:
    """Flat token ids of the model's requests and their offsets, or None without token ids."""
    col = column.take(pa.array(stream.rows)).combine_chunks()
    if col.null_count == len(col):
        return None
    if col.null_count:
        col = pc.fill_null(col, pa.scalar([], col.type))
    lengths = pc.list_value_length(col).to_numpy(zero_copy_only=False).astype(np.int64)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat = pc.list_flatten(col).to_numpy(zero_copy_only=False).astype(np.int32)
    return flat, offsets


def _scan_model(s: BlockStream, flat: np.ndarray, tok_off: np.ndarray,
                divs: list[Divergence], advance: Callable[[float], None]) -> tuple[int, int]:
    n_req, n_uniq = s.num_requests, s.num_unique
    lengths = np.diff(s.req_offsets)
    req_of = np.repeat(np.arange(n_req), lengths)
    # First request holding each block (non-decreasing in id: ids are in order of first
    # appearance), and where its tokens start in ``flat``.
    _, first_occ = np.unique(s.block_ids, return_index=True)
    first_req = req_of[first_occ].astype(np.int64)
    tok_start = tok_off[first_req] + s.depth.astype(np.int64) * s.block_size
    # Children of each block (root = n_uniq), in id order.
    pkey = np.where(s.parent < 0, n_uniq, s.parent)
    children = np.argsort(pkey, kind="stable").astype(np.int64)
    child_off = np.zeros(n_uniq + 2, dtype=np.int64)
    np.cumsum(np.bincount(pkey, minlength=n_uniq + 1), out=child_off[1:])
    has_tokens = np.diff(tok_off) == s.prompt_tokens
    found = np.full((n_req, 6), -1, dtype=np.int64)
    hits = _scan_kernel(
        np.ascontiguousarray(s.block_ids, dtype=np.int32), s.req_offsets.astype(np.int64),
        s.prompt_tokens.astype(np.int64), s.block_size, first_req, tok_start,
        s.block_tokens.astype(np.int64), children, child_off, np.ascontiguousarray(flat, dtype=np.int32),
        tok_off.astype(np.int64), has_tokens, MAX_CHILDREN, WINDOW, MAX_SPAN, found)
    advance(n_req)
    for r, ref, pos, span, ref_span, run in found[found[:, 0] >= 0]:
        divs.append(Divergence(s.model, int(s.rows[r]), int(s.rows[ref]), int(pos), int(span), int(ref_span),
                               int(run)))
    return int(s.prompt_tokens.sum()), int(hits)


# -- compiled kernels ---------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True)
def _scan_kernel(block_ids: np.ndarray, req_off: np.ndarray, prompt: np.ndarray, bs: int,
                 first_req: np.ndarray, tok_start: np.ndarray, block_tokens: np.ndarray,
                 children: np.ndarray, child_off: np.ndarray, flat: np.ndarray, tok_off: np.ndarray,
                 has_tokens: np.ndarray, max_children: int, window: int, max_span: int,
                 found: np.ndarray) -> int:  # pragma: no cover - compiled
    """One pass over the requests: infinite-cache hits, and each request's divergence in ``found``.

    ``found[r] = (r, ref, position, span, ref_span, run)``, or -1s where there is none.
    """
    n_uniq = len(first_req)
    last_req = np.full(n_uniq, -1, dtype=np.int64)
    hits = 0
    for r in range(len(prompt)):
        b0, b1 = req_off[r], req_off[r + 1]
        if b1 == b0:
            continue
        d = -1
        for k in range(b0, b1):
            if first_req[block_ids[k]] == r:
                d = k - b0
                break
        if d < 0:  # every block seen before: a repeat, or a prefix of an earlier prompt
            hits += prompt[r]
        else:
            hits += d * bs
            if has_tokens[r]:
                _diverge(r, d, block_ids, b0, bs, prompt, first_req, tok_start, block_tokens, children,
                         child_off, flat, tok_off, has_tokens, last_req, max_children, window, max_span,
                         found)
        for k in range(b0, b1):
            last_req[block_ids[k]] = r
    return hits


@numba.njit(cache=True, nogil=True)
def _diverge(r: int, d: int, block_ids: np.ndarray, b0: int, bs: int, prompt: np.ndarray,
             first_req: np.ndarray, tok_start: np.ndarray, block_tokens: np.ndarray, children: np.ndarray,
             child_off: np.ndarray, flat: np.ndarray, tok_off: np.ndarray, has_tokens: np.ndarray,
             last_req: np.ndarray, max_children: int, window: int, max_span: int,
             found: np.ndarray) -> None:  # pragma: no cover - compiled
    """Compare request ``r`` with the continuations of its last shared block (see the module doc)."""
    parent = block_ids[b0 + d - 1] if d > 0 else len(first_req)
    lo, hi = child_off[parent], child_off[parent + 1]
    # Children seen before r: first_req is non-decreasing along the (id-sorted) children.
    end = lo
    while end < hi and first_req[children[end]] < r:
        end += 1
    start = max(lo, end - max_children)
    mine = tok_off[r] + d * bs
    mine_len = min(bs, tok_off[r + 1] - mine)
    best, best_c, best_last = -1, -1, -1
    for k in range(start, end):
        kid = children[k]
        if not has_tokens[first_req[kid]]:
            continue  # its tokens are unknown (a row without token ids)
        kl, ts = block_tokens[kid], tok_start[kid]
        c = 0
        while c < mine_len and c < kl and flat[ts + c] == flat[mine + c]:
            c += 1
        if c >= mine_len:
            return  # r ends inside an earlier prompt: its tail is the partial-block rule
        if c >= kl:
            continue  # that earlier prompt ended here and r extends it: no divergence
        if c > best_c or (c == best_c and last_req[kid] > best_last):
            best, best_c, best_last = kid, c, last_req[kid]
    if best < 0:
        return
    ref = best_last
    if not has_tokens[ref]:
        return
    pos = d * bs + best_c
    i, j, run = _realign(flat, tok_off[r] + pos, tok_off[r + 1], flat, tok_off[ref] + pos, tok_off[ref + 1],
                         window, max_span)
    if i >= 0:
        found[r, 0], found[r, 1], found[r, 2] = r, ref, pos
        found[r, 3], found[r, 4], found[r, 5] = i, j, run


@numba.njit(cache=True, nogil=True)
def _realign(a: np.ndarray, a0: int, a1: int, b: np.ndarray, b0: int, b1: int, window: int,
             max_span: int) -> tuple[int, int, int]:  # pragma: no cover - compiled
    """``realign`` on ``a[a0:a1]`` and ``b[b0:b1]``; (-1, -1, 0) for none."""
    na = min(max_span, a1 - a0 - window) + 1
    nb = min(max_span, b1 - b0 - window) + 1
    bi, bj = -1, -1
    for i in range(na):
        for j in range(nb):
            if i == 0 and j == 0:
                continue
            if bi >= 0 and not _less_edit(i, j, bi, bj):
                continue
            w = 0
            while w < window and a[a0 + i + w] == b[b0 + j + w]:
                w += 1
            if w == window:
                bi, bj = i, j
    if bi < 0:
        return -1, -1, 0
    run = 0
    while a0 + bi + run < a1 and b0 + bj + run < b1 and a[a0 + bi + run] == b[b0 + bj + run]:
        run += 1
    return bi, bj, run


@numba.njit(cache=True, nogil=True, inline="always")
def _less_edit(i: int, j: int, bi: int, bj: int) -> bool:  # pragma: no cover - compiled
    """Is (i, j) a smaller edit than (bi, bj): by i + j, then the larger span, then i?"""
    if i + j != bi + bj:
        return i + j < bi + bj
    if max(i, j) != max(bi, bj):
        return max(i, j) < max(bi, bj)
    return i < bi

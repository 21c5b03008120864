"""Where prompts diverge: each request against the nearest earlier prompt it nearly repeats.

For every request we find the earlier prompt of the same model that shares its longest
prefix, the first token where the two differ, and whether they agree again shortly after (a
field such as a date or a request id was swapped in, inserted or removed). The tokens that
agree again after such a short divergence are cacheable tokens the request lost.

The search works on interned block ids (``kvern.sim.stream``), not on tokens: because block
keys are chained, the blocks a request shares with everything before it are exactly its
leading blocks seen before, and every earlier prompt sharing them continues with a child of
the last shared block. Tokens are compared only inside the first differing block (against
the recent children of that block) and in a small window after the divergence.

Definitions (stated once, used by every report):

- *the earlier prompt* a request is compared with: among earlier prompts of the same model
  that hold all of its leading blocks seen before and go on past the tokens they share with
  it, the one with the longest common token prefix (ties: the most recently used; only the
  ``MAX_CHILDREN`` most recent continuations of the block are compared). A request that
  repeats or extends earlier prompts, or is a prefix of one, has nothing to compare.
- *first diverging token* ``position``: the length of that common token prefix.
- *span*: the shortest pair of stretches (``span_tokens`` in the request, ``ref_span_tokens`` in
  the earlier prompt, each at most ``MAX_SPAN``) after which both agree for ``WINDOW`` tokens.
- *lost tokens*: the length of that agreeing run: prompt the request shares with the earlier
  one, but past a divergence, so no prefix cache can serve it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kvern.ingest.trace import Trace
from kvern.report.console import NULL_OUTPUT, Output
from kvern.sim.stream import BlockStream, block_streams

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
    streams = block_streams(trace)
    with out.progress("finding divergences", trace.num_requests) as advance:
        for model, stream in streams.items():
            tokens = _token_column(trace.table, stream)
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
    na = min(MAX_SPAN, len(a) - WINDOW) + 1
    nb = min(MAX_SPAN, len(b) - WINDOW) + 1
    if na <= 0 or nb <= 0:
        return None
    wa = np.lib.stride_tricks.sliding_window_view(a[: na - 1 + WINDOW], WINDOW)
    wb = np.lib.stride_tricks.sliding_window_view(b[: nb - 1 + WINDOW], WINDOW)
    match = (wa[:, None, :] == wb[None, :, :]).all(axis=2)
    match[0, 0] = False
    ia, ib = np.nonzero(match)
    if len(ia) == 0:
        return None
    order = np.lexsort((ia, np.maximum(ia, ib), ia + ib))
    i, j = int(ia[order[0]]), int(ib[order[0]])
    m = min(len(a) - i, len(b) - j)
    diff = a[i : i + m] != b[j : j + m]
    run = int(np.argmax(diff)) if diff.any() else m
    return i, j, run


# -- per model --------------------------------------------------------------------------------


def _token_column(table: pa.Table, stream: BlockStream) -> tuple[np.ndarray, np.ndarray] | None:
    """Flat token ids of the model's requests and their offsets, or None without token ids."""
    col = table.column("token_ids").take(pa.array(stream.rows)).combine_chunks()
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
                divs: list[Divergence], advance) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    bs = s.block_size
    n_req, n_uniq = s.num_requests, s.num_unique
    lengths = np.diff(s.req_offsets)
    req_of = np.repeat(np.arange(n_req), lengths)
    has_tokens = np.diff(tok_off) == s.prompt_tokens
    # First request holding each block, and where its tokens start in ``flat``.
    _, first_occ = np.unique(s.block_ids, return_index=True)
    first_req = req_of[first_occ]
    tok_start = tok_off[first_req] + s.depth.astype(np.int64) * bs
    # Children of each block (root = n_uniq), in order of first appearance (= id order).
    pkey = np.where(s.parent < 0, n_uniq, s.parent)
    children = np.argsort(pkey, kind="stable").astype(np.int64)
    child_off = np.zeros(n_uniq + 2, dtype=np.int64)
    np.cumsum(np.bincount(pkey, minlength=n_uniq + 1), out=child_off[1:])
    last_req = np.full(n_uniq, -1, dtype=np.int64)
    cols = np.arange(bs)

    hits = 0
    for r in range(n_req):
        blocks = s.blocks_of(r)
        advance(1)
        if len(blocks) == 0:
            continue
        new = first_req[blocks] == r
        if not new.any():
            hits += int(s.prompt_tokens[r])
            last_req[blocks] = r
            continue
        d = int(np.argmax(new))
        hits += d * bs
        if has_tokens[r]:
            div = _diverge(s, r, d, blocks, flat, tok_off, first_req, tok_start, children, child_off,
                           last_req, cols)
            if div is not None:
                divs.append(div)
        last_req[blocks] = r
    return int(s.prompt_tokens.sum()), hits


def _diverge(s: BlockStream, r: int, d: int, blocks: np.ndarray, flat: np.ndarray, tok_off: np.ndarray,
             first_req: np.ndarray, tok_start: np.ndarray, children: np.ndarray, child_off: np.ndarray,
             last_req: np.ndarray, cols: np.ndarray) -> Divergence | None:
    bs = s.block_size
    parent = int(blocks[d - 1]) if d > 0 else s.num_unique
    kids = children[child_off[parent] : child_off[parent + 1]]
    kids = kids[: np.searchsorted(first_req[kids], r)][-MAX_CHILDREN:]
    if len(kids) == 0:
        return None
    start = tok_off[r] + d * bs
    mine = flat[start : min(start + bs, tok_off[r + 1])]
    kid_len = s.block_tokens[kids]
    theirs = flat[np.minimum(tok_start[kids][:, None] + cols[: len(mine)], len(flat) - 1)]
    eq = (theirs == mine) & (cols[: len(mine)] < kid_len[:, None])
    common = np.cumprod(eq, axis=1).sum(axis=1)
    if (common >= len(mine)).any():
        return None  # r ends inside an earlier prompt: its tail is the partial-block rule, not a divergence
    # A kid consumed whole is an earlier prompt that ended there: r extends it, no divergence.
    ok = common < kid_len
    if not ok.any():
        return None
    kids, common = kids[ok], common[ok]
    best = np.lexsort((last_req[kids], common))[-1]
    ref = int(last_req[kids[best]])
    pos = d * bs + int(common[best])
    ref_toks = flat[tok_off[ref] : tok_off[ref + 1]]
    if len(ref_toks) != s.prompt_tokens[ref]:
        return None
    found = realign(flat[tok_off[r] + pos : tok_off[r + 1]], ref_toks[pos:])
    if found is None:
        return None
    span, ref_span, run = found
    return Divergence(s.model, int(s.rows[r]), int(s.rows[ref]), pos, span, ref_span, run)

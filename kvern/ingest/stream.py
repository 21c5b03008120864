"""The simulator's input: one model's requests as dense integer arrays.

Block keys are interned to ids ``0..n_unique-1`` in order of first appearance, so hot loops
index arrays instead of hashing (docs/architecture.md §2). Interning is a compiled
open-addressing hash table over the 64-bit keys (which are xxh3 hashes, so their low bits
index the table directly). Because keys are prefix-chained, each unique
block has exactly one parent (the block before it in every prompt that holds it) and one depth.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numba
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kvern.infra.compiled import use_kvern_cache
from kvern.ingest.trace import BLOCK_IDS, Trace, ids_digest

use_kvern_cache()


@dataclass(frozen=True, slots=True)
class BlockStream:
    model: str
    block_size: int
    """Tokens per full block; the last block of a prompt covers ``prompt_tokens`` modulo this."""
    req_offsets: np.ndarray
    """int64[R+1]: the blocks of request r are ``block_ids[req_offsets[r]:req_offsets[r+1]]``."""
    block_ids: np.ndarray
    """int32[N]: interned id of every block of every request, in prompt order."""
    prompt_tokens: np.ndarray
    """int32[R]"""
    rows: np.ndarray
    """int64[R]: row of each request in the trace table (to join results back)."""
    arrival_s: np.ndarray
    """float64[R]"""
    parent: np.ndarray
    """int32[U]: parent id of each unique block, -1 for a first block."""
    depth: np.ndarray
    """int32[U]: 0-based position of the block in its prompt."""
    block_tokens: np.ndarray
    """int32[U]: tokens the block covers (block_size, or fewer for a partial tail)."""
    token_offsets: np.ndarray | None = None
    """int64[R+1] when every request of this model kept its token ids (tokenized logs), else None."""
    token_ids: np.ndarray | None = None
    """int32[T]: the prompts' token ids, request r at ``token_ids[token_offsets[r]:token_offsets[r+1]]``."""
    longest_hint: int | None = None
    """For a stream that grows while engines run on it: a bound on any request's blocks."""

    @property
    def longest_request(self) -> int:
        """The most blocks one request holds (engines size their scratch space by it)."""
        if self.longest_hint is not None:
            return self.longest_hint
        return int(np.diff(self.req_offsets).max()) if self.num_requests else 0

    def tokens_of(self, r: int) -> np.ndarray:
        assert self.token_ids is not None and self.token_offsets is not None, "stream has no token ids"
        return self.token_ids[self.token_offsets[r] : self.token_offsets[r + 1]]

    @property
    def num_requests(self) -> int:
        return len(self.prompt_tokens)

    @property
    def num_unique(self) -> int:
        return len(self.parent)

    def blocks_of(self, r: int) -> np.ndarray:
        return self.block_ids[self.req_offsets[r] : self.req_offsets[r + 1]]


def block_streams(trace: Trace, *, tokens: bool = True) -> dict[str, BlockStream]:
    """Split the trace by model (each model has its own cache) and intern its block keys.

    The list columns are read a batch at a time (``Trace.batches``), straight into each
    model's arrays: a trace read from a file never has its token ids, or its block keys, in
    memory as a table. ``tokens=False`` leaves the token ids out of the streams (and unread):
    the profiles that run on blocks alone never look at them. Built once per trace and flag.
    """
    built = trace.streams
    if tokens in built:
        return built[tokens]
    if not tokens and True in built:  # streams with token ids serve a profile that ignores them
        return built[True]
    if tokens and False in built:  # the blocks are there: only the token ids to read
        built[True] = _add_tokens(trace, built[False])
        return built[True]
    n = trace.num_requests
    # One pass over the column for every model (dictionary codes), not one comparison per model.
    encoded = pc.dictionary_encode(trace.column("model")).combine_chunks()
    names = encoded.dictionary.to_pylist()
    codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int32)
    models = trace.models()
    code_of = {m: names.index(m) for m in models}
    rows = {m: np.flatnonzero(codes == code_of[m]) for m in models}
    prompt = trace.column("prompt_tokens").to_numpy().astype(np.int32)
    arrival = trace.column("arrival_s").to_numpy().astype(np.float64)

    key_lens = np.maximum(trace.list_lengths("block_keys"), 0)  # a null list holds no keys
    offsets = {m: _offsets(key_lens[r]) for m, r in rows.items()}
    ids = _stored_streams(trace, codes, code_of, key_lens, offsets)
    missing = [m for m in models if m not in ids]
    if missing:
        ids.update(_interned(trace, codes, {m: code_of[m] for m in missing}, key_lens, offsets))
    toks = _token_streams(trace, codes, code_of, rows, prompt) if tokens and n else {}

    out: dict[str, BlockStream] = {}
    for model in models:
        block_ids, u = ids[model]
        r = rows[model]
        sub_prompt = prompt[r]
        parent = np.full(u, -1, dtype=np.int32)
        depth = np.zeros(u, dtype=np.int32)
        block_tokens = np.zeros(u, dtype=np.int32)
        _block_shapes(block_ids, offsets[model], sub_prompt, trace.meta.block_size, parent, depth,
                      block_tokens)
        tok_offsets, tok_ids = toks.get(model, (None, None))
        out[model] = BlockStream(
            model=model,
            block_size=trace.meta.block_size,
            req_offsets=offsets[model],
            block_ids=block_ids,
            prompt_tokens=sub_prompt,
            rows=r.astype(np.int64),
            arrival_s=arrival[r],
            parent=parent,
            depth=depth,
            block_tokens=block_tokens,
            token_offsets=tok_offsets,
            token_ids=tok_ids,
        )
    trace.streams[tokens] = out
    return out


def _add_tokens(trace: Trace, streams: dict[str, BlockStream]) -> dict[str, BlockStream]:
    models = list(streams)
    codes = np.full(trace.num_requests, -1, dtype=np.int32)
    for c, s in enumerate(streams.values()):
        codes[s.rows] = c
    toks = _token_streams(trace, codes, {m: c for c, m in enumerate(models)},
                          {m: s.rows for m, s in streams.items()},
                          trace.column("prompt_tokens").to_numpy().astype(np.int32))
    return {m: dataclasses.replace(s, token_offsets=toks.get(m, (None, None))[0],
                                   token_ids=toks.get(m, (None, None))[1]) for m, s in streams.items()}


def _offsets(lengths: np.ndarray) -> np.ndarray:
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return offsets


class _Dealer:
    """Deals a list column's values, batch after batch, to the models of ``code_of`` in row order."""

    def __init__(self, codes: np.ndarray, code_of: dict[str, int]) -> None:
        self.codes = codes
        self.code_of = code_of
        only = list(code_of.values())
        self.single = len(only) == 1 and bool((codes == only[0]).all())

    def deal(self, start: int, lengths: np.ndarray, flat: np.ndarray) -> dict[str, np.ndarray]:
        """Each model's values among rows ``start…start+len(lengths)`` (``lengths`` values each,
        ``flat`` all of them in order)."""
        if self.single:
            return {next(iter(self.code_of)): flat}
        value_code = np.repeat(self.codes[start : start + len(lengths)], lengths)
        return {m: flat[value_code == c] for m, c in self.code_of.items()}


class _Filler:
    """Each model's values gathered into one array: preallocated at the size expected, joined
    from pieces where the values turn out not to fit it."""

    def __init__(self, sizes: dict[str, int], dtype: type) -> None:
        self.arrays = {m: np.empty(n, dtype=dtype) for m, n in sizes.items()}
        self.filled = dict.fromkeys(sizes, 0)
        self.extra: dict[str, list[np.ndarray]] = {m: [] for m in sizes}

    def add(self, parts: dict[str, np.ndarray]) -> None:
        for m, values in parts.items():
            at = self.filled[m]
            if self.extra[m] or at + len(values) > len(self.arrays[m]):
                self.extra[m].append(values.copy())
                continue
            self.arrays[m][at : at + len(values)] = values
            self.filled[m] = at + len(values)

    def result(self, m: str) -> np.ndarray:
        head = self.arrays[m]
        if self.extra[m]:
            return np.concatenate([head[: self.filled[m]], *self.extra[m]])
        return head if self.filled[m] == len(head) else head[: self.filled[m]].copy()


def _stored_streams(trace: Trace, codes: np.ndarray, code_of: dict[str, int], key_lens: np.ndarray,
                    offsets: dict[str, np.ndarray]) -> dict[str, tuple[np.ndarray, int]]:
    """Each model's stored ``block_ids`` (and distinct count) where they are still its
    interning: the digest ingest stored matches the columns' (``Trace.ids_digest``) and the
    model's ids are dense in first-seen order. Models left out are interned."""
    if not trace.has_block_ids or not trace.meta.block_ids_digest:
        return {}
    if not np.array_equal(trace.list_lengths(BLOCK_IDS.name), key_lens):
        return {}  # not the ids of these keys (or some row has none)
    if trace.ids_digest() != trace.meta.block_ids_digest:
        return {}  # not the ids ingest stored for these rows
    dealer = _Dealer(codes, code_of)
    filler = _Filler({m: int(o[-1]) for m, o in offsets.items()}, np.int32)
    at = 0
    for batch in trace.batches([BLOCK_IDS.name]):
        col = batch.column(0)
        flat = pc.list_flatten(col).to_numpy(zero_copy_only=False).astype(np.int32, copy=False)
        filler.add(dealer.deal(at, key_lens[at : at + len(col)], flat))
        at += len(col)
    out = {}
    for m in code_of:
        ids = filler.result(m)
        if (unique := _dense(ids)) is not None:
            out[m] = (ids, unique)
    return out


def _dense(ids: np.ndarray) -> int | None:
    """The number of distinct ids if ``ids`` are dense in first-seen order (what any row subset
    of a consistent key -> id mapping is, exactly), else None."""
    n = int(_dense_count(ids))
    return None if n < 0 else n


@numba.njit(cache=True, nogil=True)
def _dense_count(ids: np.ndarray) -> int:
    """One pass (no running-maximum array): -1 at the first id that skips ahead or is negative."""
    top = -1
    for i in range(len(ids)):
        b = ids[i]
        if b > top + 1 or b < 0:
            return -1
        if b > top:
            top = b
    return top + 1


def _interned(trace: Trace, codes: np.ndarray, code_of: dict[str, int], key_lens: np.ndarray,
              offsets: dict[str, np.ndarray]) -> dict[str, tuple[np.ndarray, int]]:
    """The models of ``code_of``: their block keys interned a batch at a time (the keys of one
    batch in memory at once), the same ids as interning each model's keys all at once."""
    dealer = _Dealer(codes, code_of)
    interners = {m: Interner() for m in code_of}
    ids = {m: np.empty(int(offsets[m][-1]), dtype=np.int32) for m in code_of}
    filled = dict.fromkeys(code_of, 0)
    at = 0
    for batch in trace.batches(["block_keys"]):
        col = batch.column(0)
        flat = np.ascontiguousarray(pc.list_flatten(col).to_numpy(zero_copy_only=False), dtype=np.uint64)
        for m, keys in dealer.deal(at, key_lens[at : at + len(col)], flat).items():
            ids[m][filled[m] : filled[m] + len(keys)] = interners[m].intern(keys)
            filled[m] += len(keys)
        at += len(col)
    return {m: (ids[m], interners[m].n) for m in code_of}


def _token_streams(trace: Trace, codes: np.ndarray, code_of: dict[str, int], rows: dict[str, np.ndarray],
                   prompt: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each model's flat token ids and offsets, where none of its requests lacks them
    (hash-id traces have none), a batch at a time. Token ids match the prompt lengths
    (``check_rows``), so each model's array is sized from them up front."""
    n = trace.num_requests
    tok_lens = np.zeros(n, dtype=np.int64)
    lacking = np.zeros(n, dtype=bool)
    dealer = _Dealer(codes, code_of)
    filler = _Filler({m: int(prompt[r].astype(np.int64).sum()) for m, r in rows.items()}, np.int32)
    at = 0
    for batch in trace.batches(["token_ids"]):
        col = batch.column(0)
        lengths = np.asarray(pc.list_value_length(col).to_numpy(zero_copy_only=False), dtype=np.float64)
        lacking[at : at + len(col)] = np.isnan(lengths)
        tok_lens[at : at + len(col)] = np.nan_to_num(lengths, nan=0.0)
        if len(col) > col.null_count:
            flat = pc.list_flatten(col).to_numpy(zero_copy_only=False).astype(np.int32, copy=False)
            filler.add(dealer.deal(at, tok_lens[at : at + len(col)], flat))
        at += len(col)
    out = {}
    for m, r in rows.items():
        if len(r) and not lacking[r].any():
            out[m] = (_offsets(tok_lens[r]), filler.result(m))
    return out


def with_block_ids(trace: Trace) -> Trace:
    """``trace`` (in memory) with the ``block_ids`` column: each model's keys interned once, to
    be stored."""
    streams = block_streams(trace, tokens=False)
    lengths = pc.list_value_length(trace.table.column("block_keys")).to_numpy(zero_copy_only=False)
    offsets = np.zeros(trace.num_requests + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.empty(int(offsets[-1]), dtype=np.int32)
    for s in streams.values():  # each request's ids into its row's place in the flat column
        shift = offsets[s.rows] - s.req_offsets[:-1]
        flat[np.repeat(shift, np.diff(s.req_offsets)) + np.arange(len(s.block_ids))] = s.block_ids
    column = pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(flat))
    table = trace.table
    if BLOCK_IDS.name in table.column_names:
        table = table.drop_columns([BLOCK_IDS.name])
    table = table.append_column(BLOCK_IDS, column)
    return Trace(table, dataclasses.replace(trace.meta, block_ids_digest=ids_digest([table])))


@numba.njit(cache=True, nogil=True)
def _block_shapes(ids: np.ndarray, offsets: np.ndarray, prompt: np.ndarray, block_size: int,
                  parent: np.ndarray, depth: np.ndarray, block_tokens: np.ndarray) -> None:
    """Each unique block's parent (the block before it), position and token count. Any
    occurrence gives the same answer (keys are chained), so the last one written stands."""
    for r in range(len(offsets) - 1):
        prev = -1
        for j in range(offsets[r], offsets[r + 1]):
            b = ids[j]
            pos = j - offsets[r]
            parent[b] = prev
            depth[b] = pos
            block_tokens[b] = min(block_size, prompt[r] - pos * block_size)
            prev = b


class Interner:
    """Block keys -> dense ids in order of first appearance, fed a piece at a time: the ids
    interning all the pieces at once would give. A compiled open-addressing table over the
    64-bit keys, kept at most half full. The slot is a Fibonacci hash of the key (the top bits
    after a multiply): keys are not always random (hash-id traces number their blocks), and
    the low bits of structured keys would pile into a few long runs of slots."""

    def __init__(self) -> None:
        self.n = 0
        """Distinct keys so far (the next new key's id)."""
        self._keys = np.empty(16, np.uint64)
        self._ids = np.full(16, -1, np.int32)

    def intern(self, keys: np.ndarray) -> np.ndarray:
        keys = np.ascontiguousarray(keys, dtype=np.uint64)
        size = len(self._ids)
        while size < 2 * (self.n + len(keys)):  # half full even if every key is new
            size *= 2
        if size != len(self._ids):
            self._keys, self._ids = _rehash(self._keys, self._ids, size)
        ids = np.empty(len(keys), dtype=np.int32)
        self.n = int(_intern_more(keys, ids, self._keys, self._ids, self.n))
        return ids


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
"""2⁶⁴ / φ: multiplying by it spreads any key pattern over the top bits."""


@numba.njit(cache=True, nogil=True, inline="always")
def _log2(size: int) -> int:
    bits = 0
    while (1 << bits) < size:
        bits += 1
    return bits


@numba.njit(cache=True, nogil=True)
def _intern_more(keys: np.ndarray, ids: np.ndarray, slot_key: np.ndarray, slot_id: np.ndarray, n: int) -> int:
    mask = np.uint64(len(slot_id) - 1)
    shift = np.uint64(64 - _log2(len(slot_id)))
    for i in range(len(keys)):
        k = keys[i]
        h = (k * _GOLDEN) >> shift
        while True:
            s = slot_id[h]
            if s < 0:
                slot_key[h] = k
                slot_id[h] = n
                ids[i] = n
                n += 1
                break
            if slot_key[h] == k:
                ids[i] = s
                break
            h = (h + np.uint64(1)) & mask
    return n


@numba.njit(cache=True, nogil=True)
def _rehash(slot_key: np.ndarray, slot_id: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    mask = np.uint64(size - 1)
    shift = np.uint64(64 - _log2(size))
    new_key = np.empty(size, np.uint64)
    new_id = np.full(size, -1, np.int32)
    for j in range(len(slot_id)):
        s = slot_id[j]
        if s < 0:
            continue
        k = slot_key[j]
        h = (k * _GOLDEN) >> shift
        while new_id[h] >= 0:
            h = (h + np.uint64(1)) & mask
        new_key[h] = k
        new_id[h] = s
    return new_key, new_id

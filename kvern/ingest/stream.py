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
import xxhash

from kvern.infra.compiled import use_kvern_cache
from kvern.ingest.trace import BLOCK_IDS, Trace

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


def block_streams(trace: Trace) -> dict[str, BlockStream]:
    """Split the trace by model (each model has its own cache) and intern its block keys."""
    table = trace.table
    if BLOCK_IDS.name in table.column_names and (
            not trace.meta.block_ids_digest or ids_digest(table) != trace.meta.block_ids_digest):
        table = table.drop_columns([BLOCK_IDS.name])  # not the ids ingest stored for these rows
    # One pass over the column for every model (dictionary codes), not one comparison per model.
    encoded = pc.dictionary_encode(table.column("model")).combine_chunks()
    codes = encoded.indices.to_numpy(zero_copy_only=False)
    names = encoded.dictionary.to_pylist()
    out: dict[str, BlockStream] = {}
    for model in trace.models():
        rows = np.flatnonzero(codes == names.index(model))
        sub = table if len(rows) == table.num_rows else table.take(pa.array(rows))  # one model: no copy
        out[model] = _intern(model, trace.meta.block_size, sub, rows)
    return out


def _intern(model: str, block_size: int, sub: pa.Table, rows: np.ndarray) -> BlockStream:
    keys_col = sub.column("block_keys").combine_chunks()
    lengths = pc.list_value_length(keys_col).to_numpy(zero_copy_only=False).astype(np.int64)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    stored = _stored_ids(sub, len(lengths))
    if stored is not None:
        block_ids, n = stored
    else:
        flat = np.ascontiguousarray(pc.list_flatten(keys_col).to_numpy(zero_copy_only=False), dtype=np.uint64)
        block_ids, n = intern_keys(flat)
    prompt = sub.column("prompt_tokens").to_numpy().astype(np.int32)

    parent = np.full(n, -1, dtype=np.int32)
    depth = np.zeros(n, dtype=np.int32)
    block_tokens = np.zeros(n, dtype=np.int32)
    _block_shapes(block_ids, offsets, prompt, block_size, parent, depth, block_tokens)
    tok_offsets, tok_ids = _tokens(sub)
    return BlockStream(
        model=model,
        block_size=block_size,
        req_offsets=offsets,
        block_ids=block_ids,
        prompt_tokens=prompt,
        rows=rows.astype(np.int64),
        arrival_s=sub.column("arrival_s").to_numpy().astype(np.float64),
        parent=parent,
        depth=depth,
        block_tokens=block_tokens,
        token_offsets=tok_offsets,
        token_ids=tok_ids,
    )


def _tokens(sub: pa.Table) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Flat token ids when no request lacks them (hash-id traces have none)."""
    col = sub.column("token_ids").combine_chunks()
    if len(col) == 0 or col.null_count:
        return None, None
    lengths = pc.list_value_length(col).to_numpy(zero_copy_only=False).astype(np.int64)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return offsets, pc.list_flatten(col).to_numpy(zero_copy_only=False).astype(np.int32)


def with_block_ids(trace: Trace) -> Trace:
    """``trace`` with the ``block_ids`` column: each model's keys interned once, to be stored."""
    streams = block_streams(trace)
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
    return Trace(table, dataclasses.replace(trace.meta, block_ids_digest=ids_digest(table)))


def ids_digest(table: pa.Table) -> str:
    """xxh3 of the table's flat block keys and block ids (tens of milliseconds for millions)."""
    h = xxhash.xxh3_64()
    for name in ("block_keys", BLOCK_IDS.name):
        col = table.column(name).combine_chunks()
        h.update(pc.list_value_length(col).to_numpy(zero_copy_only=False).astype(np.int64).tobytes())
        h.update(np.ascontiguousarray(pc.list_flatten(col).to_numpy(zero_copy_only=False)).tobytes())
    return h.hexdigest()


def _stored_ids(sub: pa.Table, num_requests: int) -> tuple[np.ndarray, int] | None:
    """The stored ids of these rows if they are still this model's interning: any row subset of
    a consistent key -> id mapping is, exactly when its ids are dense in first-seen order."""
    if BLOCK_IDS.name not in sub.column_names:
        return None
    col = sub.column(BLOCK_IDS.name).combine_chunks()
    if col.null_count or len(col) != num_requests:
        return None
    ids = pc.list_flatten(col).to_numpy(zero_copy_only=False).astype(np.int32, copy=False)
    if len(ids) == 0:
        return ids, 0
    running = np.maximum.accumulate(ids)
    if ids[0] != 0 or np.any(ids[1:] > running[:-1] + 1):
        return None
    return np.ascontiguousarray(ids), int(running[-1]) + 1


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


def intern_keys(keys: np.ndarray) -> tuple[np.ndarray, int]:
    """(int32 id of each key, in order of first appearance; the number of distinct keys)."""
    ids = np.empty(len(keys), dtype=np.int32)
    bits = 4
    while (1 << bits) < 2 * len(keys):
        bits += 1
    return ids, int(_intern_table(keys, ids, bits))


@numba.njit(cache=True, nogil=True)
def _intern_table(keys: np.ndarray, ids: np.ndarray, bits: int) -> int:
    """Open addressing, linear probing. The slot is a Fibonacci hash of the key (its top bits
    after a multiply): keys are not always random (hash-id traces number their blocks), and
    the low bits of structured keys would pile into a few runs of slots."""
    size = 1 << bits
    mask = np.uint64(size - 1)
    shift = np.uint64(64 - bits)
    golden = np.uint64(0x9E3779B97F4A7C15)
    slot_key = np.empty(size, np.uint64)
    slot_id = np.full(size, -1, np.int32)
    n = 0
    for i in range(len(keys)):
        k = keys[i]
        h = (k * golden) >> shift
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

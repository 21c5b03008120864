"""The compiled interner: ids in order of first appearance, equal to a dict doing the same."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvern.ingest.stream import Interner


def intern_keys(keys: np.ndarray, pieces: int = 1) -> tuple[np.ndarray, int]:
    """The interner fed ``keys`` in ``pieces`` runs (each grows and rehashes its table)."""
    interner = Interner()
    ids = [interner.intern(part) for part in np.array_split(keys, pieces)] if len(keys) else []
    return (np.concatenate(ids) if ids else np.zeros(0, np.int32)), interner.n


def _reference(keys: list[int]) -> tuple[list[int], int]:
    seen: dict[int, int] = {}
    return [seen.setdefault(k, len(seen)) for k in keys], len(seen)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.integers(0, 40), st.integers(0, 2**64 - 1),
                          st.sampled_from([0, 16, 32, 2**63, 2**64 - 16])), max_size=300),
       st.integers(1, 5))
def test_first_seen_ids_equal_a_dict(keys: list[int], pieces: int) -> None:
    # Small values and multiples of 16 collide in the table's low bits: probing must still separate them.
    ids, n = intern_keys(np.array(keys, dtype=np.uint64), pieces)
    assert (ids.tolist(), n) == _reference(keys)


def test_by_hand() -> None:
    ids, n = intern_keys(np.array([7, 7, 3, 2**64 - 1, 3, 7], dtype=np.uint64))
    assert ids.tolist() == [0, 0, 1, 2, 1, 0] and n == 3
    ids, n = intern_keys(np.array([], dtype=np.uint64))
    assert ids.tolist() == [] and n == 0


def _streams_equal(a: dict, b: dict) -> None:  # type: ignore[type-arg]
    assert list(a) == list(b)
    for m in a:
        for f in ("req_offsets", "block_ids", "prompt_tokens", "rows", "parent", "depth", "block_tokens"):
            assert np.array_equal(getattr(a[m], f), getattr(b[m], f)), (m, f)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["a", "b"]), st.lists(st.integers(0, 3), min_size=1, max_size=6)),
                min_size=1, max_size=25), st.data())
def test_stored_ids_give_the_same_streams_for_any_subset_of_rows(reqs: list, data: st.DataObject) -> None:
    """Ingest stores each model's interning; a stream built from it (or from any row subset, where
    it is used only if still dense in first-seen order) equals interning from the keys."""
    import pyarrow as pa

    from kvern.ingest.blocks import hash_id_block_keys
    from kvern.ingest.stream import block_streams, with_block_ids
    from kvern.ingest.trace import Trace, TraceMeta, with_meta

    meta = TraceMeta(block_size=4)
    table = pa.table({
        "request_id": [str(i) for i in range(len(reqs))], "arrival_s": [float(i) for i in range(len(reqs))],
        "model": [m for m, _ in reqs], "session_id": [None] * len(reqs),
        "prompt_tokens": [4 * len(ids) for _, ids in reqs], "output_tokens": [None] * len(reqs),
        "block_keys": pa.array([hash_id_block_keys(m, ids) for m, ids in reqs], pa.list_(pa.uint64())),
        "token_ids": pa.nulls(len(reqs), pa.list_(pa.int32()))})
    trace = Trace(with_meta(table, meta), meta)
    stored = with_block_ids(trace)
    assert "block_ids" in stored.table.column_names
    _streams_equal(block_streams(stored), block_streams(trace))
    rows = sorted(data.draw(st.sets(st.integers(0, len(reqs) - 1), min_size=1)))
    sub = Trace(stored.table.take(pa.array(rows)), meta)
    plain = Trace(trace.table.take(pa.array(rows)), meta)
    _streams_equal(block_streams(sub), block_streams(plain))


@pytest.mark.parametrize("ids, distinct", [
    ([], 0), ([0], 1), ([0, 0, 1, 2, 1], 3), ([0, 1, 1, 2, 0, 3], 4),
    ([1], None), ([0, 2], None), ([0, 1, 3], None), ([-1], None), ([0, -1], None),
])
def test_stored_ids_count_only_when_dense_in_first_seen_order(ids: list[int], distinct: int | None) -> None:
    from kvern.ingest.stream import _dense

    assert _dense(np.array(ids, dtype=np.int32)) == distinct

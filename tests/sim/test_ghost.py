"""The ghost queues of S3-FIFO and ARC against a plain FIFO of ids: the same members in the same
order after any inserts, takes and trims, while the log (twice the bound) moves its live entries
to the front many times over."""

from __future__ import annotations

from collections import OrderedDict

import numba
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import kvern.sim.policies.ghost as ghost
from kvern.sim.policies.base import PolicyState

BLOCKS = 12


@numba.njit(cache=True)
def _apply(s, ops):  # type: ignore[no-untyped-def]
    """ops rows: (0, g, block, bound) insert; (1, _, block, _) take; (2, g, _, bound) trim."""
    for i in range(ops.shape[0]):
        kind, g, block, bound = ops[i, 0], ops[i, 1], ops[i, 2], ops[i, 3]
        if kind == 0:
            if s.block_i[block] < 0 or s.block_i[block] % 2 != g:  # a block is in at most one ghost
                ghost.take(s, block)
                ghost.taken(s, block)
                ghost.insert(s, g, block, bound)
        elif kind == 1:
            ghost.take(s, block)
            ghost.taken(s, block)
        else:
            ghost.trim(s, g, bound)


def _members(s: PolicyState, g: int) -> list[int]:
    head, tail = s.log_ctr[g, ghost.HEAD], s.log_ctr[g, ghost.TAIL]
    return [int(b) for pos, b in enumerate(s.log_i[g, head:tail], start=head) if s.block_i[b] == 2 * pos + g]


_OP = st.tuples(st.integers(0, 2), st.integers(0, 1), st.integers(0, BLOCKS - 1), st.integers(0, 5))


@settings(max_examples=300, deadline=None)
@given(st.lists(_OP, max_size=200))
def test_ghosts_equal_a_fifo_of_ids(ops: list[tuple[int, int, int, int]]) -> None:
    _check(ops)


def test_long_runs_move_the_log_many_times() -> None:
    rng = np.random.default_rng(5)
    for _ in range(20):
        ops = np.column_stack([rng.choice(3, 3000, p=[0.7, 0.2, 0.1]), rng.integers(0, 2, 3000),
                               rng.integers(0, BLOCKS, 3000), rng.integers(3, 6, 3000)])
        _check([tuple(int(v) for v in row) for row in ops])


def _check(ops: list[tuple[int, ...]]) -> None:
    bound = 5  # every insert and trim bound is at most this: the log holds 2 * 5 + 2
    block_i, log_i, log_ctr = ghost.fresh(BLOCKS, 2, bound, 10_000)
    assert log_i.shape == (2, 12)
    s = PolicyState.empty(1)._replace(block_i=block_i, log_i=log_i, log_ctr=log_ctr)
    fifo: list[OrderedDict[int, None]] = [OrderedDict(), OrderedDict()]
    for kind, g, block, b in ops:
        if kind == 0:
            if block in fifo[g]:
                continue
            fifo[1 - g].pop(block, None)
            if b > 0:
                while len(fifo[g]) > b - 1:
                    fifo[g].popitem(last=False)
                fifo[g][block] = None
        elif kind == 1:
            fifo[0].pop(block, None)
            fifo[1].pop(block, None)
        else:
            while len(fifo[g]) > b:
                fifo[g].popitem(last=False)
    _apply(s, np.array(ops, dtype=np.int64).reshape(-1, 4))
    for g in (0, 1):
        assert _members(s, g) == list(fifo[g])
        assert s.log_ctr[g, ghost.COUNT] == len(fifo[g])

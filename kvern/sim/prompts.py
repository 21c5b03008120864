"""A block stream's arrays in the form the compiled engines read them."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from kvern.ingest.stream import BlockStream


class Prompts(NamedTuple):
    """One numba argument instead of six: the requests' blocks and the blocks' shape."""

    offsets: np.ndarray
    """int64[R+1]: request r holds ``ids[offsets[r]:offsets[r+1]]``."""
    ids: np.ndarray
    """int64[N]: interned block ids in prompt order."""
    prompt_tokens: np.ndarray
    """int64[R]"""
    parent: np.ndarray
    """int64[U]: parent block of each unique block, -1 for a first block."""
    neg_depth: np.ndarray
    """int64[U]: minus the block's position in its prompt (the heap's tie-break: deeper first)."""
    block_size: int


_LAST: list[tuple[BlockStream, Prompts]] = []
"""The last stream's arrays: the replicas of a fleet share them instead of copying them each."""


def prompts_of(stream: BlockStream) -> Prompts:
    """The arrays of ``stream`` (the same object for the same stream twice in a row; read-only)."""
    if _LAST and _LAST[0][0] is stream:
        return _LAST[0][1]
    prompts = _prompts(stream)
    _LAST[:] = [(stream, prompts)]
    return prompts


def _prompts(stream: BlockStream) -> Prompts:
    return Prompts(np.ascontiguousarray(stream.req_offsets, dtype=np.int64),
                   stream.block_ids.astype(np.int64), stream.prompt_tokens.astype(np.int64),
                   stream.parent.astype(np.int64), -stream.depth.astype(np.int64), int(stream.block_size))

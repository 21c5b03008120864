"""A block stream's arrays in the form the compiled engines read them: the stream's own."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from kvern.ingest.stream import BlockStream


class Prompts(NamedTuple):
    """One numba argument instead of six: the requests' blocks and the blocks' shape.

    The arrays are the stream's own (no copies): the kernels read int32 ids in place, and a
    stream that grows while an engine runs on it (``kvern.sim.online``) is seen as it grows.
    """

    offsets: np.ndarray
    """int64[R+1]: request r holds ``ids[offsets[r]:offsets[r+1]]``."""
    ids: np.ndarray
    """int32[N]: interned block ids in prompt order."""
    prompt_tokens: np.ndarray
    """int32[R]"""
    parent: np.ndarray
    """int32[U]: parent block of each unique block, -1 for a first block."""
    depth: np.ndarray
    """int32[U]: the block's position in its prompt (the heap's tie-break: deeper first)."""
    block_size: int


def prompts_of(stream: BlockStream) -> Prompts:
    return Prompts(np.ascontiguousarray(stream.req_offsets, dtype=np.int64),
                   np.ascontiguousarray(stream.block_ids, dtype=np.int32),
                   np.ascontiguousarray(stream.prompt_tokens, dtype=np.int32),
                   np.ascontiguousarray(stream.parent, dtype=np.int32),
                   np.ascontiguousarray(stream.depth, dtype=np.int32), int(stream.block_size))

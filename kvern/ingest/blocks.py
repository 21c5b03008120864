"""Chained 64-bit block keys (docs/architecture.md §3).

Contract: ``key[i] = xxh3_64(key[i-1] as 8 little-endian bytes || payload[i])`` with
``key[-1] = xxh3_64(model as UTF-8)``. The payload of a tokenized block is its token ids as
little-endian int32; of a hash-id block, the id as little-endian int64. Equal keys therefore
mean an equal whole prefix of the same model, as in vLLM's block hashes, and the keys are the
same on every machine and every run. Every block of the prompt gets a key, the partial tail
included; whether a profile may match that tail is the simulator's business.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xxhash

_h = xxhash.xxh3_64_intdigest


def root_key(model: str) -> int:
    return _h(model.encode("utf-8"))


def token_block_keys(model: str, token_ids: Sequence[int] | np.ndarray, block_size: int) -> list[int]:
    """Keys of the blocks of one prompt of token ids, ``ceil(len / block_size)`` of them."""
    ids = np.asarray(token_ids, dtype="<i4")
    raw = ids.tobytes()
    step = 4 * block_size
    key = root_key(model)
    keys = []
    for start in range(0, len(raw), step):
        key = _h(key.to_bytes(8, "little") + raw[start : start + step])
        keys.append(key)
    return keys


def hash_id_block_keys(model: str, hash_ids: Sequence[int]) -> list[int]:
    """Chain per-block ids of a hash-id trace into prefix keys.

    Mooncake's ids are already prefix-chained and Bailian's are not; chaining both costs
    nothing and makes every key name a whole prefix either way.
    """
    key = root_key(model)
    keys = []
    for hid in hash_ids:
        key = _h(key.to_bytes(8, "little") + int(hid).to_bytes(8, "little", signed=True))
        keys.append(key)
    return keys

"""Block keys: the contract of blocks.py, computed by hand with xxh3 and pinned."""

from __future__ import annotations

import struct

import xxhash
from hypothesis import given
from hypothesis import strategies as st

from kvern.ingest.blocks import hash_id_block_keys, root_key, token_block_keys


def _h(b: bytes) -> int:
    return xxhash.xxh3_64_intdigest(b)


def test_token_keys_by_hand() -> None:
    ids = [1, 2, 3, 4, 5]
    root = _h(b"m")
    k0 = _h(struct.pack("<Q", root) + struct.pack("<2i", 1, 2))
    k1 = _h(struct.pack("<Q", k0) + struct.pack("<2i", 3, 4))
    k2 = _h(struct.pack("<Q", k1) + struct.pack("<i", 5))  # the partial tail has a key too
    assert token_block_keys("m", ids, 2) == [k0, k1, k2]


def test_keys_are_pinned_across_machines() -> None:
    # xxh3_64 is specified bit-exactly: these literals must hold everywhere, forever
    # (cached traces and baselines depend on them).
    assert root_key("m") == 17334434161750726652
    assert token_block_keys("m", [9707, 1879], 16) == [16688009541086075146]
    assert hash_id_block_keys("default", [0, 1]) == [4626314928347485723, 2256387125917342116]
    root = _h(b"default")
    assert hash_id_block_keys("default", [0])[0] == _h(struct.pack("<Q", root) + struct.pack("<q", 0))


def test_model_is_part_of_the_key() -> None:
    assert token_block_keys("a", [1, 2], 2) != token_block_keys("b", [1, 2], 2)
    assert hash_id_block_keys("a", [7]) != hash_id_block_keys("b", [7])


@given(st.lists(st.integers(0, 151664), min_size=1, max_size=80),
       st.lists(st.integers(0, 151664), min_size=0, max_size=80), st.integers(1, 20))
def test_equal_key_means_equal_prefix(a: list[int], b: list[int], bs: int) -> None:
    ka, kb = token_block_keys("m", a, bs), token_block_keys("m", b, bs)
    for i, (x, y) in enumerate(zip(ka, kb, strict=False)):
        assert (x == y) == (a[: (i + 1) * bs] == b[: (i + 1) * bs])


@given(st.lists(st.integers(-(2**63), 2**63 - 1), max_size=30))
def test_hash_id_keys_chain(ids: list[int]) -> None:
    keys = hash_id_block_keys("m", ids)
    assert len(keys) == len(ids)
    prev = root_key("m")
    for hid, key in zip(ids, keys, strict=True):
        assert key == _h(struct.pack("<Q", prev) + struct.pack("<q", hid))
        prev = key

"""Capacity specs into blocks (docs/architecture.md §5, §11)."""

from __future__ import annotations

import pytest

from kvern.infra.config import Config, KVGeometry, ModelConfig
from kvern.infra.errors import UsageError
from kvern.sim.capacity import capacity_blocks, parse_capacity

LLAMA = KVGeometry(layers=32, kv_heads=8, head_dim=128, dtype_bytes=2, hidden=4096, params=8.0e9)
CFG = Config(models={"llama": ModelConfig(geometry=LLAMA)})


def blocks(text: str, model: str = "llama", block_size: int = 16, points: int | None = None) -> list[int]:
    return capacity_blocks(parse_capacity(text, points), CFG, model, block_size)


def test_blocks_tokens_and_bytes() -> None:
    assert blocks("1000,10000") == [1000, 10000]
    assert blocks("1000 blocks, 2k") == [1000, 2000]
    assert blocks("64k tok") == [4000]  # 64,000 tokens / 16
    assert blocks("64ktok", block_size=512) == [125]
    # Llama-3.1-8B bf16: 131,072 B per token; 8 GiB / 131,072 / 16 = 4096 blocks.
    assert LLAMA.kv_bytes_per_token == 131_072
    assert blocks("8GiB") == [4096]
    assert blocks("8 GiB", block_size=512) == [128]
    assert blocks("1GB") == [10**9 // 131_072 // 16]


def test_ranges_are_log_spaced_and_deduplicated() -> None:
    assert blocks("1k:1M", points=4) == [1000, 10_000, 100_000, 1_000_000]
    assert blocks("1:4", points=10) == [1, 2, 3, 4]
    assert [s.label for s in parse_capacity("1k:1M tok", 2)] == ["1000 tok", "1000000 tok"]
    assert blocks("100,100") == [100]


def test_bytes_without_geometry_name_the_config_key() -> None:
    with pytest.raises(UsageError, match=r"set models\.mystery\.geometry in the config"):
        blocks("8GiB", model="mystery")
    assert blocks("1000", model="mystery") == [1000]  # blocks need no geometry


@pytest.mark.parametrize("bad", ["", "abc", "0", "1.5", "-3", "10:1", "8 parsecs", "3 tok"])
def test_bad_specs_are_usage_errors(bad: str) -> None:
    with pytest.raises(UsageError, match="--capacity"):
        blocks(bad)

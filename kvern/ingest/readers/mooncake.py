"""Mooncake hash-id traces: ``timestamp`` (ms), ``input_length``, ``output_length``, ``hash_ids``.

The ids are already prefix-chained and cover ``trace_block_size`` tokens each (512 in the
published traces); the last id covers the remainder, so a valid line has exactly
``ceil(input_length / trace_block_size)`` ids.
"""

from __future__ import annotations

from typing import Any, ClassVar

from kvern.ingest.readers.base import ReadOptions
from kvern.ingest.records import Fields, RawRequest


def check_hash_ids(f: Fields, hash_ids: list[int], input_length: int, block_size: int, flag: str) -> None:
    want = -(-input_length // block_size)
    if len(hash_ids) != want:
        raise f.error(
            f"hash_ids/length mismatch: {len(hash_ids)} hash_ids but input_length {input_length} "
            f"needs {want} at {block_size} tokens per id (set {flag} if the trace uses another size)"
        )


class MooncakeReader:
    name: ClassVar[str] = "mooncake"

    def __init__(self, opts: ReadOptions) -> None:
        self.block_size = opts.trace_block_size

    @staticmethod
    def matches(obj: dict[str, Any]) -> bool:
        return "hash_ids" in obj and "chat_id" not in obj

    def parse(self, f: Fields) -> RawRequest:
        length = f.int_("input_length", required=True)
        assert length is not None
        hash_ids = f.int_list("hash_ids")
        check_hash_ids(f, hash_ids, length, self.block_size, "--trace-block-size")
        return RawRequest(
            line=f.line,
            request_id=f.str_("request_id"),
            timestamp_s=f.timestamp("timestamp", unit="ms"),
            model=f.str_("model"),
            output_tokens=f.int_("output_length"),
            hash_ids=hash_ids,
            input_length=length,
            block_size=self.block_size,
        )

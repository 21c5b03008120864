"""``kvern proxy --content hashes`` logs: no text, only each prompt's length and block keys.

A line holds ``input_length``, ``block_size`` (tokens per key, the proxy's ``ingest.block_size``)
and ``hash_ids``: the prompt's chained block keys (as signed 64-bit integers) computed by the
proxy with ingest's own tokenizer and template. The block size travels on every line, so no
flag is needed; the output length is the server's ``completion_tokens``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from kvern.ingest.readers.base import ReadOptions
from kvern.ingest.readers.mooncake import check_hash_ids
from kvern.ingest.records import Fields, RawRequest


class ProxyHashesReader:
    name: ClassVar[str] = "proxy-hashes"

    def __init__(self, opts: ReadOptions) -> None:
        self._block_size: int | None = None

    @staticmethod
    def matches(obj: dict[str, Any]) -> bool:
        return "hash_ids" in obj and "block_size" in obj

    def parse(self, f: Fields) -> RawRequest:
        length = f.int_("input_length", required=True)
        block_size = f.int_("block_size", required=True, minimum=1)
        assert length is not None and block_size is not None
        if self._block_size is not None and block_size != self._block_size:
            raise f.error(f"block_size {block_size} differs from {self._block_size} on earlier lines; "
                          "one trace has one block size")
        self._block_size = block_size
        hash_ids = f.int_list("hash_ids")
        check_hash_ids(f, hash_ids, length, block_size, "the proxy's ingest.block_size")
        return RawRequest(
            line=f.line,
            request_id=f.str_("request_id"),
            timestamp_s=f.timestamp("timestamp"),
            model=f.str_("model"),
            output_tokens=f.int_("output_length"),
            hash_ids=hash_ids,
            input_length=length,
            block_size=block_size,
        )

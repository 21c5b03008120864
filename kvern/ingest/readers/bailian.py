"""Alibaba Bailian hash-id traces: per-block (unchained) ids, one chat turn per line.

Fields: ``chat_id``, ``parent_chat_id`` (-1 for a first turn), ``timestamp`` (s),
``input_length``, ``output_length``, ``type``, ``turn``, ``hash_ids`` at 16 tokens per id.
The session of a turn is the ``chat_id`` at the root of its parent chain, so every turn of
one conversation shares a session id. The ids are chained into prefix keys later, as for
every hash-id trace (``blocks.hash_id_block_keys``).
"""

from __future__ import annotations

from typing import Any, ClassVar

from kvern.ingest.readers.base import ReadOptions
from kvern.ingest.readers.mooncake import check_hash_ids
from kvern.ingest.records import Fields, RawRequest


class BailianReader:
    name: ClassVar[str] = "bailian"

    def __init__(self, opts: ReadOptions) -> None:
        self.block_size = opts.bailian_block_size
        self._root: dict[str, str] = {}

    @staticmethod
    def matches(obj: dict[str, Any]) -> bool:
        return "hash_ids" in obj and "chat_id" in obj

    def parse(self, f: Fields) -> RawRequest:
        chat_id = f.str_("chat_id", required=True)
        assert chat_id is not None
        parent = f.str_("parent_chat_id")
        length = f.int_("input_length", required=True)
        assert length is not None
        hash_ids = f.int_list("hash_ids")
        check_hash_ids(f, hash_ids, length, self.block_size, "ingest.bailian_block_size")
        # A parent not seen (yet) roots its own chain: the log may start mid-conversation.
        root = chat_id if parent in (None, "-1") else self._root.get(parent, parent)
        self._root[chat_id] = root
        return RawRequest(
            line=f.line,
            request_id=chat_id,
            timestamp_s=f.timestamp("timestamp", unit="s"),
            model=f.str_("model"),
            session_id=root,
            output_tokens=f.int_("output_length"),
            hash_ids=hash_ids,
            input_length=length,
            block_size=self.block_size,
        )

"""OpenAI chat-completions request bodies (``model``, ``messages``, optional ``tools``).

Content may be a string or a list of parts. Text parts are joined with ``\n``, as vLLM does
when it renders a list of text parts for a string-content template; any other part (image,
audio, file) fails the line, or is dropped and counted under ``--skip-invalid``. A tool call's
``arguments`` JSON string is parsed into an object, again as vLLM does before rendering, so the
template's ``tojson`` does not encode it twice.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from kvern.ingest.readers.base import ReadOptions
from kvern.ingest.readers.common import is_wrapper, metadata, unwrap
from kvern.ingest.records import Fields, RawRequest


class OpenAIChatReader:
    name: ClassVar[str] = "openai-chat"

    def __init__(self, opts: ReadOptions) -> None:
        self.skip_invalid = opts.skip_invalid

    @staticmethod
    def matches(obj: dict[str, Any]) -> bool:
        body = obj["request"] if is_wrapper(obj) else obj
        return "messages" in body

    def parse(self, f: Fields) -> RawRequest:
        body, resp = unwrap(f)
        req = metadata(f, body, resp)
        raw = body.require("messages")
        if not isinstance(raw, list) or not raw:
            raise f.error("'messages' must be a non-empty list of message objects")
        skipped = [0]
        req.messages = [self._message(f, i, m, skipped) for i, m in enumerate(raw)]
        req.skipped_parts = skipped[0]
        tools = body.obj.get("tools")
        if tools is not None:
            if not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools):
                raise f.error("'tools' must be a list of tool objects")
            req.tools = tools or None
        return req

    def _message(self, f: Fields, i: int, m: Any, skipped: list[int]) -> dict[str, Any]:
        if not isinstance(m, dict):
            raise f.error(f"messages[{i}] must be an object, got {type(m).__name__}")
        role = m.get("role")
        if not isinstance(role, str) or not role:
            raise f.error(f"messages[{i}] has no 'role' string")
        msg = dict(m)
        msg["content"] = self._content(f, i, m.get("content"), skipped)
        calls = m.get("tool_calls")
        if calls is not None:
            if not isinstance(calls, list):
                raise f.error(f"messages[{i}].tool_calls must be a list")
            msg["tool_calls"] = [_parsed_call(f, i, j, c) for j, c in enumerate(calls)]
        return msg

    def _content(self, f: Fields, i: int, content: Any, skipped: list[int]) -> str:
        if content is None:
            return ""
        if isinstance(content, str):
            return content
        if not isinstance(content, list):
            raise f.error(f"messages[{i}].content must be a string or a list of parts, "
                          f"got {type(content).__name__}")
        texts = []
        for j, part in enumerate(content):
            if isinstance(part, str):
                texts.append(part)
                continue
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text" and isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif self.skip_invalid:
                skipped[0] += 1
            else:
                raise f.error(f"messages[{i}].content[{j}] is a non-text part (type {kind!r}); "
                              f"kvern counts text tokens only (--skip-invalid drops such parts)")
        return "\n".join(texts)


def _parsed_call(f: Fields, i: int, j: int, call: Any) -> Any:
    if not isinstance(call, dict):
        raise f.error(f"messages[{i}].tool_calls[{j}] must be an object")
    fn = call.get("function")
    if isinstance(fn, dict) and isinstance(fn.get("arguments"), str):
        try:
            args = json.loads(fn["arguments"])
        except json.JSONDecodeError:
            return call
        if isinstance(args, dict):
            return {**call, "function": {**fn, "arguments": args}}
    return call

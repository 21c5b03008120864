"""Completions request bodies (``prompt`` as a string or a list of token ids) and
pre-tokenized lines (``prompt_token_ids`` or ``tokens``).

A string prompt is tokenized as the server does for ``/v1/completions``: no chat template,
the tokenizer's own special tokens added (a BOS for Llama, none for Qwen). A batch of prompts
in one line is not a single request and is refused.
"""

from __future__ import annotations

from typing import Any, ClassVar

from kvern.ingest.readers.base import ReadOptions
from kvern.ingest.readers.common import is_wrapper, metadata, unwrap
from kvern.ingest.records import Fields, RawRequest

_TOKEN_KEYS = ("prompt_token_ids", "tokens")


class CompletionsReader:
    name: ClassVar[str] = "completions"

    def __init__(self, opts: ReadOptions) -> None:
        pass

    @staticmethod
    def matches(obj: dict[str, Any]) -> bool:
        body = obj["request"] if is_wrapper(obj) else obj
        return "prompt" in body and "messages" not in body

    def parse(self, f: Fields) -> RawRequest:
        body, resp = unwrap(f)
        req = metadata(f, body, resp)
        prompt = body.require("prompt")
        if isinstance(prompt, str):
            req.prompt = prompt
        elif isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
            raise f.error(f"'prompt' is a batch of {len(prompt)} prompts; log one request per line")
        else:
            req.token_ids = body.int_list("prompt", token_ids=True)
            if not req.token_ids:
                raise f.error("'prompt' is empty")
        return req


class TokensReader:
    name: ClassVar[str] = "tokens"

    def __init__(self, opts: ReadOptions) -> None:
        pass

    @staticmethod
    def matches(obj: dict[str, Any]) -> bool:
        body = obj["request"] if is_wrapper(obj) else obj
        return any(k in body for k in _TOKEN_KEYS) and "messages" not in body

    def parse(self, f: Fields) -> RawRequest:
        body, resp = unwrap(f)
        req = metadata(f, body, resp)
        key = next((k for k in _TOKEN_KEYS if body.has(k)), _TOKEN_KEYS[0])
        req.token_ids = body.int_list(key, token_ids=True)
        if not req.token_ids:
            raise f.error(f"'{key}' is empty")
        return req

"""Request -> prompt token ids, fast on multi-turn logs.

Each request of a chat repeats every earlier turn, so naive tokenizing is quadratic in the
conversation. ``SegmentEncoder`` renders the chat template to text (cheap), cuts the text at
the tokenizer's added tokens and tokenizes each distinct piece once, then joins the cached ids.

Why the ids are exactly ``apply_chat_template(tokenize=True)``'s: a fast (Rust) tokenizer first
splits its input at added tokens that are matched on the raw text (``normalized=False``), then
normalizes, pre-tokenizes and BPE-encodes each piece on its own; nothing crosses a split. Cutting
at the same tokens first and encoding the pieces separately is therefore the same computation.
It stops being the same when an added token strips neighbouring whitespace (``lstrip``/
``rstrip``) or must stand alone as a word (``single_word``): for such tokenizers ``splittable``
is false and every request is tokenized whole (still correct, just slower).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from typing import Any

import numpy as np

from kvern.ingest.normalize import Normalizer
from kvern.ingest.records import RawRequest

_CACHE_PIECES = 1 << 16


class SegmentEncoder:
    """Text -> ids through a cache of the pieces between added tokens."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        backend = getattr(tokenizer, "_tokenizer", None)
        self._backend = backend
        added = list(tokenizer.added_tokens_decoder.values()) if backend is not None else []
        self.splittable = backend is not None and all(
            not (t.lstrip or t.rstrip or t.single_word) for t in added if not t.normalized
        )
        raw = sorted({t.content for t in added if not t.normalized}, key=len, reverse=True)
        # Leftmost, then longest, as the tokenizer's own added-token matcher.
        self._split = re.compile("(" + "|".join(map(re.escape, raw)) + ")") if raw else None
        self._added_id = {t.content: i for i, t in tokenizer.added_tokens_decoder.items()}
        self._pieces: OrderedDict[str, np.ndarray] = OrderedDict()
        self.pieces_encoded = 0

    def encode(self, text: str) -> np.ndarray:
        if not self.splittable or self._split is None:
            return self._encode_whole(text)
        parts = []
        for i, piece in enumerate(self._split.split(text)):
            if not piece:
                continue
            if i % 2:  # the captured separators sit at odd positions
                parts.append(np.array([self._added_id[piece]], dtype=np.int32))
            else:
                parts.append(self._piece(piece))
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)

    def _piece(self, piece: str) -> np.ndarray:
        ids = self._pieces.get(piece)
        if ids is not None:
            self._pieces.move_to_end(piece)
            return ids
        ids = self._encode_whole(piece)
        self.pieces_encoded += 1
        self._pieces[piece] = ids
        if len(self._pieces) > _CACHE_PIECES:
            self._pieces.popitem(last=False)
        return ids

    def _encode_whole(self, text: str) -> np.ndarray:
        if self._backend is not None:
            ids = self._backend.encode(text, add_special_tokens=False).ids
        else:
            ids = self.tokenizer.encode(text, add_special_tokens=False)
        return np.asarray(ids, dtype=np.int32)


class RequestEncoder:
    """One model's requests -> token ids: normalize, apply the chat template, encode."""

    def __init__(self, tokenizer: Any, normalizer: Normalizer) -> None:
        self.tokenizer = tokenizer
        self.normalizer = normalizer
        self.segments = SegmentEncoder(tokenizer)

    def encode(self, req: RawRequest) -> np.ndarray:
        if req.token_ids is not None:
            return np.asarray(req.token_ids, dtype=np.int32)  # range checked by the reader
        if req.prompt is not None:
            return self.encode_prompt(self.normalizer.text(req.prompt))
        assert req.messages is not None
        return self.segments.encode(self.render(self.normalizer.messages(req.messages), req.tools))

    def render(self, messages: list[dict[str, Any]], tools: list[Any] | None) -> str:
        text: str = self.tokenizer.apply_chat_template(
            messages, tools=tools, add_generation_prompt=True, tokenize=False)
        return text

    def encode_prompt(self, prompt: str) -> np.ndarray:
        """A completion prompt: no template, the tokenizer's own special tokens (e.g. BOS) added."""
        return np.asarray(self.tokenizer(prompt, add_special_tokens=True)["input_ids"], dtype=np.int32)

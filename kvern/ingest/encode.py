"""Request -> prompt token ids, fast on multi-turn logs.

Each request of a chat repeats every earlier turn, so naive tokenizing is quadratic in the
conversation. ``RequestEncoder`` renders the chat template to text (cheap); ``SegmentEncoder``
cuts the text at the tokenizer's added tokens, tokenizes each distinct piece once and joins the
cached ids.

Why the ids are exactly ``apply_chat_template(tokenize=True)``'s: a fast (Rust) tokenizer first
splits its input at added tokens that are matched on the raw text (``normalized=False``), then
normalizes, pre-tokenizes and BPE-encodes each piece on its own; nothing crosses a split. Cutting
at the same tokens first and encoding the pieces separately is therefore the same computation.
It stops being the same when an added token strips neighbouring whitespace (``lstrip``/
``rstrip``), must stand alone as a word (``single_word``), or when the tokenizer is set to encode
special tokens as text (``split_special_tokens``): for such tokenizers ``splittable`` is false and
every request is tokenized whole (still correct, just slower).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from kvern.infra.interrupt import LONG_TEXT, interruptible
from kvern.ingest import chatml
from kvern.ingest.normalize import Normalizer
from kvern.ingest.records import RawRequest

_CACHE_PIECES = 1 << 16


class SegmentEncoder:
    """Text -> ids through a cache of the pieces between added tokens."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        backend = getattr(tokenizer, "_tokenizer", None)
        self._backend = backend
        added = list(tokenizer.added_tokens_decoder.items()) if backend is not None else []
        self.splittable = (
            backend is not None
            and not getattr(backend, "encode_special_tokens", False)
            and not getattr(tokenizer, "split_special_tokens", False)
            and all(not (t.lstrip or t.rstrip or t.single_word) for _, t in added if not t.normalized)
        )
        raw = sorted({t.content for _, t in added if not t.normalized}, key=len, reverse=True)
        # Leftmost, then longest, as the tokenizer's own added-token matcher.
        self._split = re.compile("(" + "|".join(map(re.escape, raw)) + ")") if raw else None
        # One table for both kinds of piece: the split never leaves an added token inside a text
        # piece, so an added token's content can only ever be a separator.
        self._fixed = {t.content: np.array([i], dtype=np.int32) for i, t in added if not t.normalized}
        self._fixed[""] = np.zeros(0, dtype=np.int32)
        self._pieces: dict[str, np.ndarray] = dict(self._fixed)
        self.pieces_encoded = 0

    def encode(self, text: str) -> np.ndarray:
        if not self.splittable or self._split is None:
            return self._encode_whole(text)
        cache = self._pieces
        parts = [cache[p] if p in cache else self._miss(p) for p in self._split.split(text)]
        return np.concatenate(parts)

    def _miss(self, piece: str) -> np.ndarray:
        if len(self._pieces) >= _CACHE_PIECES + len(self._fixed):
            self._pieces = dict(self._fixed)  # bounded memory; a long log just re-encodes some pieces
        ids = self._pieces[piece] = self._encode_whole(piece)
        self.pieces_encoded += 1
        return ids

    def _encode_whole(self, text: str) -> np.ndarray:
        if self._backend is not None:
            backend = self._backend
            if len(text) >= LONG_TEXT:  # encode_batch releases the GIL, so Ctrl-C stays prompt
                ids = interruptible(lambda: backend.encode_batch([text], add_special_tokens=False)[0].ids)
            else:
                ids = backend.encode(text, add_special_tokens=False).ids
        elif len(text) >= LONG_TEXT:
            ids = interruptible(lambda: self.tokenizer.encode(text, add_special_tokens=False))
        else:
            ids = self.tokenizer.encode(text, add_special_tokens=False)
        return np.asarray(ids, dtype=np.int32)


def _template_errors() -> tuple[type[BaseException], ...]:
    """What a chat template raises on a request it cannot render (jinja2 is imported here, not
    at start-up: transformers' templates run on it, kvern's own ChatML does not)."""
    import jinja2

    return (TypeError, KeyError, AttributeError, ValueError, jinja2.TemplateError)


class TemplateError(ValueError):
    """The chat template cannot render this request (e.g. a tool call without a name)."""


class RequestEncoder:
    """One model's requests -> token ids: normalize, apply the chat template, encode.

    kvern's own ChatML template is rendered by ``chatml.render`` (same text, no Jinja cost);
    any other template by the tokenizer's ``apply_chat_template``.
    """

    def __init__(self, tokenizer: Any, normalizer: Normalizer) -> None:
        self.tokenizer = tokenizer
        self.normalizer = normalizer
        self.segments = SegmentEncoder(tokenizer)
        self.native_template = chatml.is_kvern_chatml(getattr(tokenizer, "chat_template", None))

    def encode(self, req: RawRequest) -> np.ndarray:
        if req.token_ids is not None:
            return np.asarray(req.token_ids, dtype=np.int32)  # range checked by the reader
        if req.prompt is not None:
            return self.encode_prompt(self.normalizer.text(req.prompt))
        assert req.messages is not None
        return self.segments.encode(self.render(self.normalizer.messages(req.messages), req.tools))

    def render(self, messages: list[dict[str, Any]], tools: list[Any] | None) -> str:
        if not self.native_template and getattr(self.tokenizer, "chat_template", None) is None:
            raise TemplateError("the tokenizer has no chat template (a base model's?); map this model to "
                                "an instruct model's tokenizer under models.<name>.tokenizer")
        try:
            if self.native_template:
                return chatml.render(messages, tools, add_generation_prompt=True)
            text: str = self.tokenizer.apply_chat_template(
                messages, tools=tools, add_generation_prompt=True, tokenize=False)
        except _template_errors() as e:  # evaluated only when something was raised
            raise TemplateError(
                f"the chat template cannot render this request: {type(e).__name__}: {e}") from e
        return text

    def encode_prompt(self, prompt: str) -> np.ndarray:
        """A completion prompt: no template, the tokenizer's own special tokens (e.g. BOS) added."""
        if len(prompt) >= LONG_TEXT:  # a minute of tokenizing must not hold Ctrl-C back
            ids = interruptible(lambda: self.tokenizer(prompt, add_special_tokens=True)["input_ids"])
        else:
            ids = self.tokenizer(prompt, add_special_tokens=True)["input_ids"]
        return np.asarray(ids, dtype=np.int32)

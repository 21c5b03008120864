"""Fast multi-turn tokenization equals a full apply_chat_template, always."""

from __future__ import annotations

import functools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import AddedToken
from transformers import PreTrainedTokenizerFast

from kvern.ingest import chatml
from kvern.ingest.encode import RequestEncoder, SegmentEncoder, TemplateError
from kvern.ingest.normalize import Normalizer
from kvern.ingest.records import RawRequest
from kvern.ingest.tokenizer import default_tokenizer_dir, get_tokenizer

TOK = get_tokenizer("kvern:qwen2.5")
ENCODER = RequestEncoder(TOK, Normalizer([]))  # shared: its piece cache stays warm across examples

# Text that stresses the splitting: unicode, whitespace runs, and the added tokens themselves.
_pieces = st.sampled_from(["<|im_start|>", "<|im_end|>", "<tool_call>", "</tool_call>", "<|endoftext|>",
                           "\n", "  ", "\t", "日本語", "é", "e\u0301", "😀", "'s", "123456", "<|", "|>"])
_text = st.lists(st.one_of(st.text(st.characters(blacklist_categories=("Cs",)), max_size=20), _pieces),
                 max_size=6).map("".join)
_args = st.dictionaries(st.sampled_from(["city", "n", "ünï"]), st.one_of(st.integers(), _text), max_size=2)
_call = st.builds(lambda name, args: {"type": "function", "function": {"name": name, "arguments": args}},
                  st.sampled_from(["get_weather", "f"]), _args)
_message = st.one_of(
    st.builds(lambda r, c: {"role": r, "content": c},
              st.sampled_from(["user", "assistant", "system"]), _text),
    st.builds(lambda c, calls: {"role": "assistant", "content": c, "tool_calls": calls},
              st.one_of(st.just(""), _text), st.lists(_call, min_size=1, max_size=2)),
    st.builds(lambda c: {"role": "tool", "content": c}, _text),
)
_tool = st.builds(lambda n, d: {"type": "function", "function": {"name": n, "description": d}},
                  st.sampled_from(["get_weather", "search"]), _text)


def test_encoder_uses_the_native_renderer_for_kvern_chatml() -> None:
    assert ENCODER.native_template


@settings(max_examples=200, deadline=None)
@given(st.lists(_message, min_size=1, max_size=6),
       st.one_of(st.none(), st.lists(_tool, min_size=1, max_size=2)), st.booleans())
def test_native_render_equals_jinja(messages: list[dict[str, Any]], tools: list[Any] | None,
                                   gen: bool) -> None:
    want = TOK.apply_chat_template(messages, tools=tools, add_generation_prompt=gen, tokenize=False)
    assert chatml.render(messages, tools, add_generation_prompt=gen) == want


@settings(max_examples=40, deadline=None)
@given(st.lists(_message, min_size=1, max_size=4))
def test_other_templates_go_through_jinja(messages: list[dict[str, Any]]) -> None:
    tok = _other_template_tokenizer()
    enc = RequestEncoder(tok, Normalizer([]))
    assert not enc.native_template
    assert enc.encode(RawRequest(line=1, messages=messages)).tolist() == _full(messages, None, tok)


@functools.cache
def _other_template_tokenizer() -> Any:
    tok = PreTrainedTokenizerFast.from_pretrained(str(default_tokenizer_dir()))
    tok.chat_template = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n"
                         "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    return tok


def test_unrenderable_request_is_a_template_error() -> None:
    call = {"function": {"name": None, "arguments": {}}}
    bad = [{"role": "assistant", "content": "", "tool_calls": [call]}]
    with pytest.raises(TemplateError, match="cannot render"):
        ENCODER.encode(RawRequest(line=1, messages=bad))


def test_tokenizer_without_template_is_a_template_error() -> None:
    tok = PreTrainedTokenizerFast.from_pretrained(str(default_tokenizer_dir()))
    tok.chat_template = None
    request = RawRequest(line=1, messages=[{"role": "user", "content": "x"}])
    with pytest.raises(TemplateError, match="no chat template"):
        RequestEncoder(tok, Normalizer([])).encode(request)


def _full(messages: list[dict[str, Any]], tools: list[Any] | None, tok: Any = TOK) -> list[int]:
    ids: list[int] = tok.apply_chat_template(messages, tools=tools, add_generation_prompt=True,
                                             tokenize=True, return_dict=False)
    return ids


@settings(max_examples=200, deadline=None)
@given(st.lists(_message, min_size=1, max_size=6),
       st.one_of(st.none(), st.lists(_tool, min_size=1, max_size=2)))
def test_fast_path_equals_full_template(messages: list[dict[str, Any]], tools: list[Any] | None) -> None:
    got = ENCODER.encode(RawRequest(line=1, messages=messages, tools=tools))
    assert got.tolist() == _full(messages, tools)


@settings(max_examples=30, deadline=None)
@given(st.lists(_text, min_size=1, max_size=5), st.lists(_text, min_size=5, max_size=5))
def test_growing_conversation(users: list[str], replies: list[str]) -> None:
    """Each turn repeats the history: ids of every request still equal the full template's."""
    enc = RequestEncoder(TOK, Normalizer([]))
    messages: list[dict[str, Any]] = [{"role": "system", "content": "shared system prompt"}]
    for user, answer in zip(users, replies, strict=False):
        messages.append({"role": "user", "content": user})
        assert enc.encode(RawRequest(line=1, messages=list(messages))).tolist() == _full(messages, None)
        messages.append({"role": "assistant", "content": answer})


def test_history_pieces_are_tokenized_once() -> None:
    enc = RequestEncoder(TOK, Normalizer([]))
    messages: list[dict[str, Any]] = [{"role": "system", "content": "S"}]
    for turn in range(5):
        messages.append({"role": "user", "content": f"question {turn}"})
        enc.encode(RawRequest(line=1, messages=list(messages)))
        messages.append({"role": "assistant", "content": f"answer {turn}"})
    # Distinct pieces: "system\nS", "\n", "assistant\n", 5 user turns, 4 answers.
    assert enc.segments.pieces_encoded == 3 + 5 + 4


def test_stripping_added_token_falls_back_to_whole_text() -> None:
    tok = PreTrainedTokenizerFast.from_pretrained(str(default_tokenizer_dir()))
    tok.add_tokens([AddedToken("<|strip|>", lstrip=True, rstrip=True, normalized=False)])
    seg = SegmentEncoder(tok)
    assert not seg.splittable
    text = "a  <|strip|>  b <|im_start|>x"
    assert seg.encode(text).tolist() == tok(text, add_special_tokens=False)["input_ids"]
    assert SegmentEncoder(TOK).splittable


def test_special_tokens_encoded_as_text_fall_back() -> None:
    tok = PreTrainedTokenizerFast.from_pretrained(str(default_tokenizer_dir()))
    tok._tokenizer.encode_special_tokens = True
    seg = SegmentEncoder(tok)
    assert not seg.splittable
    text = "<|im_start|>user\nhi<|im_end|>"
    assert seg.encode(text).tolist() == tok._tokenizer.encode(text, add_special_tokens=False).ids
    assert 151644 not in seg.encode(text).tolist()


@pytest.mark.parametrize("prompt", ["Hello world", "", "<|im_start|>user\nhi"])
def test_completion_prompt(prompt: str) -> None:
    got = ENCODER.encode(RawRequest(line=1, prompt=prompt)).tolist()
    assert got == TOK(prompt)["input_ids"]

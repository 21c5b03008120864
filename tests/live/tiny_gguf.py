"""A tiny random-weight Llama GGUF around kvern's default tokenizer, written at test time.

The weights are noise (seeded), so the text it writes is noise too, but every token id, chat
template and cache decision llama-server makes is real: the vocabulary, merges and added
tokens are Qwen2.5's (a GPT-2 style byte BPE with llama.cpp's ``qwen2`` pre-tokenizer) and the
chat template is kvern's ChatML template. The 151,665-row embedding is stored as Q8_0 with a
width of 32 (5 MB); the file is about 14 MB, most of the rest the vocabulary and its merges.
"""

from __future__ import annotations

import json
from pathlib import Path

import gguf
import numpy as np
from gguf.quants import quantize

N_EMBD = 32
N_HEAD = 2
N_HEAD_KV = 1
N_LAYER = 2
N_FF = 64
N_CTX_TRAIN = 32768


def _vocab(tokenizer_dir: Path) -> tuple[list[str], list[int], list[str], dict[str, int]]:
    spec = json.loads((tokenizer_dir / "tokenizer.json").read_text(encoding="utf-8"))
    vocab: dict[str, int] = spec["model"]["vocab"]
    added = {t["id"]: t for t in spec.get("added_tokens", [])}
    n = max([*vocab.values(), *added]) + 1
    tokens = [f"[PAD{i}]" for i in range(n)]
    types = [gguf.TokenType.UNUSED] * n
    for text, i in vocab.items():
        tokens[i], types[i] = text, gguf.TokenType.NORMAL
    special: dict[str, int] = {}
    for i, t in added.items():
        tokens[i] = t["content"]
        types[i] = gguf.TokenType.CONTROL if t.get("special") else gguf.TokenType.USER_DEFINED
        special[t["content"]] = i
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]]
    return tokens, [int(t) for t in types], merges, special


def _chat_template(tokenizer_dir: Path) -> str:
    cfg = json.loads((tokenizer_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    template = cfg.get("chat_template")
    if template is None and (tokenizer_dir / "chat_template.jinja").is_file():
        template = (tokenizer_dir / "chat_template.jinja").read_text(encoding="utf-8")
    assert isinstance(template, str), "the tokenizer folder has no chat template"
    return template


def write_tiny_llama(path: Path, tokenizer_dir: Path, seed: int = 0) -> Path:
    """Write the model to ``path`` and return it."""
    tokens, types, merges, special = _vocab(tokenizer_dir)
    rng = np.random.default_rng(seed)

    def noise(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.02).astype(np.float32)

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("kvern-tiny-random")
    w.add_context_length(N_CTX_TRAIN)
    w.add_embedding_length(N_EMBD)
    w.add_block_count(N_LAYER)
    w.add_feed_forward_length(N_FF)
    w.add_head_count(N_HEAD)
    w.add_head_count_kv(N_HEAD_KV)
    w.add_rope_dimension_count(N_EMBD // N_HEAD)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_rope_freq_base(1_000_000.0)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(special["<|endoftext|>"])
    w.add_eos_token_id(special["<|im_end|>"])
    w.add_eot_token_id(special["<|im_end|>"])
    w.add_pad_token_id(special["<|endoftext|>"])
    w.add_add_bos_token(False)
    w.add_chat_template(_chat_template(tokenizer_dir))

    embd = quantize(noise(len(tokens), N_EMBD), gguf.GGMLQuantizationType.Q8_0)
    w.add_tensor("token_embd.weight", embd, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    w.add_tensor("output_norm.weight", np.ones(N_EMBD, dtype=np.float32))
    head_dim = N_EMBD // N_HEAD
    for i in range(N_LAYER):
        p = f"blk.{i}."
        w.add_tensor(p + "attn_norm.weight", np.ones(N_EMBD, dtype=np.float32))
        w.add_tensor(p + "attn_q.weight", noise(N_EMBD, N_EMBD))
        w.add_tensor(p + "attn_k.weight", noise(N_HEAD_KV * head_dim, N_EMBD))
        w.add_tensor(p + "attn_v.weight", noise(N_HEAD_KV * head_dim, N_EMBD))
        w.add_tensor(p + "attn_output.weight", noise(N_EMBD, N_EMBD))
        w.add_tensor(p + "ffn_norm.weight", np.ones(N_EMBD, dtype=np.float32))
        w.add_tensor(p + "ffn_gate.weight", noise(N_FF, N_EMBD))
        w.add_tensor(p + "ffn_up.weight", noise(N_FF, N_EMBD))
        w.add_tensor(p + "ffn_down.weight", noise(N_EMBD, N_FF))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path

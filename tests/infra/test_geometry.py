"""KV geometry without hand-typing (issue 16): from a model's config.json (a folder or the local
Hugging Face cache) or the built-in table; an explicit geometry always wins, and an unknown
model stays without one (savings "n/a", never a guess)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kvern.infra.config import Config, KVGeometry, ModelConfig
from kvern.infra.geometry import builtin_geometry

LLAMA_CONFIG = {
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "hidden_size": 4096,
    "torch_dtype": "bfloat16",
}


def test_config_json_in_a_folder_gives_the_geometry(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({**LLAMA_CONFIG, "torch_dtype": "float32"}))
    cfg = Config(models={"mine": ModelConfig(config_json=str(tmp_path))})
    g = cfg.model("mine").geometry
    assert g is not None and (g.layers, g.kv_heads, g.head_dim, g.dtype_bytes, g.hidden) == (
        32,
        8,
        128,
        4,
        4096,
    )
    assert g.kv_bytes_per_token == 2 * 32 * 8 * 128 * 4


def test_the_local_hf_cache_is_searched_by_hub_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    snap = tmp_path / "models--acme--tiny-model" / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (snap / "config.json").write_text(
        json.dumps({"num_hidden_layers": 4, "num_attention_heads": 8, "hidden_size": 512, "head_dim": 32})
    )
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    g = Config().model("acme/tiny-model").geometry
    assert g is not None and (g.layers, g.kv_heads, g.head_dim, g.dtype_bytes) == (4, 8, 32, 2)
    g = Config(models={"served": ModelConfig(tokenizer="acme/tiny-model")}).model("served").geometry
    assert g is not None and g.layers == 4


@pytest.mark.parametrize(
    "name, layers, kv_bytes",
    [
        ("meta-llama/Llama-3.1-8B-Instruct", 32, 131_072),
        ("llama3.1-8b", 32, 131_072),
        ("Qwen/Qwen2.5-7B-Instruct", 28, 57_344),
        ("qwen2.5-72b-instruct", 80, 327_680),
    ],
)
def test_the_builtin_table_covers_common_models(name: str, layers: int, kv_bytes: int) -> None:
    g = Config().model(name).geometry
    assert g is not None and g.layers == layers and g.kv_bytes_per_token == kv_bytes and g.params


def test_an_explicit_geometry_wins_and_unknown_models_stay_unknown(tmp_path: Path) -> None:
    own = KVGeometry(layers=1, kv_heads=1, head_dim=8)
    assert Config(models={"llama3.1-8b": ModelConfig(geometry=own)}).model("llama3.1-8b").geometry == own
    assert Config().model("m").geometry is None and builtin_geometry("mystery") is None
    (tmp_path / "config.json").write_text("{not json")
    assert Config(models={"x": ModelConfig(config_json=str(tmp_path))}).model("x").geometry is None

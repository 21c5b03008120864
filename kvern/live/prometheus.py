"""The server's own view of its prefix cache, from its Prometheus ``/metrics`` before and after.

Counters differ by engine; each entry below names the counters whose growth over the run gives
a hit rate in tokens: hits / queries.

- vLLM: ``vllm:prefix_cache_hits_total`` / ``vllm:prefix_cache_queries_total`` (tokens).
- SGLang: ``sglang:cached_tokens_total`` / ``sglang:prompt_tokens_total``.
- llama.cpp (``--metrics``): ``llamacpp:prompt_tokens_cached_total`` over it plus
  ``llamacpp:prompt_tokens_total`` (which counts only the tokens it computed).

Labelled series (one per model or engine) are summed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import aiohttp

from kvern.infra.jsondata import parse_json

# engine: (hit counter, query counters summed)
_HIT_RATE_COUNTERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "vllm": ("vllm:prefix_cache_hits_total", ("vllm:prefix_cache_queries_total",)),
    "sglang": ("sglang:cached_tokens_total", ("sglang:prompt_tokens_total",)),
    "llamacpp": ("llamacpp:prompt_tokens_cached_total",
                 ("llamacpp:prompt_tokens_cached_total", "llamacpp:prompt_tokens_total")),
}


@dataclass(frozen=True, slots=True)
class ServerCacheStats:
    engine: str
    hit_tokens: float
    query_tokens: float

    @property
    def hit_rate(self) -> float | None:
        return self.hit_tokens / self.query_tokens if self.query_tokens > 0 else None


def parse_metrics(text: str) -> dict[str, float]:
    """Sum every sample of each metric name in a Prometheus text exposition."""
    totals: dict[str, float] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, rest = line.partition("{")
        if sep and " " not in name:
            tail = rest.rpartition("}")[2]
        else:
            name, _, tail = line.partition(" ")
        fields = tail.split()
        if not fields:
            continue
        try:
            value = float(fields[0])
        except ValueError:
            continue
        if math.isfinite(value):
            totals[name] = totals.get(name, 0.0) + value
    return totals


async def get_json(session: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> dict | None:
    """A JSON object from ``GET url`` (e.g. llama-server's ``/props``), or None."""
    try:
        async with session.get(url, headers=headers, timeout=aiohttp.ClientTimeout(total=5.0)) as resp:
            data = parse_json(await resp.read()) if resp.status == 200 else None
    except (aiohttp.ClientError, TimeoutError, ValueError):  # JsonProblem is a ValueError
        return None
    return data if isinstance(data, dict) else None


async def scrape(session: aiohttp.ClientSession, base: str,
                 headers: dict[str, str]) -> dict[str, float] | None:
    """``GET /metrics``; ``None`` when the server has none (404, refused, not Prometheus)."""
    try:
        async with session.get(base + "/metrics", headers=headers,
                               timeout=aiohttp.ClientTimeout(total=5.0)) as resp:
            if resp.status != 200:
                return None
            text = await resp.text(errors="replace")
    except (aiohttp.ClientError, TimeoutError):
        return None
    values = parse_metrics(text)
    return values or None


def cache_stats(before: dict[str, float] | None, after: dict[str, float] | None) -> ServerCacheStats | None:
    """Growth of the first engine's cache counters found in both scrapes."""
    if not before or not after:
        return None
    for engine, (hits, queries) in _HIT_RATE_COUNTERS.items():
        names = (hits, *queries)
        if all(n in after for n in names):
            grow = {n: after[n] - before.get(n, 0.0) for n in names}
            return ServerCacheStats(engine, grow[hits], sum(grow[q] for q in queries))
    return None

"""The time model: a replica's queue into an estimated TTFT (docs/cluster.md#time-model).

An estimate, and labelled so everywhere it appears; it never changes what is cached.

* **Prefill.** A request's uncached tokens cost the prefill FLOPs of docs/architecture.md §5
  (``2·params + 4·layers·hidden·p`` for the token at position p) at ``savings.effective_flops``;
  for a model without ``params``/``hidden`` in its geometry, ``cluster.prefill_tokens_per_s``.
* **Transfer.** Tokens loaded from an offload tier cost ``kv_bytes_per_token`` bytes each at
  the tier's bandwidth (``cluster.cpu_gb_per_s``, ``cluster.disk_gb_per_s``). Where that is
  more than recomputing them would cost, the hit is counted as costly (still loaded: the
  engines load what their connector finds).
* **Queue.** Each replica prefills one request at a time, in arrival order (FIFO): a request
  starts at ``max(arrival, the end of the previous prefill on its replica)``; TTFT = wait +
  transfer + prefill. Decode overlaps (continuous batching): a request stays active for
  ``output_tokens × decode_s_per_token`` after its first token (that is what the load-aware
  routers see as running requests and decode blocks).
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from kvern.infra.config import Config


@dataclass(frozen=True, slots=True)
class TimeModel:
    params: float | None
    """2·params FLOP term (None: the tokens/s fallback)."""
    attn: float
    """4·layers·hidden (the attention term per position)."""
    flops_per_s: float
    tokens_per_s: float
    decode_s_per_token: float
    kv_bytes_per_token: float | None
    cpu_bytes_per_s: float
    disk_bytes_per_s: float

    @property
    def basis(self) -> str:
        """What prefill time comes from: ``flops`` or ``tokens_per_s``."""
        return "flops" if self.params is not None else "tokens_per_s"

    def prefill_s(self, prompt: np.ndarray, cached: np.ndarray) -> np.ndarray:
        """Seconds to prefill positions ``cached..prompt-1`` of each request (vectorized)."""
        p = np.asarray(prompt, np.float64)
        c = np.asarray(cached, np.float64)
        if self.params is None:
            return (p - c) / self.tokens_per_s
        return (self._flops(p) - self._flops(c)) / self.flops_per_s

    def prefill_one(self, prompt: int, cached: int) -> float:
        if self.params is None:
            return (prompt - cached) / self.tokens_per_s
        return (self._flops(float(prompt)) - self._flops(float(cached))) / self.flops_per_s

    def _flops(self, c):  # type: ignore[no-untyped-def]
        assert self.params is not None
        return 2.0 * self.params * c + self.attn * c * (c - 1.0) / 2.0

    def transfer_s(self, cpu_tokens: np.ndarray, disk_tokens: np.ndarray) -> np.ndarray:
        """Seconds to load tier hits back to the GPU (0 without a KV size: said in the settings)."""
        if self.kv_bytes_per_token is None:
            return np.zeros(len(cpu_tokens), np.float64)
        b = self.kv_bytes_per_token
        return (np.asarray(cpu_tokens, np.float64) * b / self.cpu_bytes_per_s
                + np.asarray(disk_tokens, np.float64) * b / self.disk_bytes_per_s)


def time_model(cfg: Config, model: str) -> TimeModel:
    g = cfg.model(model).geometry
    c = cfg.cluster
    flops = g is not None and g.params is not None and g.hidden is not None
    kv = float(g.kv_bytes_per_token) if g is not None else (
        float(c.kv_bytes_per_token) if c.kv_bytes_per_token is not None else None)
    return TimeModel(
        params=float(g.params) if flops and g is not None and g.params is not None else None,
        attn=4.0 * g.layers * g.hidden if flops and g is not None and g.hidden is not None else 0.0,
        flops_per_s=cfg.savings.effective_flops, tokens_per_s=c.prefill_tokens_per_s,
        decode_s_per_token=c.decode_s_per_token, kv_bytes_per_token=kv,
        cpu_bytes_per_s=c.cpu_gb_per_s * 1e9, disk_bytes_per_s=c.disk_gb_per_s * 1e9)


@numba.njit(cache=True)
def fifo_ttft(replica, arrival, work, n_replicas):  # type: ignore[no-untyped-def]
    """Per request (arrival order): (seconds waited for its replica, TTFT = wait + work)."""
    free_at = np.zeros(n_replicas, np.float64)
    wait = np.zeros(len(replica), np.float64)
    ttft = np.zeros(len(replica), np.float64)
    for r in range(len(replica)):
        i = replica[r]
        start = max(arrival[r], free_at[i])
        free_at[i] = start + work[r]
        wait[r] = start - arrival[r]
        ttft[r] = wait[r] + work[r]
    return wait, ttft

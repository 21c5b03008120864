"""llama.cpp's ``llama-server`` prompt cache (as vendored in llama-cpp-python 0.3.36).

llama-server has no block pool. Each of its ``-np`` slots keeps the tokens of the last request
it served (prompt, then the generated tokens it decoded) and their KV; a host-memory prompt
cache (``--cache-ram``, default 8192 MiB) keeps whole copies of slot states. The rules, read
from ``tools/server/server-context.cpp`` and ``server-task.cpp``:

1. **Slot choice** (``get_available_slot``). Among idle, non-empty slots, the one whose longest
   common prefix (LCP) with the prompt covers the largest share of the prompt, if that share
   is above ``--slot-prompt-similarity`` (0.1); ties keep the lower slot id. Its contents are
   saved to the prompt cache first if less than half of them would be kept
   (``lcp / len(slot) < 0.5``). With no such slot: the least recently used one (ties: the
   highest id), always saved first.
2. **Save** (``server_prompt_cache::alloc``): skipped for an empty slot, or when a cached state
   already contains all of the slot's tokens as a prefix; otherwise cached states that are
   prefixes of the slot are dropped, the oldest states go until the new one fits, and it is
   appended.
3. **Load** (``server_prompt_cache::load``), right after a save: the cached state with the best
   LCP replaces the slot's contents if it beats the slot on both ``lcp/len(state)`` and
   ``lcp/len(prompt)`` (states with ``lcp/len(state) < 0.25`` never qualify; an empty slot
   always loses); it leaves the cache.
4. **Idle slots** (``--cache-idle-slots``, on by default): when a request starts, every other
   idle slot is saved to the prompt cache (and cleared when the KV cache is unified).
5. **Reuse**: cached tokens = LCP(slot, prompt), minus one when that is the whole prompt (the
   last token is recomputed for its logits), and 0 for a fully cached one-token prompt.
6. After the request the slot holds the prompt and the generated tokens but the last (sampled,
   never decoded).

Ratios are compared in float32, as the C++ does. Generated tokens are modelled as tokens
unique to their prompt (greedy decoding repeats them for a repeated prompt) that never match a
later prompt. Sizes are in tokens: ``capacity`` is the prompt cache's size in tokens
(``--cache-ram`` / KV bytes per token), which is exact when every state has the same bytes per
token. On a stream with token ids (tokenized logs) the model is exact; on a hash-id stream it
matches whole blocks only (an LCP inside a block is rounded down). Through the simulator
(``kvern replay --profile llamacpp`` without a backend) each model gets its own server and
the slots keep no generated tokens; live reconciliation feeds it the server's real counts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numba
import numpy as np
import xxhash

from kvern.ingest.stream import BlockStream
from kvern.sim.engine import CacheEngine
from kvern.sim.policies import Policy
from kvern.sim.profiles.base import Profile, register

_F = np.float32
SIMILARITY = 0.1
"""llama-server's default ``--slot-prompt-similarity``."""


@dataclass(frozen=True, slots=True)
class LlamaServerConfig:
    """The server flags that decide what its cache does."""

    slots: int = 1
    """``-np``."""
    similarity: float = SIMILARITY
    """``--slot-prompt-similarity``; 0 disables slot choice by prefix."""
    cache_tokens: int | None = None
    """Prompt-cache size in tokens; ``None`` = no limit, 0 = ``--cache-ram 0`` (disabled)."""
    cache_idle_slots: bool = True
    kv_unified: bool = False
    """``-kvu``; llama-server turns it on itself only when ``-np`` is not given."""


def lcp(a: np.ndarray, b: np.ndarray) -> int:
    """Length of the longest common prefix of two id arrays."""
    n = min(len(a), len(b))
    diff = np.flatnonzero(a[:n] != b[:n])
    return int(diff[0]) if len(diff) else n


@numba.njit(cache=True, nogil=True)
def _common(a: np.ndarray, b: np.ndarray, start: int, stop: int) -> int:  # pragma: no cover - compiled
    """First index in ``[start, stop)`` where ``a`` and ``b`` differ, else ``stop``."""
    for i in range(start, stop):
        if a[i] != b[i]:
            return i
    return stop


CHUNK = 64
"""Tokens per chained hash in ``Seq``: an LCP compares hashes first, then at most one chunk."""


@dataclass(frozen=True, slots=True)
class Seq:
    """Token ids with chained hashes of their whole ``CHUNK``-token chunks.

    ``chunks[i]`` names the prefix ``ids[:(i + 1) * CHUNK]``, so two sequences share their
    first k chunks iff their first k hashes are equal; a long shared prefix then costs k/CHUNK
    comparisons instead of k (the host cache can hold thousands of long prompts).
    """

    ids: np.ndarray
    chunks: np.ndarray
    first: int
    """``ids[0]`` as a Python int (-1 when empty), for the quick mismatch test."""

    def __len__(self) -> int:
        return len(self.ids)


def make_seq(ids: np.ndarray) -> Seq:
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    raw = ids[: len(ids) // CHUNK * CHUNK].tobytes()
    step = 8 * CHUNK
    chunks = np.empty(len(raw) // step, dtype=np.uint64)
    h = 0
    for i in range(len(chunks)):
        h = xxhash.xxh3_64_intdigest(raw[i * step : (i + 1) * step], seed=h)
        chunks[i] = h
    return Seq(ids, chunks, int(ids[0]) if len(ids) else -1)


def seq_lcp(a: Seq, b: Seq) -> int:
    """``lcp(a.ids, b.ids)``, through the chunk hashes."""
    if len(a.ids) == 0 or len(b.ids) == 0 or a.first != b.first:
        return 0
    start = _common(a.chunks, b.chunks, 0, min(len(a.chunks), len(b.chunks))) * CHUNK
    return int(_common(a.ids, b.ids, start, min(len(a.ids), len(b.ids), start + CHUNK)))


def generated_ids(prompt: np.ndarray, n: int) -> np.ndarray:
    """Stand-ins for the ``n`` tokens a greedy model generates after ``prompt``.

    Negative, so they never equal a real token; a function of the whole prompt, so a repeated
    prompt repeats them.
    """
    h = xxhash.xxh3_64_intdigest(np.ascontiguousarray(prompt, dtype=np.int64).tobytes()) >> 2
    return -1 - ((h + np.arange(n, dtype=np.int64)) % (1 << 61))


@dataclass(slots=True)
class _Slot:
    id: int
    tokens: Seq = field(default_factory=lambda: make_seq(np.empty(0, dtype=np.int64)))
    t_last_used: int = -1


class LlamaServerModel:
    """The cache state of one llama-server, fed requests one at a time."""

    def __init__(self, config: LlamaServerConfig) -> None:
        assert config.slots >= 1, "llama-server has at least one slot"
        self.config = config
        self.slots = [_Slot(i) for i in range(config.slots)]
        self.states: list[Seq] = []
        """The host prompt cache, oldest first."""
        self.dropped_states = 0
        self._clock = 0

    # -- the request path -------------------------------------------------------------
    def request(self, prompt: np.ndarray, generated: int) -> int:
        """Serve one request; return the tokens llama-server reports as cached."""
        ids = np.asarray(prompt, dtype=np.int64)
        prompt_seq = make_seq(ids)
        slot = self._choose(prompt_seq)
        if self._cache_on and self.config.cache_idle_slots:
            for other in self.slots:
                if other is not slot:
                    self._save(other)
                    if self.config.kv_unified:
                        other.tokens = make_seq(ids[:0])
        n_past = seq_lcp(slot.tokens, prompt_seq)
        if n_past == 1 and len(ids) == 1:
            n_past = 0  # a non-SWA model has no checkpoint to restore: full reprocessing
        if n_past == len(ids) and n_past > 0:
            n_past -= 1
        kept = max(generated - 1, 0)
        slot.tokens = make_seq(np.concatenate([ids, generated_ids(ids, kept)])) if kept else prompt_seq
        slot.t_last_used = self._clock
        self._clock += 1
        return n_past

    @property
    def _cache_on(self) -> bool:
        return self.config.cache_tokens != 0

    def _choose(self, prompt: Seq) -> _Slot:
        chosen: _Slot | None = None
        save = False
        n = _F(len(prompt))
        if self.config.similarity != 0.0:
            best = _F(0.0)
            for slot in self.slots:
                if len(slot.tokens) == 0:
                    continue
                common = seq_lcp(slot.tokens, prompt)
                sim = _F(common) / n
                if sim > best and sim > _F(self.config.similarity):
                    best, chosen = sim, slot
            if chosen is not None:
                keep = _F(best * n) / _F(len(chosen.tokens))
                save = bool(keep < _F(0.5))
        if chosen is None:
            t_last = -1
            for slot in self.slots:
                if chosen is None or slot.t_last_used <= t_last:
                    t_last, chosen = slot.t_last_used, slot
            save = True
        assert chosen is not None
        if save and self._cache_on:
            self._save(chosen)
            self._load(chosen, prompt)
        return chosen

    # -- the host prompt cache --------------------------------------------------------
    def _save(self, slot: _Slot) -> None:
        tokens = slot.tokens
        if len(tokens) == 0:
            return
        common = [seq_lcp(s, tokens) for s in self.states]  # one scan serves both tests below
        if len(tokens) in common:
            return
        limit = self.config.cache_tokens
        if limit is not None and len(tokens) > limit:
            return
        self.states = [s for s, c in zip(self.states, common, strict=True) if c != len(s)]
        if limit is not None:
            total = sum(len(s) for s in self.states)
            while self.states and total + len(tokens) > limit:
                total -= len(self.states.pop(0))
                self.dropped_states += 1
        self.states.append(tokens)

    def _load(self, slot: _Slot, prompt: Seq) -> None:
        base = seq_lcp(slot.tokens, prompt)
        n = _F(len(prompt))
        keep_best = _F(base) / _F(len(slot.tokens)) if len(slot.tokens) else _F(-1.0)
        sim_best = _F(base) / n
        best = -1
        for i, state in enumerate(self.states):
            common = seq_lcp(state, prompt)
            keep = _F(common) / _F(len(state))
            sim = _F(common) / n
            if keep < _F(0.25):
                continue
            if keep_best < keep and sim_best < sim:
                keep_best, sim_best, best = keep, sim, i
        if best >= 0:
            slot.tokens = self.states.pop(best)


def predict(prompts: Iterable[np.ndarray], generated: Iterable[int], config: LlamaServerConfig) -> np.ndarray:
    """Cached tokens llama-server reports for ``prompts`` sent one after another."""
    model = LlamaServerModel(config)
    return np.array([model.request(p, g) for p, g in zip(prompts, generated, strict=True)], dtype=np.int64)


@register
class LlamaCpp(Profile):
    name = "llamacpp"
    uses_tokens = True
    summary = "llama-server: per-slot prompt reuse plus the host-memory prompt cache (--cache-ram)"
    policies = frozenset({"lru"})
    """llama-server drops the oldest saved state; there is no other policy to choose."""
    last_token_rule = True

    def __init__(self, config: LlamaServerConfig | None = None,
                 generated: np.ndarray | None = None) -> None:
        self.config = config or LlamaServerConfig()
        self.generated = generated
        """Tokens generated per request of the stream (default: none kept in the slot)."""

    def engine(self, stream: BlockStream, policy: Policy, capacity_blocks: int) -> CacheEngine:
        """``capacity_blocks`` × block size = the prompt cache's size in tokens."""
        cfg = LlamaServerConfig(self.config.slots, self.config.similarity,
                                capacity_blocks * stream.block_size, self.config.cache_idle_slots,
                                self.config.kv_unified)
        return SlotEngine(stream, policy, capacity_blocks, cfg, self.generated)


class SlotEngine(CacheEngine):
    """``LlamaServerModel`` fed the stream's requests: slots, then the host prompt cache."""

    profile = "llamacpp"

    def __init__(self, stream: BlockStream, policy: Policy, capacity_blocks: int, config: LlamaServerConfig,
                 generated: np.ndarray | None) -> None:
        super().__init__(stream, policy, capacity_blocks)
        self.server = LlamaServerModel(config)
        self.generated = generated if generated is not None else np.zeros(stream.num_requests, np.int64)
        """Tokens generated per request of the stream (default: none kept in the slot)."""

    def serve(self, requests: np.ndarray) -> None:
        for r in requests.tolist():
            self.cached_tokens[r] = _from_units(self.server, self.stream, r, int(self.generated[r]))

    def cached_prefix(self, request: int) -> int:
        raise NotImplementedError("llama-server has no shared prefix cache to query: its slots are "
                                  "chosen per request (use the vllm, sglang or ideal profile)")

    def cached_blocks(self) -> np.ndarray:
        raise NotImplementedError("llama-server's cache holds token sequences, not blocks")

    @property
    def used(self) -> int:
        """Tokens held by the host prompt cache."""
        return sum(len(state) for state in self.server.states)

    @property
    def evicted_blocks(self) -> int:
        """Saved states dropped from the host prompt cache."""
        return self.server.dropped_states


def _from_units(model: LlamaServerModel, stream: BlockStream, r: int, generated: int) -> int:
    """One request of the stream: its token ids when the trace kept them (exact), else blocks.

    Without token ids, token j of block b stands for ``b * block_size + j``: blocks are
    prefix-chained, so equal ids mean equal prefixes, and matches stop at block boundaries.
    """
    if stream.token_ids is not None:
        return model.request(stream.tokens_of(r).astype(np.int64), generated)
    blocks = stream.blocks_of(r).astype(np.int64)
    bs = stream.block_size
    ids = (blocks[:, None] * bs + np.arange(bs, dtype=np.int64)[None, :]).ravel()
    return model.request(ids[: int(stream.prompt_tokens[r])], generated)

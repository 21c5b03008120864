"""The simulator fed one request at a time, for traffic that has not ended yet (the proxy).

``OnlineCache`` is the same ``CacheEngine`` that ``kvern replay`` runs, over a block stream
that grows as requests arrive: block keys are interned as they come (first-seen order, as
ingest does), and the stream's arrays live in buffers with room to spare, so the engine sees
each new request in place. When a buffer is full, the buffers double and a fresh engine
replays the requests so far: the engines are deterministic, so it reaches exactly the state
the old one had, and the cost is amortized to a constant per request.

Policies whose state is fixed when the run starts from the whole trace (``belady`` reads the
future; ``cost`` prices each block once) cannot run online and are refused. ``llamacpp`` is
llama-server's own per-request model (``LlamaServerModel``), which needs no stream.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from kvern.infra.errors import UsageError
from kvern.ingest.stream import BlockStream
from kvern.sim.engine import CacheEngine
from kvern.sim.policies import make_policy
from kvern.sim.profiles import get_profile
from kvern.sim.profiles.llamacpp import LlamaServerConfig, LlamaServerModel

OFFLINE_POLICIES = frozenset({"belady", "cost"})
_START = 1024


class OnlineCache:
    """One model's cache under ``profile``/``policy``/``capacity_blocks``, fed request by request."""

    def __init__(self, profile: str, policy: str, capacity_blocks: int, block_size: int,
                 params: Mapping[str, Any] | None = None) -> None:
        if capacity_blocks < 1:
            raise UsageError(f"--capacity: {capacity_blocks} blocks; the cache needs at least one block")
        prof = get_profile(profile)
        if prof.policies is not None and policy not in prof.policies:
            allowed = ", ".join(sorted(prof.policies))
            raise UsageError(f"--profile {profile} supports only the policies {allowed}, not {policy!r}")
        if policy in OFFLINE_POLICIES:
            raise UsageError(f"--policy {policy}: needs the whole trace up front; online prediction runs "
                             "lru, fifo or lfu")
        self.profile = profile
        self.policy = make_policy(policy, params)
        self.capacity_blocks = int(capacity_blocks)
        self.block_size = int(block_size)
        self._server = None
        if profile == "llamacpp":  # the prompt cache holds capacity_blocks × block_size tokens
            config = LlamaServerConfig(slots=1, cache_tokens=capacity_blocks * block_size)
            self._server = LlamaServerModel(config)
        self._ids: dict[int, int] = {}
        self._n_req = 0
        self._n_blocks = 0
        self._n_tokens = 0
        self._tokens: bool | None = None
        """Whether requests carry token ids (fixed by the first request: one stream is one kind)."""
        self._longest = 64
        """The engine's bound on one request's blocks; a longer request rebuilds it with twice as much."""
        self._alloc(_START, 4 * _START, _START, 4 * _START)
        self._engine: CacheEngine | None = None

    # -- the request path ------------------------------------------------------------------
    def serve(self, block_keys: np.ndarray, prompt_tokens: int, token_ids: np.ndarray | None = None,
              generated_tokens: int = 0) -> int:
        """Run one request through the cache; return its predicted cached tokens."""
        if self._server is not None:
            ids = self._llama_ids(block_keys, prompt_tokens, token_ids)
            return self._server.request(ids, generated_tokens)
        keys = np.asarray(block_keys, dtype=np.uint64)
        if self._tokens is None:
            self._tokens = token_ids is not None
        if self._tokens != (token_ids is not None):
            raise UsageError("a stream of token ids got a request without them (or the other way round)")
        r = self._append(keys, int(prompt_tokens), token_ids)
        if self._engine is None:
            self._engine = self._new_engine()
        self._engine.serve(np.array([r], dtype=np.int64))
        return int(self._engine.cached_tokens[r])

    def _llama_ids(self, block_keys: np.ndarray, prompt_tokens: int,
                   token_ids: np.ndarray | None) -> np.ndarray:
        if token_ids is not None:
            return np.asarray(token_ids, dtype=np.int64)
        bs = self.block_size  # a hash-id stream: token j of block b stands for b * block_size + j
        ids = self._ids
        blocks = np.asarray([ids.setdefault(int(k), len(ids)) for k in block_keys], dtype=np.int64)
        return (blocks[:, None] * bs + np.arange(bs, dtype=np.int64)[None, :]).ravel()[:prompt_tokens]

    # -- the growing stream -------------------------------------------------------------------
    def _alloc(self, requests: int, blocks: int, unique: int, tokens: int) -> None:
        def grow(old: np.ndarray | None, size: int, dtype: type, fill: int = 0) -> np.ndarray:
            new = np.full(size, fill, dtype=dtype)
            if old is not None:
                new[: len(old)] = old[: min(len(old), size)]
            return new

        get = self.__dict__.get
        self._offsets = grow(get("_offsets"), requests + 1, np.int64)
        self._offsets[self._n_req + 1:] = self._n_blocks  # requests not yet seen hold no blocks
        self._block_ids = grow(get("_block_ids"), blocks, np.int32)
        self._prompt = grow(get("_prompt"), requests, np.int32)
        self._rows = np.arange(requests, dtype=np.int64)
        self._arrival = np.zeros(requests, dtype=np.float64)
        self._parent = grow(get("_parent"), unique, np.int32, -1)
        self._depth = grow(get("_depth"), unique, np.int32)
        self._block_tokens = grow(get("_block_tokens"), unique, np.int32)
        self._tok_offsets = grow(get("_tok_offsets"), requests + 1, np.int64)
        self._tok_offsets[self._n_req + 1:] = self._n_tokens
        self._tok_ids = grow(get("_tok_ids"), tokens, np.int32)

    def _append(self, keys: np.ndarray, prompt_tokens: int, token_ids: np.ndarray | None) -> int:
        n = len(keys)
        t = 0 if token_ids is None else len(token_ids)
        new_unique = sum(1 for k in keys.tolist() if k not in self._ids)
        need = (self._n_req + 1, self._n_blocks + n, len(self._ids) + new_unique, self._n_tokens + t)
        have = (len(self._prompt), len(self._block_ids), len(self._parent), len(self._tok_ids))
        if n > self._longest:
            self._longest = max(2 * self._longest, n)
            self._engine = None
        if any(a > b for a, b in zip(need, have, strict=True)):
            self._alloc(*(max(2 * b, a) for a, b in zip(need, have, strict=True)))
            self._engine = None  # a fresh engine over the new buffers replays the requests so far
        r, lo = self._n_req, self._n_blocks
        prev = -1
        for j, k in enumerate(keys.tolist()):
            b = self._ids.get(k)
            if b is None:
                b = self._ids[k] = len(self._ids)
                self._parent[b] = prev
                self._depth[b] = j
                self._block_tokens[b] = min(self.block_size, prompt_tokens - j * self.block_size)
            self._block_ids[lo + j] = b
            prev = b
        self._prompt[r] = prompt_tokens
        self._n_blocks += n
        self._offsets[r + 1:] = self._n_blocks
        if token_ids is not None:
            self._tok_ids[self._n_tokens : self._n_tokens + t] = token_ids
            self._n_tokens += t
            self._tok_offsets[r + 1:] = self._n_tokens
        self._n_req += 1
        return r

    def _new_engine(self) -> CacheEngine:
        """An engine over the buffers (its stream is a view of them, so it sees each request as
        it is appended); the requests before the newest one are replayed into it."""
        stream = BlockStream(
            model="online", block_size=self.block_size, req_offsets=self._offsets, block_ids=self._block_ids,
            prompt_tokens=self._prompt, rows=self._rows, arrival_s=self._arrival, parent=self._parent,
            depth=self._depth, block_tokens=self._block_tokens,
            token_offsets=self._tok_offsets if self._tokens else None,
            token_ids=self._tok_ids if self._tokens else None, longest_hint=self._longest)
        engine = get_profile(self.profile).engine(stream, self.policy, self.capacity_blocks)
        if self._n_req > 1:
            engine.serve(np.arange(self._n_req - 1, dtype=np.int64))
        return engine

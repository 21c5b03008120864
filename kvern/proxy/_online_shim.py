"""TEMPORARY stand-in for ``kvern.sim.online.OnlineCache`` until that module is merged.

It has that API exactly, for profile ``llamacpp`` only (one llama-server slot, the prompt cache
sized by ``capacity_blocks × block_size`` tokens), by wrapping
``kvern.sim.profiles.llamacpp.LlamaServerModel``. Any other profile raises ``UsageError``, so
the proxy reports predictions as unavailable rather than guessing. Delete this file and import
``kvern.sim.online`` in ``worker.py`` when merging.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kvern.errors import UsageError
from kvern.sim.profiles.llamacpp import LlamaServerConfig, LlamaServerModel


class OnlineCache:
    def __init__(self, profile: str, policy: str, capacity_blocks: int, block_size: int,
                 params: Any = None) -> None:
        if profile != "llamacpp":
            raise UsageError(f"online prediction for profile {profile!r} needs kvern.sim.online "
                             "(this build only predicts --profile llamacpp)")
        self.block_size = block_size
        self._model = LlamaServerModel(LlamaServerConfig(slots=1, cache_tokens=capacity_blocks * block_size))

    def serve(self, block_keys: np.ndarray, prompt_tokens: int, token_ids: np.ndarray | None = None,
              generated_tokens: int = 0) -> int:
        if token_ids is None:  # a hash-id stream: token j of block b stands for b * block_size + j
            bs = self.block_size
            blocks = np.asarray(block_keys).astype(np.int64)
            ids = (blocks[:, None] * bs + np.arange(bs, dtype=np.int64)[None, :]).ravel()
            token_ids = ids[:prompt_tokens]
        return self._model.request(np.asarray(token_ids, dtype=np.int64), generated_tokens)

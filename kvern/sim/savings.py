"""Prefill FLOPs and time saved by cached tokens (docs/architecture.md §5).

The prefill cost of the token at position p (0-based) is ≈ ``2·params + 4·layers·hidden·p``:
the dense matmuls plus attention over the p earlier tokens. Cached tokens are the first
``c`` positions of a prompt, so a request saves
``2·params·c + 4·layers·hidden·c(c−1)/2`` of its ``… P(P−1)/2`` total; time saved is FLOPs
saved divided by ``savings.effective_flops``. Without the model's ``params`` and ``hidden``
(config ``models.<name>.geometry``) all of it is unknown (None), never a guess.
"""

from __future__ import annotations

import numpy as np

from kvern.infra.config import KVGeometry


def prefill_flops(tokens: np.ndarray, geometry: KVGeometry | None) -> np.ndarray | None:
    """FLOPs to prefill the first ``tokens`` positions of a prompt, per element; None if unknown."""
    if geometry is None or geometry.params is None or geometry.hidden is None:
        return None
    c = np.asarray(tokens, dtype=np.float64)
    return 2.0 * geometry.params * c + 4.0 * geometry.layers * geometry.hidden * c * (c - 1.0) / 2.0


def attn_ratio(geometry: KVGeometry | None) -> float | None:
    """``4·layers·hidden / (2·params)``: the cost policy's depth weight for this model."""
    if geometry is None or geometry.params is None or geometry.hidden is None:
        return None
    return 4.0 * geometry.layers * geometry.hidden / (2.0 * geometry.params)

"""Engine profiles (docs/architecture.md §6): ``PROFILES`` maps a name to a ``Profile`` subclass.

The interface (a profile and its steppable ``CacheEngine``, in ``kvern.sim.engine``) and how
to add a profile are documented in ``base.py``. Built in: ``vllm`` (default; vLLM v1's BlockPool), ``sglang``
(SGLang's RadixCache), ``ideal`` (pure prefix reuse, block level), ``ideal-token`` (the same
at token level) and ``llamacpp`` (llama-server's slots and host prompt cache).
"""

from __future__ import annotations

from kvern.infra.errors import UsageError
from kvern.sim.engine import CacheEngine
from kvern.sim.profiles import ideal, ideal_token, llamacpp, sglang, vllm  # noqa: F401 - registers them
from kvern.sim.profiles.base import PROFILES, Advance, Profile, register


def get_profile(name: str) -> Profile:
    cls = PROFILES.get(name)
    if cls is None:
        raise UsageError(f"--profile: unknown profile {name!r} (one of {', '.join(PROFILES)})")
    return cls()


__all__ = ["PROFILES", "Advance", "CacheEngine", "Profile", "get_profile", "register"]

"""kvern: trace analyzer and replay simulator for LLM prefix (KV) caching."""

__version__ = "0.1.0"

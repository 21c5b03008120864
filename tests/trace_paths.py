"""Paths of the traces the tests read (imported by name: several conftest.py files exist)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MOONCAKE = ROOT / "traces" / "mooncake_conversation.jsonl"
CHAT_SAMPLE = ROOT / "traces" / "chat_sample.jsonl"

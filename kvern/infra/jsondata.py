"""One JSON parser for everything kvern reads: log lines, baselines, server replies, report files.

``json.loads`` accepts two things kvern cannot carry further: nesting deep enough to exhaust
Python's recursion (a ``RecursionError`` in the parser or in any later walk) and lone UTF-16
surrogates (``"\\ud800"``), which make a ``str`` that cannot be encoded, tokenized or hashed.
``parse_json`` turns both, and every other parse failure, into a ``JsonProblem`` whose text
the caller puts after "file:line:". The common line pays for two byte counts only; the walk
runs when a line could hold either problem.
"""

from __future__ import annotations

import json
import re
from typing import Any

MAX_DEPTH = 100
"""Deepest nesting of arrays and objects accepted (a chat line needs about 6)."""

_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_SURROGATE_ESCAPE_STR = re.compile(r"\\u[dD][89a-fA-F]")


class JsonProblem(ValueError):
    """Text that is not JSON kvern can use; the message says why (and where, when known)."""


def parse_json(data: bytes | str) -> Any:
    """Parse ``data``; raise ``JsonProblem`` for bad JSON, nesting over ``MAX_DEPTH`` or a lone surrogate."""
    try:
        obj = json.loads(data)
    except RecursionError:
        raise JsonProblem(f"nested more than {MAX_DEPTH} levels deep") from None
    except UnicodeDecodeError as e:
        raise JsonProblem(f"not valid UTF-8 (byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise JsonProblem(f"bad JSON: {e.msg} (column {e.colno})") from None
    except ValueError as e:  # e.g. an integer of more than 4300 digits
        raise JsonProblem(f"bad JSON: {e}") from None
    if isinstance(data, bytes):
        opens = data.count(b"[") + data.count(b"{")
        surrogates = _SURROGATE_ESCAPE.search(data) is not None
    else:
        opens = data.count("[") + data.count("{")
        surrogates = _SURROGATE_ESCAPE_STR.search(data) is not None
    if opens > MAX_DEPTH or surrogates:
        check_value(obj)
    return obj


def check_value(obj: Any) -> None:
    """Raise ``JsonProblem`` if ``obj`` (parsed JSON or YAML) nests too deep or holds a lone
    surrogate in a string or key. Iterative, so that the check itself cannot recurse."""
    stack: list[tuple[Any, int]] = [(obj, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            _check_text(value)
        elif isinstance(value, dict | list):
            if depth >= MAX_DEPTH:
                raise JsonProblem(f"nested more than {MAX_DEPTH} levels deep")
            if isinstance(value, dict):
                for k, v in value.items():
                    if isinstance(k, str):
                        _check_text(k)
                    stack.append((v, depth + 1))
            else:
                stack.extend((v, depth + 1) for v in value)


def _check_text(s: str) -> None:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError as e:
        raise JsonProblem(f"a lone UTF-16 surrogate ({s[e.start]!a}) in a string; "
                          "that is not text any tokenizer or server accepts") from None


def has_surrogate(s: str) -> bool:
    """True when ``s`` cannot be encoded as UTF-8 (a lone surrogate, e.g. from a bad argv byte)."""
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False

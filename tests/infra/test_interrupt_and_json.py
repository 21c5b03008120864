"""The infra pieces behind issue 16: one JSON parser that refuses what kvern cannot carry
(depth, lone surrogates), and a long native call that does not hold Ctrl-C back."""

from __future__ import annotations

import signal
import threading
import time

import pytest

from kvern.infra.interrupt import interruptible
from kvern.infra.jsondata import MAX_DEPTH, JsonProblem, parse_json


@pytest.mark.parametrize("text, said", [
    (b"[" * 10_000 + b"]" * 10_000, "nested more than"),
    (b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1), "nested more than"),
    (b'{"a": "x\\ud800"}', "lone UTF-16 surrogate"),
    (b'{"\\udc00": 1}', "lone UTF-16 surrogate"),
    (b'{"a": 1', "bad JSON"),
    (b'"\xff"', "not valid UTF-8"),
    (b"1" * 5000, "bad JSON"),  # more digits than Python converts
])
def test_parse_json_refuses_with_a_reason(text: bytes, said: str) -> None:
    with pytest.raises(JsonProblem, match=said):
        parse_json(text)


def test_parse_json_keeps_what_is_fine() -> None:
    assert parse_json(b'{"a": "\\ud83d\\ude00"}') == {"a": "\U0001F600"}  # a valid pair
    assert parse_json("[" * MAX_DEPTH + "]" * MAX_DEPTH) is not None


def test_ctrl_c_during_a_long_native_call_is_raised_at_once() -> None:
    release = threading.Event()
    timer = threading.Timer(0.2, lambda: signal.raise_signal(signal.SIGINT))
    start = time.monotonic()
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        interruptible(lambda: release.wait(30))  # stands in for a minute in the tokenizer
    release.set()
    assert time.monotonic() - start < 2


def test_interruptible_returns_and_raises_like_the_call() -> None:
    assert interruptible(lambda: 41 + 1) == 42
    with pytest.raises(ZeroDivisionError):
        interruptible(lambda: 1 / 0)

"""``scrub``: a registered key in each form it travels in, and keys by their shape, whatever the source."""

from __future__ import annotations

import json
from urllib.parse import quote

from kvern.infra.secrets import REDACTED, register_secret, scrub


def test_a_registered_secret_goes_in_every_form() -> None:
    key = 'ab"cd/ef gh-registered-1'
    register_secret(key)
    for form in (key, json.dumps(key)[1:-1], quote(key, safe="")):
        text = scrub(f"HTTP 401: header was {form}!")
        assert form not in text and REDACTED in text
    assert scrub("nothing secret here") == "nothing secret here"
    register_secret("ab")  # too short to scrub: it would cut words out of every message
    assert scrub("about") == "about"


def test_tokens_are_cut_by_their_shape() -> None:
    assert scrub("Authorization: Bearer tok.en_123-xyz") == f"Authorization: Bearer {REDACTED}"
    assert scrub('{"authorization": "Basic dXNlcjpwYXNz"}') == f'{{"authorization": "Basic {REDACTED}"}}'
    assert scrub("key sk-proj-ABCdef123456789 leaked") == f"key {REDACTED} leaked"
    assert scrub("url?api_key=zzzz9999&x=1") == f"url?api_key={REDACTED}&x=1"
    assert scrub("the bearer of bad news") == "the bearer of bad news"

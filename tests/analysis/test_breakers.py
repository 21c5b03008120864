"""Cache breakers: fields, grouping, ranking, the proposed rule (byte-level token ids)."""

from __future__ import annotations

import re

import numpy as np
from analysis_helpers import byte_decode, make_trace, text_ids
from hypothesis import given, settings
from hypothesis import strategies as st
from test_divergence import _prompts

from kvern.analysis.breakers import config_with_rule, find_breakers, locate
from kvern.analysis.divergence import scan
from kvern.analysis.fields import field_at, fold
from kvern.infra.config import Config, ModelConfig, NormalizeRule
from kvern.sim.bounds import infinite_cache_hits

SYS = ("You are a helpful assistant for ACME support.\nToday is {d}.\n"
       "Answer in English, keep a friendly tone, and cite the knowledge base articles you used.\n")
QUESTIONS = ["How do I reset my password?", "Where is my order #{n}?", "Can I change my plan?"]


def _day_prompts(days: int, ticket: bool = False) -> list[list[int]]:
    prompts = []
    for day in range(1, days + 1):
        for i, q in enumerate(QUESTIONS):
            head = f"Ticket {day * 7919 + i:08x}1f\n" if ticket else ""
            prompts.append(text_ids(head + SYS.format(d=f"{day} Nov 2026") + "User: " + q.format(n=day + i)))
    return prompts


def test_fold_and_fields() -> None:
    text = ("Today is Mon, 28 Nov 2026 at 14:03 (2026-11-28T14:03:00Z), id "
            "123e4567-e89b-12d3-a456-426614174000, sha deadbeef42, order 17, Nov 3, 2025, 1/2/2026")
    assert fold(text) == ("Today is <DATE> at <TIME> (<TIMESTAMP>), id <UUID>, sha <HEX>, order <NUM>, "
                          "<DATE>, <DATE>")
    assert fold("decade deadbeef 2026") == "decade deadbeef <NUM>"  # hex needs a digit and a letter
    kind, s, e = field_at("Today is 29 Nov 2026.", 10, 11)  # the '9'
    assert (kind.name, s, e) == ("date", 9, 20)
    assert field_at("Today is 29 Nov 2026.", 0, 5) is None
    assert field_at("id 42 here", 5, 5)[0].name == "number"  # an empty range touching a field
    assert field_at("on 2026-11-28 at", 9, 10)[0].name == "iso-date"
    assert field_at("on 11/28/2026 at", 4, 5)[0].name == "slash-date"


def test_date_in_system_prompt_is_the_top_breaker() -> None:
    trace = make_trace(_day_prompts(5), block_size=16)
    s = scan(trace)
    assert s.hit_tokens == int(infinite_cache_hits(trace).sum())
    [b] = find_breakers(trace, s, byte_decode)
    # The first request of each day from day 2 diverges at the day digit (byte 55) from the
    # last request of the day before, and loses the rest of the system prompt and "User: ".
    prefix = len("You are a helpful assistant for ACME support.\nToday is ")
    lost = len(SYS.format(d="1 Nov 2026")) - prefix - 1 + len("User: ")
    assert (b.kind, b.pattern, b.requests, b.position) == ("date", "Today is <DATE>.", 4, prefix)
    assert b.lost_tokens == 4 * lost == s.lost_tokens
    assert b.share == 4 * lost / (s.hit_tokens + 4 * lost)
    assert b.example == "Today is 2 Nov 2026." and b.rule is not None
    assert re.sub(b.rule.pattern, b.rule.replace, "Today is 28 Nov 2026.") == "Today is <DATE>."
    assert "a date at token 55 of the prompt ('Today is <DATE>.') costs" in b.describe()
    assert "'Today is 2 Nov 2026.'" in b.describe(show_text=True)
    assert "example" not in b.to_dict() and b.to_dict(show_text=True)["example"] == b.example


def test_breakers_ranked_by_lost_tokens() -> None:
    # A hex ticket id on the first line breaks every request; the date then costs nothing more.
    trace = make_trace(_day_prompts(3, ticket=True), block_size=16)
    bs = find_breakers(trace, scan(trace), byte_decode)
    assert [b.kind for b in bs] == ["hex"]
    assert bs[0].pattern == "Ticket <HEX>" and bs[0].requests == 8
    # Two breakers: the hex costs more tokens than a later number.
    a = text_ids("Ticket 0000abc123 opened.\n" + "x" * 200 + "\nOrder 17 shipped.\n" + "y" * 50)
    b = text_ids("Ticket 0000abd123 opened.\n" + "x" * 200 + "\nOrder 18 shipped.\n" + "y" * 50)
    c = text_ids("Ticket 0000abd123 opened.\n" + "x" * 200 + "\nOrder 19 shipped.\n" + "y" * 50)
    trace = make_trace([a, b, c], block_size=4)
    bs = find_breakers(trace, scan(trace), byte_decode)
    assert [(x.kind, x.pattern, x.requests) for x in bs] == [
        ("hex", "Ticket <HEX> opened.", 1), ("number", "Order <NUM> shipped.", 1)]
    assert bs[0].lost_tokens > bs[1].lost_tokens
    assert find_breakers(trace, scan(trace), byte_decode, top=1) == bs[:1]


def test_text_change_is_a_slot_without_rule() -> None:
    prompts = [text_ids(f"Be {w}. " + "z" * 100) for w in ("brief", "terse", "short")]
    trace = make_trace(prompts, block_size=4)
    [x] = find_breakers(trace, scan(trace), byte_decode)
    assert (x.kind, x.rule, x.label, x.requests) == ("text", None, "a text change", 2)
    # Least edit: 5 bytes each side; 32 bytes of context follow the span. The changed words are
    # a slot, so both changes group; the example is the costliest (ties: the first).
    assert x.pattern == "Be «…». " + "z" * 30 and x.lost_tokens == 2 * 102
    assert x.example == "Be terse. " + "z" * 30


def test_locate_in_chat_template() -> None:
    def dec(_m: str, ids: object) -> str:
        return "".join(VOCAB[int(i)] for i in ids)  # type: ignore[union-attr]

    VOCAB = ["<|im_start|>", "system", "\n", "Today", " is", " 2", "8", "<|im_end|>", "user"]
    ids = np.array([0, 1, 2, 3, 4, 5, 6, 7, 2, 0, 8, 2, 3])
    assert locate("m", ids, 6, dec) == ("system", 3)
    assert locate("m", ids, 12, dec) == ("user", 0)
    assert locate("m", ids[3:], 3, dec) == (None, None)


def test_config_with_rule() -> None:
    rule = NormalizeRule(name="date", pattern=r"\d+", replace="<N>")
    own = NormalizeRule(pattern="a", replace="b")
    cfg = Config(models={"x": ModelConfig(normalize=[own]), "y": ModelConfig()})
    new = config_with_rule(cfg, rule)
    assert new.rules_for("x") == [own, rule] and new.rules_for("y") == [rule]
    assert new.rules_for("other") == [rule] and cfg.normalize == []


@settings(max_examples=100, deadline=None)
@given(case=_prompts(), bs=st.sampled_from([1, 4, 16]))
def test_groups_partition_the_divergences(case: tuple[list[list[int]], list[str]], bs: int) -> None:
    prompts, models = case
    trace = make_trace([[t + 48 for t in p] for p in prompts], models=models, block_size=bs)
    s = scan(trace)
    bs_all = find_breakers(trace, s, byte_decode)
    assert sum(b.lost_tokens for b in bs_all) == s.lost_tokens
    assert sum(b.requests for b in bs_all) == len(s.divergences)  # one divergence per request
    assert [b.lost_tokens for b in bs_all] == sorted((b.lost_tokens for b in bs_all), reverse=True)
    assert all(0 < b.share <= 1 for b in bs_all)

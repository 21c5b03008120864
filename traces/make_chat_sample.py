"""Generate traces/chat_sample.jsonl: a realistic, deterministic OpenAI chat-completions log.

    python traces/make_chat_sample.py [-o traces/chat_sample.jsonl] [--seed 7] [--sessions 90] [--max-turns 7]

Same seed, same bytes. What it contains, and why each part matters for prefix caching:
- multi-turn sessions whose every request repeats the whole history (the main source of reuse);
- a few system prompts shared by many sessions (cross-session reuse of the first blocks);
- one "dated" template that injects the current date into its system prompt, so the prefix
  changes from day to day (the case that normalization rules are for);
- tool definitions (a travel agent) with assistant tool calls and tool results;
- a RAG assistant whose user turns start with one of a few long shared documents;
- timestamps spread over three days with think time between turns, a second served model
  (``llama3.1-8b``) beside ``qwen2.5-7b-instruct``, and logged ``output_tokens``.
"""

from __future__ import annotations

import argparse
import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

MAIN_MODEL = "qwen2.5-7b-instruct"
SECOND_MODEL = "llama3.1-8b"
START = datetime(2025, 3, 3, 8, 0, 0, tzinfo=UTC)
DAYS = 3

SYSTEM_SUPPORT = (
    "You are the customer support assistant of Northwind Outfitters, an online shop for hiking and "
    "camping gear. Answer politely and concisely. Never promise refunds above the order value. If a "
    "question is about an order, ask for the order number first. Escalate safety issues with stoves, "
    "fuel canisters or climbing equipment to a human agent."
)
SYSTEM_CODER = (
    "You are a senior Python engineer reviewing code for a data platform team. Prefer the standard "
    "library, type hints and small functions. Point out bugs first, then style. Show corrected code in "
    "fenced blocks and keep explanations short."
)
SYSTEM_DATED = (  # the date comes first, as in templates that inject it at the top of the system prompt
    "Today's date is {date}.\n\n"
    "You are the operations assistant of the platform team. You can read the incident log, the deploy "
    "calendar and the alert history, and you help the on-call engineer decide what to do next. Rules:\n"
    "1. Be brief: answer in at most five sentences unless asked for a draft.\n"
    "2. Name incidents by their id and severity, e.g. INC-2291 (sev2).\n"
    "3. Never suggest a rollback of the storage migration without naming its owner.\n"
    "4. Times are UTC. Say 'today' and 'yesterday' relative to the date above.\n"
    "5. When something is unknown, say so and say where to look: the runbook, the dashboard, or the "
    "owner of the service.\n"
    "6. Drafts for status updates use three headings: Impact, Cause, Next steps."
)
SYSTEM_TRAVEL = "You are a travel agent. Use the tools to look up weather and flights before answering."
SYSTEM_RAG = (
    "Answer the question using only the document provided by the user. Quote the relevant sentence. "
    "If the document does not contain the answer, say so."
)

TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "Current weather and a three-day forecast for a city.",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "description": "city name, e.g. Lisbon"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city"]}}},
    {"type": "function", "function": {
        "name": "search_flights", "description": "Search one-way flights between two airports on a date.",
        "parameters": {"type": "object", "properties": {
            "origin": {"type": "string", "description": "IATA code"},
            "destination": {"type": "string", "description": "IATA code"},
            "date": {"type": "string", "description": "YYYY-MM-DD"}},
            "required": ["origin", "destination", "date"]}}},
]

WORDS = [
    "the", "system", "team", "data", "request", "cache", "model", "server", "latency", "token",
    "prefix", "memory", "block", "policy", "user", "order", "shipment", "tent", "stove", "boots",
    "backpack", "trail", "weather", "river", "summit", "route", "map", "compass", "report",
    "quarter", "revenue", "margin", "forecast", "customer", "contract", "renewal", "invoice",
    "budget", "schedule", "deploy", "rollback", "incident", "alert", "metric", "dashboard", "queue",
    "worker", "batch", "stream", "index", "table", "query", "review", "design", "test", "coverage",
    "refactor", "module", "function", "class", "interface", "error", "retry", "timeout", "café",
    "naïve", "Zürich", "東京", "데이터", "данные", "résumé",
]

QUESTIONS_SUPPORT = [
    "My order {n} has not arrived yet. Can you check where it is?",
    "The zipper on the backpack I bought last month broke. What are my options?",
    "Can I exchange boots size 42 for size 43?",
    "Is the alpine stove safe to use inside a tent vestibule?",
    "Do you ship to Norway, and how long does it take?",
]
QUESTIONS_CODER = [
    "Review this function:\n```python\ndef mean(xs):\n    return sum(xs) / len(xs)\n```",
    "Why is this slow?\n```python\nout = []\nfor row in rows:\n    out = out + [row * 2]\n```",
    "Is this thread-safe?\n```python\ncounter = 0\ndef bump():\n    global counter\n    counter += 1\n```",
    "How should I type a function that takes a dict of lists of ints?",
]
QUESTIONS_OPS = [
    "Summarize yesterday's incidents.", "Which deploys are scheduled for today?",
    "Draft a status update for the storage migration.", "List open alerts older than two days.",
]
CITIES = [("Lisbon", "LIS"), ("Oslo", "OSL"), ("Tokyo", "HND"), ("Zürich", "ZRH"), ("Denver", "DEN")]


def sentence(rng: random.Random, n: int) -> str:
    words = [rng.choice(WORDS) for _ in range(n)]
    return " ".join(words).capitalize() + "."


def paragraph(rng: random.Random, sentences: int) -> str:
    return " ".join(sentence(rng, rng.randint(6, 16)) for _ in range(sentences))


def make_documents(rng: random.Random) -> list[str]:
    docs = []
    for title in ("Northwind returns policy", "Storage cluster runbook", "Q3 planning memo"):
        sections = [f"## {title}, section {i + 1}\n\n{paragraph(rng, 6)}" for i in range(6)]
        docs.append(f"# {title}\n\n" + "\n\n".join(sections))
    return docs


def reply(rng: random.Random) -> str:
    return " ".join(sentence(rng, rng.randint(5, 14)) for _ in range(rng.randint(1, 4)))


def output_tokens(text: str) -> int:
    return max(1, round(len(text.split()) * 1.35))


class Session:
    """One conversation: a list of (messages-so-far, tools) requests with their answers."""

    def __init__(self, rng: random.Random, kind: str, sid: str, start: datetime, docs: list[str]) -> None:
        self.rng, self.kind, self.sid, self.t = rng, kind, sid, start
        self.docs = docs
        self.model = SECOND_MODEL if kind in ("coder",) and rng.random() < 0.5 else MAIN_MODEL
        self.messages: list[dict[str, object]] = []
        self.tools = TOOLS if kind == "travel" else None
        system = {"support": SYSTEM_SUPPORT, "coder": SYSTEM_CODER, "travel": SYSTEM_TRAVEL,
                  "rag": SYSTEM_RAG, "dated": SYSTEM_DATED.format(date=start.date().isoformat())}[kind]
        if kind != "support" or rng.random() < 0.8:  # some support clients send no system prompt
            self.messages.append({"role": "system", "content": system})

    def user_turn(self, turn: int) -> str:
        rng = self.rng
        if self.kind == "support":
            return rng.choice(QUESTIONS_SUPPORT).format(n=rng.randint(100000, 999999))
        if self.kind == "coder":
            return rng.choice(QUESTIONS_CODER) if turn == 0 else "And what about " + sentence(rng, 6)
        if self.kind == "dated":
            return rng.choice(QUESTIONS_OPS)
        if self.kind == "rag":
            q = f"Question: {sentence(rng, 8)[:-1]}?"
            return f"Document:\n{rng.choice(self.docs)}\n\n{q}" if turn == 0 else q
        city, _ = rng.choice(CITIES)
        return (f"I want to fly to {city} next week. What's the weather there "
                "and are there flights from Berlin?")

    def requests(self, turns: int) -> list[dict[str, object]]:
        rng, out = self.rng, []
        for turn in range(turns):
            self.messages.append({"role": "user", "content": self.user_turn(turn)})
            if self.kind == "travel":
                out.append(self._request(turn, f"{self.sid}-{turn}a", None))
                self._tool_round()
            answer = reply(rng)
            out.append(self._request(turn, f"{self.sid}-{turn}", answer))
            self.messages.append({"role": "assistant", "content": answer})
            self.t += timedelta(seconds=rng.randint(15, 240))
        return out

    def _tool_round(self) -> None:
        rng = self.rng
        city, code = rng.choice(CITIES)
        day = (self.t + timedelta(days=7)).date().isoformat()
        calls = [
            {"id": f"call_{rng.randrange(16**8):08x}", "type": "function",
             "function": {"name": "get_weather", "arguments": json.dumps({"city": city, "unit": "celsius"})}},
            {"id": f"call_{rng.randrange(16**8):08x}", "type": "function",
             "function": {"name": "search_flights",
                          "arguments": json.dumps({"origin": "BER", "destination": code, "date": day})}},
        ]
        self.messages.append({"role": "assistant", "content": None, "tool_calls": calls})
        self.messages.append({"role": "tool", "tool_call_id": calls[0]["id"],
                              "content": json.dumps({"city": city, "temp_c": rng.randint(-5, 30),
                                                     "sky": rng.choice(["clear", "rain", "cloudy"])})})
        self.messages.append({"role": "tool", "tool_call_id": calls[1]["id"],
                              "content": json.dumps({"flights": [{"flight": f"XY{rng.randint(100, 999)}",
                                                                  "price_eur": rng.randint(60, 400)}
                                                                 for _ in range(rng.randint(1, 3))]})})
        self.t += timedelta(seconds=rng.randint(1, 3))

    def _request(self, turn: int, rid: str, answer: str | None) -> dict[str, object]:
        body: dict[str, object] = {
            "timestamp": self.t.isoformat().replace("+00:00", "Z"),
            "request_id": rid,
            "session_id": self.sid,
            "model": self.model,
            "messages": json.loads(json.dumps(self.messages)),
        }
        if self.tools:
            body["tools"] = self.tools
        body["output_tokens"] = output_tokens(answer) if answer else 40
        return body


def generate(seed: int, sessions: int, max_turns: int = 7) -> list[dict[str, object]]:
    rng = random.Random(seed)
    docs = make_documents(rng)
    kinds = ["support"] * 30 + ["coder"] * 20 + ["dated"] * 20 + ["travel"] * 12 + ["rag"] * 18
    requests: list[dict[str, object]] = []
    for i in range(sessions):
        kind = rng.choice(kinds)
        start = START + timedelta(seconds=rng.uniform(0, DAYS * 86400 - 4 * 3600))
        session = Session(random.Random(rng.randrange(2**32)), kind, f"s{i:03d}", start, docs)
        requests.extend(session.requests(rng.randint(1, max_turns)))
    requests.sort(key=lambda r: (str(r["timestamp"]), str(r["request_id"])))
    return requests


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output", type=Path, default=Path(__file__).with_name("chat_sample.jsonl"))
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--sessions", type=int, default=90)
    ap.add_argument("--max-turns", type=int, default=7, help="user turns per session: 1 to this")
    args = ap.parse_args()
    requests = generate(args.seed, args.sessions, args.max_turns)
    lines = [json.dumps(r, ensure_ascii=False, separators=(",", ":")) for r in requests]
    args.output.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {len(lines)} requests to {args.output}")


if __name__ == "__main__":
    main()

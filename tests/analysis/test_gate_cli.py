"""End to end, real tokenization: `kvern gate` catches a date injected into the system prompt,
names it, and passes once the proposed normalization rule is in the config; `kvern analyze`."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from kvern.cli import app

ROOT = Path(__file__).resolve().parents[2]
RULES = ("Answer in the customer's language. Quote order numbers exactly as given. Never promise "
         "refunds; explain the refund policy and offer to open a ticket instead. Keep answers under one "
         "hundred words, use plain sentences, no lists unless asked. If the customer is angry, apologise "
         "once and move on to the facts. Escalate security questions to a human. The shop sells kettles, "
         "toasters, blenders, coffee grinders and spare parts; shipping takes three to five working days "
         "within the country and seven to ten days abroad. Returns are accepted within thirty days with the "
         "receipt.")
COLOURS, GOODS, SITES = ["red", "steel", "compact", "family"], ["kettle", "toaster", "blender", "lid"], \
    ["north", "south", "east"]
CATALOGUE = " ".join(f"Item {i}: the {COLOURS[i % 4]} {GOODS[i % 4]} costs {19 + 7 * i} euros and ships "
                     f"from the {SITES[i % 3]} warehouse." for i in range(48))
"""A catalogue in the system prompt (~900 tokens): with realistic prompt lengths, the few tokens
the inserted date sentence adds stay small beside the prefix it breaks."""
QUESTIONS = ["Where is my order {n}?", "Can I return a kettle I bought {n} days ago?",
             "Do you ship to Norway? Asking for order {n}.", "My toaster {n} sparks, what now?",
             "Is there a spare lid for blender model {n}?"]
DAYS, PER_DAY, DATE_FROM = 10, 20, 3


def _write_log(path: Path, *, with_date: bool) -> Path:
    lines = []
    for day in range(DAYS):
        d = date(2026, 11, 20) + timedelta(days=day)
        today = f"Today is {d.day} {d:%b %Y}. " if with_date and day >= DATE_FROM else ""
        system = (f"You are Ada, the support assistant of the ACME home appliance shop. {today}{RULES}\n"
                  f"{CATALOGUE}")
        for i in range(PER_DAY):
            q = QUESTIONS[i % len(QUESTIONS)].format(n=1000 + 37 * day + i)
            lines.append(json.dumps({
                "timestamp": f"{d.isoformat()}T08:{i:02d}:00Z", "request_id": f"d{day}-{i}",
                "model": "qwen2.5-7b-instruct",
                "messages": [{"role": "system", "content": system}, {"role": "user", "content": q}],
            }))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _kvern(*args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("gate")
    cfg = d / "config.yaml"
    cfg.write_text("gate: {policy: lru, capacity: '10000', profile: vllm, max_drop: 0.02}\n")
    return {"clean": _write_log(d / "clean.jsonl", with_date=False),
            "dated": _write_log(d / "dated.jsonl", with_date=True), "config": cfg, "dir": d}


def test_date_in_system_prompt_fails_the_gate_and_the_rule_fixes_it(logs: dict[str, Path]) -> None:
    d, cfg = logs["dir"], logs["config"]
    base = d / "baseline.json"
    code, _ = _kvern("gate", logs["clean"], "--baseline", base, "--update-baseline", "--config", cfg)
    assert code == 0 and json.loads(base.read_text())["trace"] == "clean.jsonl"

    code, _ = _kvern("gate", logs["clean"], "--baseline", base, "--config", cfg)
    assert code == 0

    code, out = _kvern("gate", logs["dated"], "--baseline", base, "--config", cfg, "--json")
    assert code == 1
    v = json.loads(out)
    assert v["passed"] is False and v["verdict"]["checks"][0]["name"] == "drop"
    assert v["verdict"]["change"] < -0.02
    top = v["breakers"][0]
    assert top["kind"] == "date" and top["role"] == "system" and "Today is <DATE>." in top["pattern"]
    assert "example" not in top  # prompt text only with --show-text
    # The first request of each day from DATE_FROM on diverges from the day before.
    assert top["requests"] == DAYS - DATE_FROM
    [gain] = v["rule_gains"]
    assert gain["rule"] == top["rule"] and gain["after"] > gain["before"] + 0.02

    fixed = d / "fixed.yaml"
    fixed.write_text(yaml.safe_dump({**yaml.safe_load(cfg.read_text()), "normalize": [top["rule"]]}))
    code, out = _kvern("gate", logs["dated"], "--baseline", base, "--config", fixed, "--json")
    assert code == 0, out
    assert json.loads(out)["verdict"]["current"] == pytest.approx(gain["after"])


def test_gate_human_output_names_the_breaker(logs: dict[str, Path]) -> None:
    base = logs["dir"] / "baseline-human.json"
    _kvern("gate", logs["clean"], "--baseline", base, "--update-baseline", "--config", logs["config"])
    code, out = _kvern("gate", logs["dated"], "--baseline", base, "--config", logs["config"])
    assert code == 1
    assert "FAILED" in out and "a date at token" in out and "of the system message" in out
    assert "Today is <DATE>." in out and "Today is 2" not in out


def test_bad_usage_exits_2(logs: dict[str, Path], tmp_path: Path) -> None:
    cfg, clean = logs["config"], logs["clean"]
    assert _kvern("gate", clean, "--baseline", tmp_path / "none.json", "--config", cfg)[0] == 2
    assert _kvern("gate", clean, "--config", cfg)[0] == 2  # nothing to gate on
    assert _kvern("gate", clean, "--update-baseline", "--config", cfg)[0] == 2
    assert _kvern("gate", clean, "--min-hit-rate", "0.5", "--capacity", "1,2", "--config", cfg)[0] == 2
    assert _kvern("gate", clean, "--min-hit-rate", "0.5", "--metric", "speed", "--config", cfg)[0] == 2
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2")
    assert _kvern("gate", clean, "--baseline", bad, "--config", cfg)[0] == 2
    other = tmp_path / "other.json"
    _kvern("gate", clean, "--baseline", other, "--update-baseline", "--capacity", "500", "--config", cfg)
    assert _kvern("gate", clean, "--baseline", other, "--config", cfg)[0] == 2  # other settings
    assert _kvern("gate", clean, "--min-hit-rate", "0.99", "--config", cfg)[0] == 1
    assert _kvern("gate", clean, "--min-hit-rate", "0.5", "--config", cfg)[0] == 0


def test_analyze_names_the_date_and_keeps_text_out(logs: dict[str, Path], tmp_path: Path) -> None:
    code, out = _kvern("analyze", logs["dated"], "--config", logs["config"], "-o", tmp_path / "a", "--json")
    assert code == 0
    a = json.loads(out)
    assert a["breakers"][0]["kind"] == "date" and "example" not in a["breakers"][0]
    assert a["rule_gains"][0]["after"] > a["rule_gains"][0]["before"]
    assert a["hot_prefixes"] and all("text" not in h for h in a["hot_prefixes"])
    assert a["profile"]["summary"]["total"]["requests"] == DAYS * PER_DAY
    assert json.loads((tmp_path / "a" / "analysis.json").read_text()) == a
    assert (tmp_path / "a" / "profile.png").stat().st_size > 0 and (tmp_path / "a" / "breakers.png").exists()

    code, out = _kvern("analyze", logs["dated"], "--config", logs["config"], "-o", tmp_path / "b", "--json",
                       "--show-text", "--no-measure")
    shown = json.loads(out)
    assert code == 0 and shown["rule_gains"] == []
    assert "appliance shop. Today is 2" in shown["breakers"][0]["example"]
    assert " Nov 2026. Answer in" in shown["breakers"][0]["example"]
    _kvern("analyze", logs["dated"], "--config", logs["config"], "-o", tmp_path / "c", "--show-text",
           "--no-measure", "-q")
    assert (tmp_path / "b" / "analysis.json").read_bytes() == (tmp_path / "c" / "analysis.json").read_bytes()
    roots = [h["text"] for h in shown["hot_prefixes"] if h["parent"] is None]
    assert roots and all(t.startswith("<|im_start|>system\nYou are Ada") for t in roots)


def test_gate_on_the_shipped_chat_sample(tmp_path: Path) -> None:
    sample, base = ROOT / "traces" / "chat_sample.jsonl", tmp_path / "b.json"
    cfg = ROOT / "config.yaml"
    assert _kvern("gate", sample, "--baseline", base, "--update-baseline", "--config", cfg)[0] == 0
    code, out = _kvern("gate", sample, "--baseline", base, "--config", cfg, "--json")
    assert code == 0 and json.loads(out)["verdict"]["change"] == 0.0

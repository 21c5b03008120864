"""kvern's ChatML template (``chatml.jinja``) rendered in plain Python.

Rendering a Jinja template costs far more per message than tokenizing the few new tokens a
chat turn adds, so for the template kvern ships the renderer below is used instead; any other
template goes through ``apply_chat_template``. The two must give the same text on every input:
``tests/ingest/test_ingest_encode.py`` checks that against the Jinja template with hypothesis.
Branches mirror the template's, in order; ``json.dumps(..., ensure_ascii=False)`` is
transformers' ``tojson`` filter with its defaults.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

DEFAULT_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
_TOOLS_HEAD = ("\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
               "You are provided with function signatures within <tools></tools> XML tags:\n<tools>")
_TOOLS_TAIL = ("\n</tools>\n\nFor each function call, return a json object with function name and arguments "
               "within <tool_call></tool_call> XML tags:\n<tool_call>\n"
               '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call><|im_end|>\n')
_MISSING = object()


@cache
def template_text() -> str:
    return (resources.files("kvern.ingest") / "chatml.jinja").read_text(encoding="utf-8")


def is_kvern_chatml(template: Any) -> bool:
    return isinstance(template, str) and template == template_text()


def _tojson(x: Any) -> str:
    return json.dumps(x, ensure_ascii=False)


def render(messages: list[dict[str, Any]], tools: list[Any] | None,
           add_generation_prompt: bool = True) -> str:
    out: list[str] = []
    first = messages[0]
    if tools:
        out.append("<|im_start|>system\n")
        out.append(first["content"] if first.get("role") == "system" else DEFAULT_SYSTEM)
        out.append(_TOOLS_HEAD)
        for tool in tools:
            out.append("\n" + _tojson(tool))
        out.append(_TOOLS_TAIL)
    elif first.get("role") == "system":
        out.append("<|im_start|>system\n" + first["content"] + "<|im_end|>\n")
    else:
        out.append("<|im_start|>system\n" + DEFAULT_SYSTEM + "<|im_end|>\n")
    last = len(messages) - 1
    for i, m in enumerate(messages):
        role = m.get("role")
        calls = m.get("tool_calls")
        if role == "user" or (role == "system" and i > 0) or (role == "assistant" and not calls):
            out.append("<|im_start|>" + role + "\n" + m["content"] + "<|im_end|>\n")
        elif role == "assistant":
            out.append("<|im_start|>" + role)
            if m.get("content"):
                out.append("\n" + m["content"])
            for call in calls:
                fn = call.get("function", _MISSING)
                if fn is not _MISSING:
                    call = fn
                out.append('\n<tool_call>\n{"name": "' + call["name"] + '", "arguments": '
                           + _tojson(call["arguments"]) + "}\n</tool_call>")
            out.append("<|im_end|>\n")
        elif role == "tool":
            if i == 0 or messages[i - 1].get("role") != "tool":
                out.append("<|im_start|>user")
            out.append("\n<tool_response>\n" + m["content"] + "\n</tool_response>")
            if i == last or messages[i + 1].get("role") != "tool":
                out.append("<|im_end|>\n")
    if add_generation_prompt:
        out.append("<|im_start|>assistant\n")
    return "".join(out)

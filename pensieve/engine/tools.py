"""Tool calls: grammars that force valid calls, and parsers that read them back.

Pensieve's tool-call syntax is the Hermes/Qwen one, which its generic tool
prompt also teaches: `<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>`.
Calls in that syntax are constrained by a grammar (llguidance) so their
arguments always match the tool's `input_schema`. Mistral's `[TOOL_CALLS]` and
Llama 3's bare JSON calls are parsed from the finished text.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

OPEN = "<tool_call>"
CLOSE = "</tool_call>"
# Compact, predictable JSON: a small model has fewer ways to go wrong.
JSON_OPTIONS = {
    "whitespace_flexible": False,
    "item_separator": ", ",
    "key_separator": ": ",
}


class GrammarError(ValueError):
    """A schema or grammar llguidance cannot compile."""


@dataclass(frozen=True)
class ToolSpec:
    """A tool the model may call."""

    name: str
    description: str
    input_schema: dict[str, Any]


@dataclass(frozen=True)
class ToolPolicy:
    """Which tools the model may call, and whether it must."""

    tools: tuple[ToolSpec, ...] = ()
    choice: Literal["auto", "any", "tool", "none"] = "auto"
    name: str | None = None  # with choice "tool"
    parallel: bool = True

    @property
    def active(self) -> bool:
        return bool(self.tools) and self.choice != "none"

    @property
    def forced(self) -> bool:
        return self.active and self.choice in ("any", "tool")

    @property
    def allowed(self) -> tuple[ToolSpec, ...]:
        if self.choice == "tool":
            return tuple(t for t in self.tools if t.name == self.name)
        return self.tools


@dataclass(frozen=True)
class ParsedCall:
    name: str
    input: dict[str, Any]
    id: str = field(default_factory=lambda: new_tool_use_id())


@dataclass(frozen=True)
class Constraint:
    """What constrained decoding must enforce (built on the inference thread)."""

    policy: ToolPolicy
    response_schema: dict[str, Any] | None = None

    @property
    def needed(self) -> bool:
        return self.policy.active or self.response_schema is not None

    def build(self, loaded: Any) -> Any:
        from .constrain import GrammarConstraint

        return GrammarConstraint(
            loaded, policy=self.policy, response_schema=self.response_schema
        )


def new_tool_use_id() -> str:
    return f"toolu_{uuid.uuid4().hex[:24]}"


def _quoted(text: str) -> str:
    """A Lark string literal for `text`."""
    return json.dumps(text)


def _schema(schema: dict[str, Any]) -> str:
    options = {**JSON_OPTIONS, "lenient": True}
    return json.dumps({**closed(schema), "x-guidance": options})


def closed(schema: Any) -> Any:
    """`schema` with objects closed to keys they do not list, where it is silent.

    Every output of the closed schema is valid for the original one, and a
    small model can no longer wander off adding keys until max_tokens.
    """
    if isinstance(schema, list):
        return [closed(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result = {key: closed(value) for key, value in schema.items()}
    if "properties" in schema and "additionalProperties" not in schema:
        result["additionalProperties"] = False
    return result


def call_rules(tools: tuple[ToolSpec, ...]) -> str:
    """Lark rules for one call body: `{"name": "<tool>", "arguments": <input>}`."""
    rules = ["call: " + " | ".join(f"call_{i}" for i in range(len(tools)))]
    for index, tool in enumerate(tools):
        head = '{"name": ' + json.dumps(tool.name) + ', "arguments": '
        rules.append(f"call_{index}: {_quoted(head)} args_{index} {_quoted('}')}")
        rules.append(f"args_{index}: %json {_schema(tool.input_schema)}")
    return "\n".join(rules)


def calls_grammar(policy: ToolPolicy, *, opened: str = "") -> str:
    """Grammar for tool calls; `opened` is what the model already wrote of them.

    From the first token (forced choice) `opened` is empty; under `auto` the
    grammar takes over once the model has written the opening tag.
    """
    first = OPEN + "\n"
    if not first.startswith(opened):
        raise ValueError(f"unexpected tool-call opening {opened!r}")
    rest = first[len(opened) :]
    head = f"{_quoted(rest)} " if rest else ""
    more = f" ({_quoted(chr(10) + first)} call {_quoted(chr(10) + CLOSE)})*"
    start = f"start: {head}call {_quoted(chr(10) + CLOSE)}"
    if policy.parallel:
        start += more
    return start + "\n" + call_rules(policy.allowed)


def json_grammar(schema: dict[str, Any]) -> str:
    """Grammar for a structured answer: JSON matching `schema`."""
    return f"start: answer\nanswer: %json {_schema(schema)}"


# --- reading calls back from finished text ---------------------------------

CALL_BLOCK = re.compile(re.escape(OPEN) + r"\s*(.*?)\s*" + re.escape(CLOSE), re.S)


def parse_tool_calls(text: str) -> tuple[str, list[ParsedCall]]:
    """Split finished text into the text before any call and the calls.

    Knows the Hermes/Qwen tags, Mistral's `[TOOL_CALLS] [...]` and Llama 3's
    bare `{"name": ..., "parameters": ...}`. Text that is not a well-formed call
    stays text.
    """
    if OPEN in text:
        calls = [_call(body) for body in CALL_BLOCK.findall(text)]
        if calls and all(calls):
            return text[: text.index(OPEN)].rstrip(), calls  # type: ignore[return-value]
    if "[TOOL_CALLS]" in text:
        before, _, after = text.partition("[TOOL_CALLS]")
        calls = _json_calls(after.strip())
        if calls:
            return before.rstrip(), calls
    stripped = text.strip().removeprefix("<|python_tag|>")
    if stripped.startswith("{"):
        calls = _json_calls(stripped)
        if calls:
            return "", calls
    return text, []


def _json_calls(text: str) -> list[ParsedCall]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return []
    items = value if isinstance(value, list) else [value]
    calls = [_call(json.dumps(item)) for item in items]
    return calls if calls and all(calls) else []  # type: ignore[return-value]


def _call(body: str) -> ParsedCall | None:
    try:
        value = json.loads(body)
    except json.JSONDecodeError:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        return None
    arguments = value.get("arguments", value.get("parameters", {}))
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            return None
    if not isinstance(arguments, dict):
        return None
    return ParsedCall(value["name"], arguments)

"""Tools: what the model may call (ToolSpec, ToolPolicy), what constrained
decoding enforces (Constraint), and a reader of Hermes-style calls in
finished text (for evaluations)."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

OPEN = "<tool_call>"
CLOSE = "</tool_call>"


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
    """What constrained decoding must enforce (built on the inference thread).

    `reasoning`: the model may reason first (thinking not switched off);
    `in_reasoning`: the prompt already opened the reasoning block;
    `budget`: most reasoning tokens before its close is forced;
    `force_reasoning`: open the reasoning block if the prompt did not;
    `lead`: text forced first when the output will not reason (`skipped`).
    """

    policy: ToolPolicy
    response_schema: dict[str, Any] | None = None
    reasoning: bool = False
    in_reasoning: bool = False
    budget: int | None = None
    force_reasoning: bool = False  # thinking was asked for: open the block
    lead: str = ""

    @property
    def needed(self) -> bool:
        tools = self.policy.active or self.response_schema is not None
        forced = self.budget is not None or self.force_reasoning or self.lead
        return tools or bool(forced)

    def build(self, loaded: Any) -> Any:
        from .reasoning import ReasoningGate

        return ReasoningGate(loaded, loaded.family, self)


def new_tool_use_id() -> str:
    return f"toolu_{uuid.uuid4().hex[:24]}"


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

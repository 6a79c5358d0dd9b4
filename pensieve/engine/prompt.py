"""Render a conversation to token ids through the model's own chat template.

Templates that know about tools get them the Hugging Face way
(`apply_chat_template(..., tools=...)`, `tool_calls`, `tool` turns). Templates
that do not get the generic format below: the tool list in the system prompt,
calls as `<tool_call>` JSON in assistant turns, results as `<tool_response>`
in user turns.
"""

from __future__ import annotations

import json
from typing import Any

from jinja2 import TemplateError

from .request import ChatMessage
from .tools import ToolSpec

GENERIC_TOOLS_PROMPT = """# Tools

You may call one or more functions to assist with the user query.

You are provided with function signatures within <tools></tools> XML tags:
<tools>
{tools}
</tools>

For each function call, return a json object with function name and arguments \
within <tool_call></tool_call> XML tags:
<tool_call>
{{"name": <function-name>, "arguments": <args-json-object>}}
</tool_call>"""


def tool_json(tool: ToolSpec) -> dict[str, Any]:
    """A tool in the OpenAI/Hugging Face function format."""
    return {
        "type": "function",
        "function": {
            "name": tool.name,
            "description": tool.description,
            "parameters": tool.input_schema,
        },
    }


def template_supports_tools(tokenizer: Any) -> bool:
    template = getattr(tokenizer, "chat_template", None)
    return isinstance(template, str) and "tools" in template


def render_prompt(
    tokenizer: Any, messages: list[ChatMessage], tools: list[ToolSpec]
) -> list[int]:
    """Token ids for `messages` (and `tools`); a final assistant turn is continued."""
    if template_supports_tools(tokenizer):
        turns = [hf_turn(m) for m in messages]
        tool_list = [tool_json(t) for t in tools] or None
    else:
        turns = generic_turns(messages, tools)
        tool_list = None
    try:
        text = apply_template(tokenizer, turns, tool_list)
    except TemplateError:
        # Some templates reject system turns after the first: fold them into user text.
        text = apply_template(tokenizer, fold_late_system_turns(turns), tool_list)
    return tokenizer.encode(text, add_special_tokens=False)


def apply_template(
    tokenizer: Any, turns: list[dict[str, Any]], tools: list[dict[str, Any]] | None
) -> str:
    prefill = bool(turns) and turns[-1]["role"] == "assistant"
    return tokenizer.apply_chat_template(
        turns,
        tools=tools,
        tokenize=False,
        add_generation_prompt=not prefill,
        continue_final_message=prefill,
    )


def hf_turn(message: ChatMessage) -> dict[str, Any]:
    turn: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        turn["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.input},
            }
            for call in message.tool_calls
        ]
    if message.role == "tool":
        turn["tool_call_id"] = message.tool_call_id
        if message.is_error:
            turn["content"] = f"Error: {message.content}"
    return turn


def generic_turns(
    messages: list[ChatMessage], tools: list[ToolSpec]
) -> list[dict[str, Any]]:
    """Turns for a template without tool support, in the generic text format."""
    turns: list[dict[str, Any]] = []
    if tools:
        listing = "\n".join(json.dumps(tool_json(t)) for t in tools)
        tools_text = GENERIC_TOOLS_PROMPT.format(tools=listing)
        if messages and messages[0].role == "system":
            tools_text = f"{messages[0].content}\n\n{tools_text}"
            messages = messages[1:]
        turns.append({"role": "system", "content": tools_text})
    for message in messages:
        role, content = message.role, message.content
        if message.tool_calls:
            calls = [
                "<tool_call>\n"
                + json.dumps({"name": c.name, "arguments": c.input})
                + "\n</tool_call>"
                for c in message.tool_calls
            ]
            content = "\n".join(part for part in (content, *calls) if part)
        if role == "tool":
            prefix = "Error: " if message.is_error else ""
            role, content = (
                "user",
                f"<tool_response>\n{prefix}{content}\n</tool_response>",
            )
        append_turn(turns, role, content)
    return turns


def fold_late_system_turns(turns: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """System turns after the first become user text; same-role turns are joined."""
    folded: list[dict[str, Any]] = []
    for index, turn in enumerate(turns):
        if turn["role"] == "system" and index > 0:
            append_turn(folded, "user", f"[System message]\n{turn['content']}")
        else:
            append_turn(folded, turn["role"], turn["content"], turn)
    return folded


def append_turn(
    turns: list[dict[str, Any]],
    role: str,
    content: str,
    template: dict[str, Any] | None = None,
) -> None:
    """Append a turn, joining it to the previous one when the roles match."""
    plain = template is None or set(template) <= {"role", "content"}
    if turns and turns[-1]["role"] == role and plain and role in ("user", "system"):
        turns[-1] = {**turns[-1], "content": f"{turns[-1]['content']}\n\n{content}"}
    else:
        turns.append({**(template or {}), "role": role, "content": content})

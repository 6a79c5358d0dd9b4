"""Render a conversation to token ids through the model's own chat template.

Templates that know about tools get the conversation the Hugging Face way
they were written for (`apply_chat_template(..., tools=...)`, assistant
`tool_calls` with dict arguments, or JSON text where the family wants it,
`tool` turns with the call's id and the tool's name, `""` for empty content,
earlier reasoning as `reasoning_content`), and no text of Pensieve's own.
Templates that do not get the generic format below: the tool list in the
system prompt, calls as `<tool_call>` JSON in assistant turns, results as
`<tool_response>` in user turns.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import string
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from jinja2 import TemplateError

from .events import Prompt
from .families import GENERIC, Family, detect_family
from .request import ChatMessage, GenerationRequest, Thinking
from .tools import ToolSpec

if TYPE_CHECKING:
    from .loading import LoadedModel


class PromptTooLong(ValueError):
    """The prompt leaves no room in the context window."""

    def __init__(self, tokens: int, maximum: int) -> None:
        super().__init__(f"prompt is too long: {tokens} tokens > {maximum} maximum")
        self.tokens = tokens
        self.maximum = maximum


def fit_prompt(
    token_ids: list[int],
    context_length: int,
    cached: int = 0,
    *,
    in_reasoning: bool = False,
) -> Prompt:
    """`token_ids` as a Prompt, or PromptTooLong if no new token would fit."""
    maximum = context_length - 1
    if len(token_ids) > maximum:
        raise PromptTooLong(len(token_ids), maximum)
    room = context_length - len(token_ids)
    return Prompt(token_ids, room, cached_estimate=cached, in_reasoning=in_reasoning)


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


class TemplateRenderError(ValueError):
    """The chat template raised while rendering a request's conversation."""


@dataclass(frozen=True)
class Rendered:
    """A rendered prompt: its text, and its tokens once asked for (the prompt
    cache may tokenise only the text after a cached entry's)."""

    text: str
    tokenizer: Any = field(repr=False, compare=False)

    @functools.cached_property
    def token_ids(self) -> list[int]:
        return self.encode(self.text)

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))


def thinking_switch(thinking: Thinking | None) -> dict[str, Any]:
    """Template variables that turn reasoning on or off (none: the default)."""
    if thinking is None:
        return {}
    on = thinking.type != "disabled"
    return {"enable_thinking": on, "thinking": on}


def template_supports_tools(tokenizer: Any) -> bool:
    return detect_family(getattr(tokenizer, "chat_template", None)).native_tools


def render_prompt(
    tokenizer: Any, messages: list[ChatMessage], tools: list[ToolSpec]
) -> list[int]:
    """Token ids for `messages` (and `tools`), as `render_conversation` makes them."""
    family = detect_family(getattr(tokenizer, "chat_template", None))
    return render_conversation(tokenizer, messages, tools, family=family).token_ids


def render_conversation(
    tokenizer: Any,
    messages: list[ChatMessage],
    tools: list[ToolSpec],
    *,
    family: Family = GENERIC,
    thinking: Thinking | None = None,
) -> Rendered:
    """`messages` (and `tools`) as the template renders them; a final
    assistant turn is continued. TemplateRenderError if the template raises."""
    if family.native_tools:
        turns = hf_turns(messages, family)
        tool_list = [tool_json(t) for t in tools] or None
    else:
        turns = generic_turns(messages, tools)
        tool_list = None
    switch = thinking_switch(thinking)
    # Some templates reject system turns after the first (fold them into user
    # text), or user text right after tool results (Mistral: roles alternate).
    folded = fold_late_system_turns(turns)
    for attempt in (turns, folded, fold_user_after_tools(folded)):
        try:
            text = apply_template(tokenizer, attempt, tool_list, switch)
            break
        except TemplateError as error:
            failure = error
    else:
        raise TemplateRenderError(
            f"the model's chat template cannot render this conversation: {failure}"
        ) from None
    return Rendered(text, tokenizer)


def hf_tokenizer(tokenizer: Any) -> Any:
    """The Hugging Face tokenizer inside mlx-lm's TokenizerWrapper (or itself)."""
    is_wrapper = hasattr(tokenizer, "_thinking_kwarg")
    return tokenizer._tokenizer if is_wrapper else tokenizer


def apply_template(
    tokenizer: Any,
    turns: list[dict[str, Any]],
    tools: list[dict[str, Any]] | None,
    switch: dict[str, Any],
) -> str:
    prefill = bool(turns) and turns[-1]["role"] == "assistant"
    # mlx-lm's wrapper switches thinking on for any vocabulary with think
    # markers; the Hugging Face tokenizer under it leaves the template's own
    # default (DeepSeek-V3.1's is off) when the request does not say.
    renderer = tokenizer
    if getattr(tokenizer, "_chat_template", None) is None:  # no Python renderer
        renderer = hf_tokenizer(tokenizer)
    return renderer.apply_chat_template(
        turns,
        tools=tools,
        tokenize=False,
        add_generation_prompt=not prefill,
        continue_final_message=prefill,
        **switch,
    )


def call_id(raw: str, family: Family) -> str:
    """An id in the form the template demands (Mistral: 9 letters or digits),
    the same for the same id in every turn."""
    size = family.call_id_length
    if size is None or re.fullmatch(f"[a-zA-Z0-9]{{{size}}}", raw):
        return raw
    digest = int.from_bytes(hashlib.sha256(raw.encode()).digest()[:8], "big")
    alphabet = string.ascii_letters + string.digits
    chars = []
    for _ in range(size):
        digest, index = divmod(digest, len(alphabet))
        chars.append(alphabet[index])
    return "".join(chars)


def hf_turns(messages: list[ChatMessage], family: Family) -> list[dict[str, Any]]:
    """The conversation as Hugging Face turns; tool turns name their tool."""
    names = {c.id: c.name for m in messages for c in m.tool_calls}
    return [hf_turn(m, family, names) for m in messages]


def hf_turn(
    message: ChatMessage, family: Family, names: dict[str, str]
) -> dict[str, Any]:
    turn: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.reasoning:
        turn["reasoning_content"] = turn["thinking"] = message.reasoning
    if message.tool_calls:
        turn["tool_calls"] = [
            {
                "id": call_id(call.id, family),
                "type": "function",
                "function": {
                    "name": call.name,
                    "arguments": json.dumps(call.input, ensure_ascii=False)
                    if family.string_arguments
                    else call.input,
                },
            }
            for call in message.tool_calls
        ]
    if message.role == "tool":
        raw = message.tool_call_id or ""
        turn["tool_call_id"] = call_id(raw, family)
        turn["name"] = names.get(raw, "")
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
                + json.dumps({"name": c.name, "arguments": c.input}, ensure_ascii=False)
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


def fold_user_after_tools(turns: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """User text right after tool results joins the last result (as Claude
    Code sends them: in one user message)."""
    folded: list[dict[str, Any]] = []
    for turn in turns:
        previous = folded[-1] if folded else None
        if turn["role"] == "user" and previous and previous["role"] == "tool":
            text = f"{previous['content']}\n\n{turn['content']}"
            folded[-1] = {**previous, "content": text}
        else:
            folded.append(turn)
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


def render_request(loaded: LoadedModel, request: GenerationRequest) -> Rendered:
    """The request's conversation as the template renders it. A forced call
    that will not reason is rendered with reasoning off where the template's
    default generation prompt would open it (Qwen3.5, MiniMax-M2): the turn
    then renders back, in the next request, as it was generated."""

    def render(thinking: Thinking | None) -> Rendered:
        return render_conversation(
            loaded.tokenizer,
            list(request.messages),
            list(request.tools),
            family=loaded.family,
            thinking=thinking,
        )

    rendered = render(request.thinking)
    if request.quiet and opens_reasoning(loaded, rendered.text):
        off = render(Thinking("disabled"))
        if not opens_reasoning(loaded, off.text):
            return off
    return rendered


def pending_lead(loaded: LoadedModel, prompt_text: str) -> str:
    """What of the family's `skipped` text the prompt has not written yet."""
    reasoning = loaded.family.reasoning
    skipped = reasoning.skipped if reasoning is not None else ""
    for size in range(len(skipped), 0, -1):
        if prompt_text.endswith(skipped[:size]):
            return skipped[size:]
    return skipped


def opens_reasoning(loaded: LoadedModel, prompt_text: str) -> bool:
    """Whether the prompt's generation prompt opens the reasoning block (the
    output then starts inside it: Qwen3.5, DeepSeek-V3.1, MiniMax-M2)."""
    reasoning = loaded.family.reasoning
    return reasoning is not None and prompt_text.rstrip().endswith(
        reasoning.open.rstrip()
    )

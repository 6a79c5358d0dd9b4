"""Prompt rendering with the bundled model's real tokenizer and chat template."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from transformers import AutoTokenizer

from pensieve.engine import ChatMessage, ToolCall, ToolSpec
from pensieve.engine.prompt import (
    TemplateRenderError,
    render_prompt,
    template_supports_tools,
)

WEATHER = ToolSpec(
    "get_weather",
    "Weather for a city",
    {"type": "object", "properties": {"city": {"type": "string"}}},
)


@pytest.fixture(scope="module")
def tokenizer(bundled_model_dir: Path) -> Any:
    return AutoTokenizer.from_pretrained(bundled_model_dir)


def text_of(tokenizer: Any, messages: list[ChatMessage], tools=()) -> str:
    return tokenizer.decode(render_prompt(tokenizer, messages, list(tools)))


def test_plain_chat_uses_the_model_template(tokenizer: Any) -> None:
    text = text_of(tokenizer, [ChatMessage("user", "Hi")])
    assert text.endswith("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")


def test_final_assistant_turn_is_continued(tokenizer: Any) -> None:
    messages = [ChatMessage("user", "Hi"), ChatMessage("assistant", "Hello, my")]
    assert text_of(tokenizer, messages).endswith("<|im_start|>assistant\nHello, my")


def test_generic_tool_format_for_a_template_without_tools(tokenizer: Any) -> None:
    assert not template_supports_tools(tokenizer)
    messages = [
        ChatMessage("system", "Be brief."),
        ChatMessage("user", "Weather in Paris?"),
        ChatMessage(
            "assistant", "", (ToolCall("toolu_1", "get_weather", {"city": "Paris"}),)
        ),
        ChatMessage("tool", "Sunny", tool_call_id="toolu_1"),
        ChatMessage("tool", "timeout", tool_call_id="toolu_2", is_error=True),
    ]
    text = text_of(tokenizer, messages, [WEATHER])
    assert text.startswith("<|im_start|>system\nBe brief.\n\n# Tools")
    assert '"name": "get_weather"' in text
    assert (
        '<|im_start|>assistant\n<tool_call>\n{"name": "get_weather", '
        '"arguments": {"city": "Paris"}}\n</tool_call><|im_end|>'
    ) in text
    assert (
        "<|im_start|>user\n<tool_response>\nSunny\n</tool_response>\n\n"
        "<tool_response>\nError: timeout\n</tool_response><|im_end|>"
    ) in text


def test_system_turns_inside_messages_are_rendered(tokenizer: Any) -> None:
    messages = [
        ChatMessage("user", "Hi"),
        ChatMessage("system", "Reminder: be brief."),
        ChatMessage("user", "Tell me more"),
    ]
    text = text_of(tokenizer, messages)
    assert "Reminder: be brief." in text and text.count("<|im_start|>") == 5


def test_streamed_pieces_never_split_a_character(bundled_model_dir: Path) -> None:
    """The streaming detokenizer the engine uses holds back partial UTF-8."""
    from mlx_lm.tokenizer_utils import load

    wrapper = load(bundled_model_dir)
    text = "héllo 日本語 🎉👍 ok"
    detokenizer = wrapper.detokenizer
    detokenizer.reset()
    pieces = []
    for token in wrapper.encode(text, add_special_tokens=False):
        detokenizer.add_token(token)
        pieces.append(detokenizer.last_segment)
    detokenizer.finalize()
    pieces.append(detokenizer.last_segment)
    assert "".join(pieces) == text
    assert not any("\ufffd" in piece for piece in pieces)
    assert len([p for p in pieces if p]) > 5  # it really streamed in pieces


# A template of our own in Mistral's manner: user and assistant turns must
# alternate, tool turns and assistant calls aside.
ALTERNATING = (
    "{%- set ns = namespace(index=0) %}{% if tools %}[TOOLS]{{ tools | length }}"
    "[/TOOLS]{% endif %}{%- for m in messages %}"
    "{%- if not (m.role == 'tool' or m.tool_calls) %}"
    "{%- if (m.role == 'user') != (ns.index % 2 == 0) %}"
    "{{- raise_exception('roles must alternate user/assistant') }}{% endif %}"
    "{%- set ns.index = ns.index + 1 %}{% endif %}"
    "{%- if m.role == 'user' %}[INST]{{ m.content }}[/INST]"
    "{%- elif m.role == 'tool' %}[TOOL_RESULTS]{{ m.content }}[/TOOL_RESULTS]"
    "{%- elif m.tool_calls %}[TOOL_CALLS]{{ m.tool_calls[0].function.name }}"
    "{%- else %}{{ m.content }}</s>{% endif %}{% endfor %}"
)
CALLED = [
    ChatMessage("user", "Weather in Paris?"),
    ChatMessage("assistant", "", (ToolCall("abcdefghi", "get_weather", {}),)),
    ChatMessage("tool", "sunny", tool_call_id="abcdefghi"),
]


@pytest.fixture
def alternating(tokenizer: Any) -> Any:
    own = copy.deepcopy(tokenizer)
    own.chat_template = ALTERNATING
    return own


def test_user_text_after_tool_results_joins_them(alternating: Any) -> None:
    """Claude Code sends a tool_result and text in one user message."""
    messages = [*CALLED, ChatMessage("user", "And Berlin?")]
    rendered = text_of(alternating, messages, [WEATHER])
    assert "[TOOL_RESULTS]sunny\n\nAnd Berlin?[/TOOL_RESULTS]" in rendered


def test_a_conversation_the_template_refuses_is_a_render_error(
    alternating: Any,
) -> None:
    messages = [ChatMessage("user", "a"), ChatMessage("user", "b")]
    messages.insert(1, ChatMessage("assistant", "x"))
    messages.insert(1, ChatMessage("assistant", "y"))  # two answers in a row
    with pytest.raises(TemplateRenderError, match="roles must alternate"):
        render_prompt(alternating, messages, [WEATHER])

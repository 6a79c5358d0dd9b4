"""Engine events as the Anthropic Messages stream, and the Message folded from it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pensieve.api.message_events import complete_message, stream_events, usage_object
from pensieve.api.messages import message_start
from pensieve.engine.engine import Generation
from pensieve.engine.events import (
    Event,
    Finished,
    KeepAlive,
    Prompt,
    TextDelta,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    Usage,
)
from pensieve.engine.toolstream import ToolCallSplitter

USAGE = Usage(input_tokens=12, output_tokens=5, cache_read_input_tokens=30)
START: dict[str, Any] = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": "m",
    "content": [],
    "stop_reason": None,
    "stop_sequence": None,
    "usage": {"input_tokens": 12, "output_tokens": 0},
}


def done(reason: str = "end_turn", sequence: str | None = None) -> Finished:
    return Finished(reason, sequence, USAGE)  # type: ignore[arg-type]


def stream(events: list[Event]) -> list[tuple[str, dict[str, Any]]]:
    out = list(stream_events(START, events))
    for name, data in out:
        assert data["type"] == name  # every event names its own type
    return out


def names(out: list[tuple[str, dict[str, Any]]]) -> list[str]:
    return [name for name, _ in out]


def blocks(out: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, int]]:
    """(event name, index) of the content block events."""
    return [(n, d["index"]) for n, d in out if n.startswith("content_block")]


def test_text_only() -> None:
    out = stream([TextDelta("Hel"), TextDelta("lo"), done()])
    assert names(out) == [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert out[0][1]["message"] == START
    assert out[2][1]["content_block"] == {"type": "text", "text": ""}
    deltas = [d["delta"] for n, d in out if n == "content_block_delta"]
    assert deltas == [
        {"type": "text_delta", "text": "Hel"},
        {"type": "text_delta", "text": "lo"},
    ]
    assert {index for _, index in blocks(out)} == {0}
    assert out[-2][1]["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert out[-2][1]["usage"] == usage_object(USAGE)


def test_stop_sequence_is_reported() -> None:
    out = stream([TextDelta("a"), done("stop_sequence", "###")])
    delta = out[-2][1]["delta"]
    assert delta == {"stop_reason": "stop_sequence", "stop_sequence": "###"}


def test_keep_alives_become_pings() -> None:
    out = stream([KeepAlive(), TextDelta("a"), KeepAlive(), TextDelta("b"), done()])
    assert names(out)[:4] == ["message_start", "ping", "ping", "content_block_start"]
    assert names(out).count("ping") == 3
    assert blocks(out) == [
        ("content_block_start", 0),
        ("content_block_delta", 0),
        ("content_block_delta", 0),
        ("content_block_stop", 0),
    ]


def test_tool_call_after_text() -> None:
    events: list[Event] = [
        TextDelta("Checking."),
        ToolCallStart("toolu_1", "weather"),
        ToolCallDelta('{"city": '),
        ToolCallDelta('"Paris"}'),
        ToolCallEnd({"city": "Paris"}),
        done("tool_use"),
    ]
    out = stream(events)
    assert blocks(out) == [
        ("content_block_start", 0),
        ("content_block_delta", 0),
        ("content_block_stop", 0),
        ("content_block_start", 1),
        ("content_block_delta", 1),
        ("content_block_delta", 1),
        ("content_block_stop", 1),
    ]
    tool_block = [d for n, d in out if n == "content_block_start"][1]["content_block"]
    assert tool_block == {
        "type": "tool_use",
        "id": "toolu_1",
        "name": "weather",
        "input": {},
    }
    pieces = [d["delta"] for n, d in out if n == "content_block_delta"][1:]
    assert pieces == [
        {"type": "input_json_delta", "partial_json": '{"city": '},
        {"type": "input_json_delta", "partial_json": '"Paris"}'},
    ]
    assert out[-2][1]["delta"]["stop_reason"] == "tool_use"
    assert names(out)[-2:] == ["message_delta", "message_stop"]


def test_two_tool_calls_and_text_after_them() -> None:
    events: list[Event] = [
        ToolCallStart("toolu_a", "a"),
        ToolCallDelta("{}"),
        ToolCallEnd({}),
        ToolCallStart("toolu_b", "b"),
        ToolCallEnd({}),
        TextDelta("after"),
        done(),
    ]
    out = stream(events)
    assert blocks(out) == [
        ("content_block_start", 0),
        ("content_block_delta", 0),
        ("content_block_stop", 0),
        ("content_block_start", 1),
        ("content_block_stop", 1),
        ("content_block_start", 2),
        ("content_block_delta", 2),
        ("content_block_stop", 2),
    ]
    ids = [d["content_block"].get("id") for n, d in out if n == "content_block_start"]
    assert ids == ["toolu_a", "toolu_b", None]


def test_nothing_generated_gives_one_empty_text_block() -> None:
    out = stream([KeepAlive(), done("max_tokens")])
    assert names(out) == [
        "message_start",
        "ping",
        "ping",
        "content_block_start",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert out[3][1] == {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "text", "text": ""},
    }
    assert out[-2][1]["delta"]["stop_reason"] == "max_tokens"


def test_complete_message_folds_text_and_tool_input() -> None:
    events: list[Event] = [
        TextDelta("Let me "),
        TextDelta("look."),
        ToolCallStart("toolu_1", "search"),
        ToolCallDelta('{"q": "mlx", '),
        ToolCallDelta('"n": [1, 2]}'),
        ToolCallEnd({"q": "mlx", "n": [1, 2]}),
        done("tool_use"),
    ]
    message = complete_message(START, events)
    assert message["content"] == [
        {"type": "text", "text": "Let me look."},
        {
            "type": "tool_use",
            "id": "toolu_1",
            "name": "search",
            "input": {"q": "mlx", "n": [1, 2]},
        },
    ]
    assert message["stop_reason"] == "tool_use" and message["stop_sequence"] is None
    assert message["usage"] == usage_object(USAGE)
    assert message["id"] == "msg_1" and message["role"] == "assistant"
    assert START["content"] == [] and START["stop_reason"] is None  # not mutated


def test_complete_message_of_nothing() -> None:
    message = complete_message(START, [done()])
    assert message["content"] == [{"type": "text", "text": ""}]


def test_complete_message_of_a_call_without_arguments() -> None:
    events: list[Event] = [ToolCallStart("t", "f"), ToolCallEnd({}), done("tool_use")]
    message = complete_message(START, events)
    assert message["content"] == [
        {"type": "tool_use", "id": "t", "name": "f", "input": {}}
    ]


def test_complete_message_of_a_call_cut_short() -> None:
    """A call cut off by max_tokens is no valid tool_use: it is left out."""
    splitter = ToolCallSplitter(True)
    events = [TextDelta("Checking.")]
    events += splitter.feed('<tool_call>\n{"name": "f", "arguments": {"a": ')
    events += [*splitter.finish(), done("max_tokens")]
    message = complete_message(START, events)
    assert message["content"] == [{"type": "text", "text": "Checking."}]
    assert message["stop_reason"] == "max_tokens"


def test_splitter_output_streamed_char_by_char_folds_back() -> None:
    arguments = {"path": "a.txt", "lines": [1, 2]}
    body = json.dumps({"name": "read", "arguments": arguments})
    text = f"Reading.\n<tool_call>\n{body}\n</tool_call>"
    splitter = ToolCallSplitter(True)
    events = [e for char in text for e in splitter.feed(char)] + splitter.finish()
    message = complete_message(START, [*events, done("tool_use")])
    assert [block["type"] for block in message["content"]] == ["text", "tool_use"]
    assert message["content"][0]["text"] == "Reading."  # "\n": the template's
    assert message["content"][1]["name"] == "read"
    assert message["content"][1]["input"] == arguments


def test_usage_object() -> None:
    usage = Usage(3, 4, cache_read_input_tokens=5, cache_creation_input_tokens=6)
    assert usage_object(usage) == {
        "input_tokens": 3,
        "output_tokens": 4,
        "cache_creation_input_tokens": 6,
        "cache_read_input_tokens": 5,
    }


@pytest.mark.parametrize(
    ("caching", "fields"),
    [(True, (0, 13, 24)), (False, (13, 0, 24))],
)
def test_the_prompts_usage_is_three_disjoint_parts(
    caching: bool, fields: tuple[int, int, int]
) -> None:
    """37 prompt tokens, 24 read from the cache: the 13 processed are written
    to it while it is on (counted once, as Anthropic counts), else input."""
    usage = Usage.of_prompt(37, 5, read=24, caching=caching)
    assert (
        usage.input_tokens,
        usage.cache_creation_input_tokens,
        usage.cache_read_input_tokens,
    ) == fields
    assert usage.prompt_tokens == 37 and usage.processed_tokens == 13


def test_message_start_shows_the_same_three_parts() -> None:
    prompt = Prompt(list(range(37)), 100, cached_estimate=24)
    start = message_start(Generation("m", prompt, iter(()), caching=True))
    assert start["usage"] == {
        "input_tokens": 0,
        "output_tokens": 0,
        "cache_creation_input_tokens": 13,
        "cache_read_input_tokens": 24,
    }

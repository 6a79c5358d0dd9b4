"""Engine events as OpenAI chat-completion deltas, chunks and answers."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pensieve.api.chat_events import (
    chat_choice,
    chat_deltas,
    collect,
    finish_reason,
    merge_delta,
    stream_chunks,
    text_choice,
    usage_object,
)
from pensieve.engine.events import (
    Event,
    Finished,
    KeepAlive,
    TextDelta,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    Usage,
)
from pensieve.sse import Comment, DataEvent, Done

USAGE = Usage(input_tokens=10, output_tokens=4, cache_read_input_tokens=90)
HEAD: dict[str, Any] = {
    "id": "chatcmpl-x",
    "object": "chat.completion.chunk",
    "created": 0,
    "model": "m",
    "system_fingerprint": None,
}
OPENING = {"role": "assistant", "content": ""}


def done(reason: str = "end_turn") -> Finished:
    return Finished(reason, None, USAGE)  # type: ignore[arg-type]


def two_calls() -> list[Event]:
    return [
        TextDelta("Let "),
        TextDelta("me."),
        ToolCallStart("call_a", "read"),
        ToolCallDelta('{"path": '),
        ToolCallDelta('"x"}'),
        ToolCallEnd({"path": "x"}),
        ToolCallStart("call_b", "list"),
        ToolCallDelta("{}"),
        ToolCallEnd({}),
        done("tool_use"),
    ]


def test_text_deltas_are_content() -> None:
    finished = done()
    out = list(chat_deltas([TextDelta("a"), KeepAlive(), TextDelta("b"), finished]))
    assert out == [{"content": "a"}, KeepAlive(), {"content": "b"}, finished]


def test_tool_calls_are_numbered_in_order() -> None:
    out = list(chat_deltas(two_calls()))
    calls = [d["tool_calls"] for d in out if isinstance(d, dict) and "tool_calls" in d]
    assert calls == [
        [
            {
                "index": 0,
                "id": "call_a",
                "type": "function",
                "function": {"name": "read", "arguments": ""},
            }
        ],
        [{"index": 0, "function": {"arguments": '{"path": '}}],
        [{"index": 0, "function": {"arguments": '"x"}'}}],
        [
            {
                "index": 1,
                "id": "call_b",
                "type": "function",
                "function": {"name": "list", "arguments": ""},
            }
        ],
        [{"index": 1, "function": {"arguments": "{}"}}],
    ]
    assert not any(isinstance(item, ToolCallEnd) for item in out)


def test_collect_folds_everything_into_one_message() -> None:
    whole, finished = collect(two_calls())
    assert finished == done("tool_use")
    assert whole == {
        "content": "Let me.",
        "tool_calls": [
            {
                "id": "call_a",
                "type": "function",
                "function": {"name": "read", "arguments": '{"path": "x"}'},
            },
            {
                "id": "call_b",
                "type": "function",
                "function": {"name": "list", "arguments": "{}"},
            },
        ],
    }
    assert json.loads(whole["tool_calls"][0]["function"]["arguments"]) == {"path": "x"}


def test_collect_of_text_only_has_no_tool_calls() -> None:
    whole, _ = collect([KeepAlive(), TextDelta("hi"), done()])
    assert whole == {"content": "hi"}


def test_collect_without_a_finish_fails() -> None:
    with pytest.raises(RuntimeError):
        collect([TextDelta("hi")])


def test_merge_delta_starts_from_none_content() -> None:
    whole: dict[str, Any] = {"content": None}
    merge_delta(whole, {"content": "a"})
    merge_delta(whole, {})
    merge_delta(whole, {"content": "b"})
    assert whole == {"content": "ab"}


def test_merge_delta_does_not_share_the_delta_function() -> None:
    function = {"name": "f", "arguments": ""}
    first = {"tool_calls": [{"index": 0, "id": "c", "function": function}]}
    whole: dict[str, Any] = {}
    merge_delta(whole, first)
    merge_delta(whole, {"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]})
    assert whole["tool_calls"][0]["function"] == {"name": "f", "arguments": "{}"}
    assert function == {"name": "f", "arguments": ""}


def bodies(frames: list[Any]) -> list[dict[str, Any]]:
    return [frame.data for frame in frames if isinstance(frame, DataEvent)]


def test_stream_without_usage() -> None:
    events = [TextDelta("Hi"), KeepAlive(), TextDelta("!"), done("max_tokens")]
    frames = list(
        stream_chunks(HEAD, events, chat_choice, OPENING, include_usage=False)
    )
    assert [type(frame) for frame in frames] == [
        DataEvent,
        DataEvent,
        Comment,
        DataEvent,
        DataEvent,
        Done,
    ]
    chunks = bodies(frames)
    for chunk in chunks:
        assert {k: chunk[k] for k in HEAD} == HEAD
        assert "usage" not in chunk and len(chunk["choices"]) == 1
    choices = [chunk["choices"][0] for chunk in chunks]
    assert [c["delta"] for c in choices] == [
        OPENING,
        {"content": "Hi"},
        {"content": "!"},
        {},
    ]
    assert [c["finish_reason"] for c in choices] == [None, None, None, "length"]
    assert all(c["index"] == 0 and c["logprobs"] is None for c in choices)
    assert frames[2].encode().startswith(":")
    assert frames[-1].encode() == "data: [DONE]\n\n"


def test_stream_with_usage_ends_with_a_usage_only_chunk() -> None:
    frames = list(
        stream_chunks(HEAD, two_calls(), chat_choice, None, include_usage=True)
    )
    assert isinstance(frames[-1], Done)
    chunks = bodies(frames)
    assert len(chunks) == len(frames) - 1
    *others, finish, last = chunks
    assert last["choices"] == [] and last["usage"] == usage_object(USAGE)
    assert all(chunk["usage"] is None for chunk in [*others, finish])
    assert finish["choices"][0]["finish_reason"] == "tool_calls"
    assert finish["choices"][0]["delta"] == {}
    assert others[0]["choices"][0]["delta"] == {"content": "Let "}  # no opening
    ids = [
        call.get("id")
        for chunk in others
        for call in chunk["choices"][0]["delta"].get("tool_calls", [])
    ]
    assert [i for i in ids if i] == ["call_a", "call_b"]


def test_chunks_encode_as_sse_data_frames() -> None:
    frames = list(
        stream_chunks(
            HEAD, [TextDelta("é"), done()], chat_choice, None, include_usage=False
        )
    )
    for frame in frames[:-1]:
        text = frame.encode()
        assert text.startswith("data: ") and text.endswith("\n\n")
        assert json.loads(text.removeprefix("data: ")) == frame.data
    assert "é" in frames[0].encode()


def test_text_completion_choices() -> None:
    events = [TextDelta("ab"), done("stop_sequence")]
    frames = list(stream_chunks(HEAD, events, text_choice, None, include_usage=False))
    choices = [chunk["choices"][0] for chunk in bodies(frames)]
    assert [(c["text"], c["finish_reason"]) for c in choices] == [
        ("ab", None),
        ("", "stop"),
    ]


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("end_turn", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("stop_sequence", "stop"),
    ],
)
def test_finish_reason(reason: str, expected: str) -> None:
    assert finish_reason(done(reason)) == expected


def test_usage_counts_cached_tokens_as_prompt_tokens() -> None:
    usage = usage_object(USAGE)
    assert usage["prompt_tokens"] == 100
    assert usage["completion_tokens"] == 4
    assert usage["total_tokens"] == 104
    assert usage["prompt_tokens_details"]["cached_tokens"] == 90
    assert usage_object(Usage(7, 1))["prompt_tokens_details"]["cached_tokens"] == 0

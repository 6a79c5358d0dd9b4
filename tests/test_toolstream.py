"""Streaming tool calls: splitting model text into text and tool-call events."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pensieve.engine.events import (
    Event,
    TextDelta,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
)
from pensieve.engine.toolstream import ToolCallSplitter, partial_suffix

ARGUMENTS = {"city": "Paris", "days": [1, 2], "opts": {"unit": "C", "note": "}"}}


def call_text(name: str, arguments: dict[str, Any]) -> str:
    """One call as the grammar writes it (compact JSON with ', ' and ': ')."""
    body = json.dumps({"name": name, "arguments": arguments})
    return f"<tool_call>\n{body}\n</tool_call>"


def split(pieces: list[str], *, enabled: bool = True) -> list[Event]:
    splitter = ToolCallSplitter(enabled)
    events: list[Event] = []
    for piece in pieces:
        events.extend(splitter.feed(piece))
    return events + splitter.finish()


def text_of(events: list[Event]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def arguments_of(events: list[Event]) -> str:
    return "".join(e.partial_json for e in events if isinstance(e, ToolCallDelta))


def kinds(events: list[Event]) -> list[type]:
    """The event types in order, with consecutive repeats collapsed."""
    out: list[type] = []
    for event in events:
        if not out or out[-1] is not type(event):
            out.append(type(event))
    return out


def test_disabled_passes_everything_through_as_text() -> None:
    text = "a " + call_text("f", {"x": 1})
    splitter = ToolCallSplitter(False)
    assert splitter.feed(text) == [TextDelta(text)]
    assert splitter.feed("") == []
    assert splitter.finish() == []
    assert splitter.calls == 0


def test_enabled_plain_text_char_by_char() -> None:
    text = "Hello <world> & <tool> a < b\n"
    events = split(list(text))
    assert all(isinstance(e, TextDelta) for e in events)
    assert text_of(events) == text


def test_text_before_a_call_in_one_feed() -> None:
    splitter = ToolCallSplitter(True)
    events = splitter.feed("Let me check.\n" + call_text("weather", ARGUMENTS))
    assert events[0] == TextDelta("Let me check.")  # the template writes the "\n"
    start = events[1]
    assert isinstance(start, ToolCallStart)
    assert start.name == "weather" and start.id.startswith("toolu_")
    assert events[2:] == [ToolCallDelta(json.dumps(ARGUMENTS)), ToolCallEnd(ARGUMENTS)]
    assert splitter.finish() == []
    assert splitter.calls == 1


def test_one_char_at_a_time_streams_the_exact_arguments() -> None:
    text = "Sure: " + call_text("weather", ARGUMENTS)
    events = split(list(text))
    assert kinds(events) == [TextDelta, ToolCallStart, ToolCallDelta, ToolCallEnd]
    assert text_of(events) == "Sure:"  # the space before the call is dropped
    assert arguments_of(events) == json.dumps(ARGUMENTS)
    assert events[-1] == ToolCallEnd(ARGUMENTS)
    # Arguments really stream: more than one piece, none of them empty.
    pieces = [e.partial_json for e in events if isinstance(e, ToolCallDelta)]
    assert len(pieces) > 1 and all(pieces)


SPLIT_TEXT = "ok " + call_text("f", {"a": {"b": 1}})


@pytest.mark.parametrize("at", range(len(SPLIT_TEXT) + 1))
def test_any_split_point_gives_the_same_events(at: int) -> None:
    events = split([SPLIT_TEXT[:at], SPLIT_TEXT[at:]])
    assert text_of(events) == "ok"
    starts = [e for e in events if isinstance(e, ToolCallStart)]
    assert [s.name for s in starts] == ["f"]
    assert arguments_of(events) == '{"a": {"b": 1}}'
    assert events[-1] == ToolCallEnd({"a": {"b": 1}})


def test_close_tag_inside_an_argument_string_is_not_the_end() -> None:
    arguments = {"code": "}\n</tool_call>", "n": 2}  # json escapes the newline
    events = split(list(call_text("run", arguments)))
    assert arguments_of(events) == json.dumps(arguments)
    assert events[-1] == ToolCallEnd(arguments)


def test_parallel_calls_and_the_line_breaks_between_them() -> None:
    text = call_text("a", {"x": 1}) + "\n" + call_text("b", {"y": [2]}) + "\n"
    for pieces in ([text], list(text)):
        splitter = ToolCallSplitter(True)
        events = [e for p in pieces for e in splitter.feed(p)] + splitter.finish()
        assert not any(isinstance(e, TextDelta) for e in events)
        starts = [e for e in events if isinstance(e, ToolCallStart)]
        assert [s.name for s in starts] == ["a", "b"]
        assert starts[0].id != starts[1].id
        ends = [e for e in events if isinstance(e, ToolCallEnd)]
        assert ends == [ToolCallEnd({"x": 1}), ToolCallEnd({"y": [2]})]
        assert arguments_of(events) == '{"x": 1}{"y": [2]}'
        assert splitter.calls == 2


def test_opening_tag_split_across_feeds() -> None:
    splitter = ToolCallSplitter(True)
    assert splitter.feed("abc<tool") == [TextDelta("abc")]
    assert splitter.feed("_ca") == []
    assert splitter.feed('ll>\n{"name": "f", ') == []
    events = splitter.feed('"arguments": {}}\n</tool_call>')
    assert isinstance(events[0], ToolCallStart) and events[0].name == "f"
    assert events[1:] == [ToolCallDelta("{}"), ToolCallEnd({})]


def test_lookalike_of_the_opening_is_held_then_released() -> None:
    splitter = ToolCallSplitter(True)
    assert splitter.feed("a <tool_ca") == [TextDelta("a")]  # the space waits too
    assert splitter.feed("r> b") == [TextDelta(" <tool_car> b")]
    assert splitter.calls == 0


def test_held_back_opening_is_released_by_finish() -> None:
    splitter = ToolCallSplitter(True)
    assert splitter.feed("x <tool_call") == [TextDelta("x")]
    assert splitter.finish() == [TextDelta(" <tool_call")]


def test_call_cut_off_mid_arguments() -> None:
    head = '<tool_call>\n{"name": "f", "arguments": '
    events = split(list(head + '{"city": "Par'))
    assert kinds(events) == [ToolCallStart, ToolCallDelta, ToolCallEnd]
    assert arguments_of(events) == '{"city": "Par'
    assert events[-1] == ToolCallEnd(None)  # cut short: no input


def test_call_cut_off_after_complete_arguments() -> None:
    head = '<tool_call>\n{"name": "f", "arguments": '
    splitter = ToolCallSplitter(True)
    events = splitter.feed(head + '{"city": "Paris"}')
    # The arguments end where their JSON object closes, before any tail.
    assert events[-2:] == [
        ToolCallDelta('{"city": "Paris"}'),
        ToolCallEnd({"city": "Paris"}),
    ]
    assert splitter.finish() == []


def test_call_cut_off_inside_the_closing_tail() -> None:
    head = '<tool_call>\n{"name": "f", "arguments": '
    events = split([head + '{"a": 1}}\n</tool_'])
    assert arguments_of(events) == '{"a": 1}'
    assert events[-1] == ToolCallEnd({"a": 1})


def test_unmatched_call_head_is_not_lost() -> None:
    text = 'see <tool_call>{"name":"f","arguments":{}}</tool_call>'
    assert text_of(split([text])) == text


def test_names_with_dashes_dots_and_underscores() -> None:
    name = "mcp__server.read-file_2"
    events = split(list(call_text(name, {"q": 1})))
    starts = [e for e in events if isinstance(e, ToolCallStart)]
    assert [s.name for s in starts] == [name]
    assert events[-1] == ToolCallEnd({"q": 1})


def test_non_object_arguments_end_with_no_input() -> None:
    events = split([call_text("f", {"a": 1}).replace('{"a": 1}', "[1, 2]")])
    assert arguments_of(events) == "[1, 2]"
    assert events[-1] == ToolCallEnd(None)


@pytest.mark.parametrize(
    ("text", "marker", "size"),
    [
        ("", "<tool_call>", 0),
        ("abc", "<tool_call>", 0),
        ("abc<", "<tool_call>", 1),
        ("abc<tool_call", "<tool_call>", 10),
        ("<tool_call>", "<tool_call>", 0),  # the whole marker is not partial
        ("a}", "}\n</tool_call>", 1),
        ("}}\n</", "}\n</tool_call>", 4),
        ("<<", "<tool_call>", 1),
    ],
)
def test_partial_suffix(text: str, marker: str, size: int) -> None:
    assert partial_suffix(text, marker) == size


# --- a call repeated in one turn is a loop ----------------------------------


def test_a_call_identical_to_an_earlier_one_is_dropped_and_ends_the_turn() -> None:
    splitter = ToolCallSplitter(True)
    once = call_text("weather", {"city": "Paris"})
    events = [e for char in once + "\n" + once for e in splitter.feed(char)]
    assert [type(e) for e in events] == [
        ToolCallStart,
        *[ToolCallDelta] * (len(events) - 2),
        ToolCallEnd,
    ]
    assert splitter.repeated
    assert [e.input for e in events if isinstance(e, ToolCallEnd)] == [
        {"city": "Paris"}
    ]


def test_parallel_calls_to_one_tool_with_other_arguments_all_go_out() -> None:
    splitter = ToolCallSplitter(True)
    text = "\n".join(call_text("read", {"path": p}) for p in ("a.txt", "ab.txt"))
    events = [e for char in text for e in splitter.feed(char)] + splitter.finish()
    ends = [e.input for e in events if isinstance(e, ToolCallEnd)]
    assert ends == [{"path": "a.txt"}, {"path": "ab.txt"}]
    assert not splitter.repeated
    first_end = next(i for i, e in enumerate(events) if isinstance(e, ToolCallEnd))
    second = events[first_end + 1 :]
    assert isinstance(second[0], ToolCallStart)  # held while it looked the same
    assert json.loads(arguments_of(second)) == {"path": "ab.txt"}


def test_a_repeat_fed_in_one_piece_is_dropped_too() -> None:
    splitter = ToolCallSplitter(True)
    once = call_text("weather", {"city": "Paris"})
    events = splitter.feed(once) + splitter.feed("\n" + once) + splitter.finish()
    assert len([e for e in events if isinstance(e, ToolCallStart)]) == 1
    assert splitter.repeated


def test_a_repeat_cut_off_by_max_tokens_is_dropped() -> None:
    splitter = ToolCallSplitter(True)
    once = call_text("weather", {"city": "Paris"})
    events = splitter.feed(once + "\n" + once[:-12]) + splitter.finish()
    assert len([e for e in events if isinstance(e, ToolCallStart)]) == 1
    assert [e.input for e in events if isinstance(e, ToolCallEnd)] == [
        {"city": "Paris"}
    ]
    assert splitter.repeated

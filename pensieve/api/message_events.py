"""Engine events as Anthropic Messages stream events, and the Message they build.

One mapping serves both answers: streaming sends these events as SSE frames,
non-streaming folds the same events into one Message object.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from ..engine import (
    Event,
    Finished,
    KeepAlive,
    TextDelta,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    Usage,
)

StreamEvent = tuple[str, dict[str, Any]]


def usage_object(usage: Usage) -> dict[str, int]:
    return {
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cache_creation_input_tokens": usage.cache_creation_input_tokens,
        "cache_read_input_tokens": usage.cache_read_input_tokens,
    }


def _start(index: int, block: dict[str, Any]) -> StreamEvent:
    return "content_block_start", {
        "type": "content_block_start",
        "index": index,
        "content_block": block,
    }


def _delta(index: int, delta: dict[str, Any]) -> StreamEvent:
    return "content_block_delta", {
        "type": "content_block_delta",
        "index": index,
        "delta": delta,
    }


def _stop(index: int) -> StreamEvent:
    return "content_block_stop", {"type": "content_block_stop", "index": index}


def stream_events(
    start: dict[str, Any], events: Iterable[Event]
) -> Iterator[StreamEvent]:
    """The Messages event sequence, with consistent block indices."""
    yield "message_start", {"type": "message_start", "message": start}
    yield "ping", {"type": "ping"}
    index, open_block = -1, None
    for event in events:
        if isinstance(event, KeepAlive):
            yield "ping", {"type": "ping"}
        elif isinstance(event, TextDelta):
            if open_block != "text":
                if open_block is not None:
                    yield _stop(index)
                index, open_block = index + 1, "text"
                yield _start(index, {"type": "text", "text": ""})
            yield _delta(index, {"type": "text_delta", "text": event.text})
        elif isinstance(event, ToolCallStart):
            if open_block is not None:
                yield _stop(index)
            index, open_block = index + 1, "tool_use"
            block = {
                "type": "tool_use",
                "id": event.id,
                "name": event.name,
                "input": {},
            }
            yield _start(index, block)
        elif isinstance(event, ToolCallDelta):
            yield _delta(
                index, {"type": "input_json_delta", "partial_json": event.partial_json}
            )
        elif isinstance(event, ToolCallEnd):
            yield _stop(index)
            open_block = None
        elif isinstance(event, Finished):
            if open_block is not None:
                yield _stop(index)
            elif index < 0:  # nothing generated: one empty text block
                yield _start(0, {"type": "text", "text": ""})
                yield _stop(0)
            yield (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {
                        "stop_reason": event.stop_reason,
                        "stop_sequence": event.stop_sequence,
                    },
                    "usage": usage_object(event.usage),
                },
            )
            yield "message_stop", {"type": "message_stop"}


def complete_message(start: dict[str, Any], events: Iterable[Event]) -> dict[str, Any]:
    """The non-streaming Message, folded from the same stream events."""
    message = {**start, "content": []}
    arguments: dict[int, str] = {}
    for name, data in stream_events(start, events):
        if name == "content_block_start":
            message["content"].append(dict(data["content_block"]))
        elif name == "content_block_delta":
            delta, index = data["delta"], data["index"]
            if delta["type"] == "text_delta":
                message["content"][index]["text"] += delta["text"]
            else:
                arguments[index] = arguments.get(index, "") + delta["partial_json"]
        elif name == "content_block_stop" and data["index"] in arguments:
            message["content"][data["index"]]["input"] = json.loads(
                arguments[data["index"]] or "{}"
            )
        elif name == "message_delta":
            message.update(data["delta"])
            message["usage"] = data["usage"]
    return message

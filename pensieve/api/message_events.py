"""Engine events as Anthropic Messages stream events, and the Message they build.

One mapping serves both answers: streaming sends these events as SSE frames,
non-streaming folds the same events into one Message object.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Iterator
from typing import Any

from ..engine import (
    Event,
    Finished,
    KeepAlive,
    TextDelta,
    ThinkingDelta,
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


def thinking_signature(thinking: str) -> str:
    """The signature of a thinking block: a digest of its text.

    Clients (Claude Code) keep it and send the block back; the local model
    has no use for it beyond telling the block is Pensieve's own.
    """
    return base64.b64encode(hashlib.sha256(thinking.encode()).digest()).decode()


class BlockSequence:
    """Content blocks as stream events: opens, deltas and closes, indexed."""

    def __init__(self) -> None:
        self.index = -1
        self.open: str | None = None
        self.thought = ""

    def close(self) -> Iterator[StreamEvent]:
        if self.open == "thinking":
            signature = thinking_signature(self.thought)
            yield _delta(
                self.index, {"type": "signature_delta", "signature": signature}
            )
        if self.open is not None:
            yield _stop(self.index)
        self.open, self.thought = None, ""

    def begin(self, kind: str, block: dict[str, Any]) -> Iterator[StreamEvent]:
        yield from self.close()
        self.index, self.open = self.index + 1, kind
        yield _start(self.index, block)

    def text(self, text: str) -> Iterator[StreamEvent]:
        if self.open != "text":
            yield from self.begin("text", {"type": "text", "text": ""})
        yield _delta(self.index, {"type": "text_delta", "text": text})

    def thinking(self, text: str) -> Iterator[StreamEvent]:
        if self.open != "thinking":
            block = {"type": "thinking", "thinking": "", "signature": ""}
            yield from self.begin("thinking", block)
        self.thought += text
        yield _delta(self.index, {"type": "thinking_delta", "thinking": text})

    def event(self, event: Event) -> Iterator[StreamEvent]:
        """The stream events of one engine event (Finished excepted)."""
        if isinstance(event, KeepAlive):
            yield "ping", {"type": "ping"}
        elif isinstance(event, TextDelta):
            yield from self.text(event.text)
        elif isinstance(event, ThinkingDelta):
            yield from self.thinking(event.text)
        elif isinstance(event, ToolCallStart):
            block = {
                "type": "tool_use",
                "id": event.id,
                "name": event.name,
                "input": {},
            }
            yield from self.begin("tool_use", block)
        elif isinstance(event, ToolCallDelta):
            delta = {"type": "input_json_delta", "partial_json": event.partial_json}
            yield _delta(self.index, delta)
        elif isinstance(event, ToolCallEnd):
            yield from self.close()


def stream_events(
    start: dict[str, Any], events: Iterable[Event]
) -> Iterator[StreamEvent]:
    """The Messages event sequence, with consistent block indices."""
    yield "message_start", {"type": "message_start", "message": start}
    yield "ping", {"type": "ping"}
    blocks = BlockSequence()
    for event in events:
        if not isinstance(event, Finished):
            yield from blocks.event(event)
            continue
        if blocks.index < 0:  # nothing generated: one empty text block
            yield from blocks.begin("text", {"type": "text", "text": ""})
        yield from blocks.close()
        delta = {"stop_reason": event.stop_reason, "stop_sequence": event.stop_sequence}
        usage = usage_object(event.usage)
        yield "message_delta", {"type": "message_delta", "delta": delta, "usage": usage}
        yield "message_stop", {"type": "message_stop"}


def complete_message(start: dict[str, Any], events: Iterable[Event]) -> dict[str, Any]:
    """The non-streaming Message, folded from the same stream events.

    A tool call cut short (max_tokens) has no valid input: it is left out.
    """
    message = {**start, "content": []}
    content: list[dict[str, Any]] = message["content"]
    arguments: dict[int, str] = {}
    for name, data in stream_events(start, events):
        if name == "content_block_start":
            content.append(dict(data["content_block"]))
        elif name == "content_block_delta":
            fold_delta(content[data["index"]], data["delta"], arguments, data["index"])
        elif name == "content_block_stop" and data["index"] in arguments:
            block = content[data["index"]]
            try:
                block["input"] = json.loads(arguments[data["index"]] or "{}")
            except json.JSONDecodeError:
                block["type"] = None  # cut short
        elif name == "message_delta":
            message.update(data["delta"])
            message["usage"] = data["usage"]
    message["content"] = [b for b in content if b["type"] is not None]
    return message


def fold_delta(
    block: dict[str, Any], delta: dict[str, Any], arguments: dict[int, str], index: int
) -> None:
    """Add one delta to its block (tool arguments gather in `arguments`)."""
    kind = delta["type"]
    if kind == "text_delta":
        block["text"] += delta["text"]
    elif kind == "thinking_delta":
        block["thinking"] += delta["thinking"]
    elif kind == "signature_delta":
        block["signature"] = delta["signature"]
    else:
        arguments[index] = arguments.get(index, "") + delta["partial_json"]

"""Engine events as OpenAI chat-completion deltas, chunks and answers.

Every event becomes what it adds to the answer (`chat_deltas`); streams send
one chunk per delta (`stream_chunks`), and the non-streaming answers fold
the same deltas into one object (`collect`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ..engine import (
    Event,
    Finished,
    KeepAlive,
    TextDelta,
    ThinkingDelta,
    ToolCallDelta,
    ToolCallStart,
    Usage,
)
from ..sse import Comment, DataEvent, Done, Frame

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
}
KEEP_ALIVE = Comment("keep-alive")
# A choice of one chunk or answer, from a delta and the finish reason (or None).
ChoiceShape = Callable[[dict[str, Any], str | None], dict[str, Any]]


def chat_deltas(events: Iterable[Event]) -> Iterator[dict[str, Any] | Event]:
    """Each engine event as what it adds to the answer: a chat chunk's `delta`.

    Text is `content`, reasoning `reasoning_content` (as vLLM and llama.cpp
    send it); tool calls are `tool_calls` entries, numbered in order.
    Keep-alives and the Finished event pass through as they are.
    """
    calls = -1
    for event in events:
        if isinstance(event, TextDelta):
            yield {"content": event.text}
        elif isinstance(event, ThinkingDelta):
            yield {"reasoning_content": event.text}
        elif isinstance(event, ToolCallStart):
            calls += 1
            function = {"name": event.name, "arguments": ""}
            yield {
                "tool_calls": [
                    {
                        "index": calls,
                        "id": event.id,
                        "type": "function",
                        "function": function,
                    }
                ]
            }
        elif isinstance(event, ToolCallDelta):
            arguments = {"arguments": event.partial_json}
            yield {"tool_calls": [{"index": calls, "function": arguments}]}
        elif isinstance(event, KeepAlive | Finished):
            yield event


def merge_delta(whole: dict[str, Any], delta: dict[str, Any]) -> None:
    """Fold one delta into the answer so far (the non-streaming answers)."""
    for key in ("content", "reasoning_content"):
        if key in delta:
            whole[key] = (whole.get(key) or "") + delta[key]
    for call in delta.get("tool_calls", ()):
        calls = whole.setdefault("tool_calls", [])
        if "id" in call:
            calls.append(
                {
                    "id": call["id"],
                    "type": "function",
                    "function": dict(call["function"]),
                }
            )
        else:
            calls[call["index"]]["function"]["arguments"] += call["function"][
                "arguments"
            ]


def collect(events: Iterable[Event]) -> tuple[dict[str, Any], Finished]:
    """Every delta of a generation folded into one, and its Finished event."""
    whole: dict[str, Any] = {"content": ""}
    for item in chat_deltas(events):
        if isinstance(item, Finished):
            return whole, item
        if isinstance(item, dict):
            merge_delta(whole, item)
    raise RuntimeError("generation ended without a finish event")


def chat_choice(delta: dict[str, Any], reason: str | None) -> dict[str, Any]:
    return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}


def text_choice(delta: dict[str, Any], reason: str | None) -> dict[str, Any]:
    text = delta.get("content") or ""
    return {"text": text, "index": 0, "logprobs": None, "finish_reason": reason}


def stream_chunks(
    head: dict[str, Any],
    events: Iterable[Event],
    choice: ChoiceShape,
    opening: dict[str, Any] | None,
    *,
    include_usage: bool,
) -> Iterator[Frame]:
    """The chunks of one streamed answer, ending with `data: [DONE]`.

    `opening` (if any) goes first, then one chunk per delta, one with the
    finish reason, and with `include_usage` one with no choices and the usage
    (every other chunk then has `"usage": null`). Keep-alives are comments.
    """

    def chunk(choices: list[dict[str, Any]], usage: Usage | None = None) -> Frame:
        body = {**head, "choices": choices}
        if include_usage:
            body["usage"] = usage_object(usage) if usage is not None else None
        return DataEvent(body)

    if opening is not None:
        yield chunk([choice(opening, None)])
    for item in chat_deltas(events):
        if isinstance(item, KeepAlive):
            yield KEEP_ALIVE
        elif isinstance(item, Finished):
            yield chunk([choice({}, finish_reason(item))])
            if include_usage:
                yield chunk([], item.usage)
            yield Done()
        elif isinstance(item, dict):
            yield chunk([choice(item, None)])


def finish_reason(finished: Finished) -> str:
    return FINISH_REASONS.get(finished.stop_reason, "stop")


def usage_object(usage: Usage) -> dict[str, Any]:
    """OpenAI's usage. Its prompt tokens include the cached ones; the engine's
    `input_tokens` do not."""
    prompt_tokens = usage.prompt_tokens
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": prompt_tokens + usage.output_tokens,
        "prompt_tokens_details": {
            "cached_tokens": usage.cache_read_input_tokens,
            "audio_tokens": 0,
        },
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }

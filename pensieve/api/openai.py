"""`POST /v1/chat/completions` and `POST /v1/completions`: OpenAI's API.

A second face on the same engine as /v1/messages: the same prepare, admit and
generate, with the engine's events mapped to OpenAI objects here. Every event
becomes a chat delta (`chat_delta`); streams send one chunk per delta, and the
non-streaming answers fold the same deltas into one object.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from flask import Blueprint, Response, jsonify

from ..engine import (
    Constraint,
    Event,
    Finished,
    KeepAlive,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    ToolPolicy,
    Usage,
)
from ..errors import openai_error_event
from ..schemas.chat_completions import ChatCompletionRequestSchema
from ..schemas.completions import CompletionRequestSchema
from ..sse import Comment, DataEvent, Done, Frame, sse_response
from . import generate, get_engine
from .messages import json_body

bp = Blueprint("openai", __name__)

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
}
KEEP_ALIVE = Comment("keep-alive")
# A choice of one chunk or answer, from a delta and the finish reason (or None).
ChoiceShape = Callable[[dict[str, Any], str | None], dict[str, Any]]


@bp.post("/v1/chat/completions")
def chat_completions() -> Response:
    params = ChatCompletionRequestSchema().load(json_body())
    engine = get_engine()
    prompt = engine.prepare(params.messages, params.tools)
    engine.admit()
    sampling = params.sampling.for_prompt(prompt)
    events = generate(engine, prompt, sampling, constraint_of(params))
    if params.stream:
        head = answer_head("chatcmpl", "chat.completion.chunk")
        opening = {"role": "assistant", "content": "", "refusal": None}
        chunks = stream_chunks(
            head, events, chat_choice, opening, include_usage=params.include_usage
        )
        return sse_response(chunks, on_error=openai_error_event)
    head = answer_head("chatcmpl", "chat.completion")
    delta, finished = collect(events)
    if delta.get("tool_calls") and not delta["content"]:
        delta["content"] = None
    message = {"role": "assistant", **delta, "refusal": None, "annotations": []}
    choice = {
        "index": 0,
        "message": message,
        "logprobs": None,
        "finish_reason": finish_reason(finished),
    }
    return jsonify({**head, "choices": [choice], "usage": usage_object(finished.usage)})


@bp.post("/v1/completions")
def completions() -> Response:
    params = CompletionRequestSchema().load(json_body())
    engine = get_engine()
    prompt = engine.prepare_text(params.prompt)
    engine.admit()
    sampling = params.sampling.for_prompt(prompt)
    events = generate(engine, prompt, sampling)
    head = answer_head("cmpl", "text_completion")
    echo = {"content": params.prompt} if params.echo else None
    if params.stream:
        chunks = stream_chunks(
            head, events, text_choice, echo, include_usage=params.include_usage
        )
        return sse_response(chunks, on_error=openai_error_event)
    delta, finished = collect(events)
    if echo is not None:
        delta = {"content": echo["content"] + delta["content"]}
    return jsonify(
        {
            **head,
            "choices": [text_choice(delta, finish_reason(finished))],
            "usage": usage_object(finished.usage),
        }
    )


def answer_head(prefix: str, object_type: str) -> dict[str, Any]:
    """The fields every object of one answer repeats."""
    return {
        "id": f"{prefix}-{uuid.uuid4().hex[:24]}",
        "object": object_type,
        "created": int(time.time()),
        "model": get_engine().resolve().model_id,
        "system_fingerprint": None,
    }


def constraint_of(params: Any) -> Constraint:
    """The same tool policy and structured output as the Messages API's."""
    choice = params.tool_choice
    policy = ToolPolicy(
        tools=tuple(params.tools),
        choice=choice["type"],
        name=choice.get("name"),
        parallel=not choice.get("disable_parallel_tool_use", False),
    )
    return Constraint(policy, (params.output_format or {}).get("schema"))


def chat_deltas(events: Iterable[Event]) -> Iterator[dict[str, Any] | Event]:
    """Each engine event as what it adds to the answer: a chat chunk's `delta`.

    Text is `content`; tool calls are `tool_calls` entries, numbered in order.
    Keep-alives and the Finished event pass through as they are.
    """
    calls = -1
    for event in events:
        if isinstance(event, TextDelta):
            yield {"content": event.text}
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
    if "content" in delta:
        whole["content"] = (whole.get("content") or "") + delta["content"]
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
    prompt_tokens = usage.input_tokens + usage.cache_read_input_tokens
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

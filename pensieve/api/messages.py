"""`POST /v1/messages`: the Anthropic Messages API.

The engine's events map to Anthropic objects here; both the streaming and the
non-streaming answer consume the same event iterator.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from typing import Any

from flask import Blueprint, Response, g, jsonify, request

from ..engine import Event, Finished, KeepAlive, TextDelta, Usage
from ..errors import InvalidRequest, error_event
from ..schemas.messages import MessagesRequestSchema
from ..sse import ServerSentEvent, sse_response
from . import get_engine

bp = Blueprint("messages", __name__)


def json_body() -> dict[str, Any]:
    """The request's JSON object, or a clear 400."""
    body = request.get_json(force=True, silent=True)
    if body is None:
        raise InvalidRequest("request body is not valid JSON")
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object")
    return body


def usage_object(usage: Usage) -> dict[str, int]:
    return {
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cache_creation_input_tokens": usage.cache_creation_input_tokens,
        "cache_read_input_tokens": usage.cache_read_input_tokens,
    }


def message_object(
    message_id: str, model: str, content: list[dict[str, Any]], usage: Usage
) -> dict[str, Any]:
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": None,
        "stop_sequence": None,
        "usage": usage_object(usage),
    }


@bp.post("/v1/messages")
def create_message() -> Response:
    params = MessagesRequestSchema().load(json_body())
    engine = get_engine()
    prompt = engine.prepare(params.messages, params.tools)
    engine.admit()
    events = engine.generate(prompt, params.sampling, request_id=g.request_id)
    message_id = f"msg_{uuid.uuid4().hex[:24]}"
    model = engine.resolve().model_id
    cached = prompt.cached_estimate  # exact figures follow in message_delta
    start = message_object(
        message_id,
        model,
        [],
        Usage(prompt.input_tokens - cached, 0, cache_read_input_tokens=cached),
    )
    if params.stream:
        return sse_response(stream_events(start, events), on_error=error_event)
    return jsonify(complete_message(start, events))


@bp.post("/v1/messages/count_tokens")
def count_tokens() -> Response:
    """Tokens the same request would use as input, rendered exactly as generation."""
    body = json_body()
    body.setdefault("max_tokens", 1)  # not part of count_tokens' request
    params = MessagesRequestSchema().load(body)
    prompt = get_engine().prepare(params.messages, params.tools)
    return jsonify({"input_tokens": prompt.input_tokens})


def complete_message(start: dict[str, Any], events: Iterable[Event]) -> dict[str, Any]:
    """The non-streaming Message: all text deltas joined, then the finish."""
    text: list[str] = []
    for event in events:
        if isinstance(event, TextDelta):
            text.append(event.text)
        elif isinstance(event, Finished):
            return {
                **start,
                "content": [{"type": "text", "text": "".join(text)}],
                "stop_reason": event.stop_reason,
                "stop_sequence": event.stop_sequence,
                "usage": usage_object(event.usage),
            }
    raise RuntimeError("generation ended without a finish event")


def stream_events(
    start: dict[str, Any], events: Iterable[Event]
) -> Iterator[ServerSentEvent]:
    """The Messages streaming sequence for one text block."""
    yield ServerSentEvent("message_start", {"type": "message_start", "message": start})
    yield ServerSentEvent(
        "content_block_start",
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "text", "text": ""},
        },
    )
    yield ServerSentEvent("ping", {"type": "ping"})
    for event in events:
        if isinstance(event, KeepAlive):
            yield ServerSentEvent("ping", {"type": "ping"})
        elif isinstance(event, TextDelta):
            yield ServerSentEvent(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": event.text},
                },
            )
        elif isinstance(event, Finished):
            yield ServerSentEvent(
                "content_block_stop", {"type": "content_block_stop", "index": 0}
            )
            yield ServerSentEvent(
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
            yield ServerSentEvent("message_stop", {"type": "message_stop"})

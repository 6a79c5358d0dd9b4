"""`POST /v1/messages`: the Anthropic Messages API.

The engine's events map to Anthropic objects here; both the streaming and the
non-streaming answer consume the same event iterator.
"""

from __future__ import annotations

import uuid
from typing import Any

from flask import Blueprint, Response, jsonify, request

from ..engine import Constraint, Usage
from ..errors import InvalidRequest, error_event
from ..schemas.messages import MessagesRequestSchema
from ..sse import ServerSentEvent, sse_response
from . import generate, get_engine
from .message_events import complete_message, stream_events, usage_object

bp = Blueprint("messages", __name__)


def json_body() -> dict[str, Any]:
    """The request's JSON object, or a clear 400."""
    body = request.get_json(force=True, silent=True)
    if body is None:
        raise InvalidRequest("request body is not valid JSON")
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object")
    return body


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
    constraint = Constraint(params.tool_policy, params.response_schema)
    events = generate(engine, prompt, params.sampling, constraint)
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
        frames = (ServerSentEvent(*event) for event in stream_events(start, events))
        return sse_response(frames, on_error=error_event)
    return jsonify(complete_message(start, events))


@bp.post("/v1/messages/count_tokens")
def count_tokens() -> Response:
    """Tokens the same request would use as input, rendered exactly as generation."""
    body = json_body()
    body.setdefault("max_tokens", 1)  # not part of count_tokens' request
    params = MessagesRequestSchema().load(body)
    prompt = get_engine().prepare(params.messages, params.tools)
    return jsonify({"input_tokens": prompt.input_tokens})

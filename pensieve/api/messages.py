"""`POST /v1/messages` and `/v1/messages/count_tokens`: the Anthropic Messages API.

The views parse, start the generation, and map its events to Anthropic
objects (`message_events`); the streaming and the non-streaming answer
consume the same events.
"""

from __future__ import annotations

import uuid
from typing import Any

from flask import Blueprint, Response, jsonify

from ..engine import Generation, Usage
from ..errors import error_event
from ..extension import get_engine
from ..schemas.common import load_body
from ..schemas.messages import CountTokensRequestSchema, MessagesRequestSchema
from ..sse import ServerSentEvent, sse_response
from . import start_generation
from .message_events import complete_message, stream_events, usage_object

bp = Blueprint("messages", __name__)


@bp.post("/v1/messages")
def create_message() -> Response:
    params = load_body(MessagesRequestSchema())
    generation = start_generation(params.generation)
    start = message_start(generation)
    if params.stream:
        events = stream_events(start, generation.events)
        frames = (ServerSentEvent(*event) for event in events)
        return sse_response(frames, on_error=error_event)
    return jsonify(complete_message(start, generation.events))


@bp.post("/v1/messages/count_tokens")
def count_tokens() -> Response:
    """Tokens the same request would use as input, rendered exactly as generation."""
    params = load_body(CountTokensRequestSchema())
    return jsonify({"input_tokens": get_engine().count_tokens(params.generation)})


def message_start(generation: Generation) -> dict[str, Any]:
    """The Message as `message_start` shows it: no content yet, estimated usage.

    The prompt cache's share is an estimate; message_delta has the exact figures.
    """
    prompt = generation.prompt
    cached = prompt.cached_estimate
    usage = Usage.of_prompt(
        prompt.input_tokens, 0, read=cached, caching=generation.caching
    )
    return {
        "id": f"msg_{uuid.uuid4().hex[:24]}",
        "type": "message",
        "role": "assistant",
        "model": generation.model_id,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": usage_object(usage),
    }

"""`POST /v1/chat/completions` and `POST /v1/completions`: OpenAI's API.

A second face on the same engine as /v1/messages: the views parse, start the
generation, and map its events to OpenAI objects (`chat_events`).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from flask import Blueprint, Response, jsonify

from ..engine import Generation
from ..errors import openai_error_event
from ..schemas.chat_completions import ChatCompletionRequestSchema
from ..schemas.common import load_body
from ..schemas.completions import CompletionRequestSchema
from ..sse import sse_response
from . import start_generation
from .chat_events import (
    chat_choice,
    collect,
    finish_reason,
    stream_chunks,
    text_choice,
    usage_object,
)

bp = Blueprint("openai", __name__)


@bp.post("/v1/chat/completions")
def chat_completions() -> Response:
    params = load_body(ChatCompletionRequestSchema())
    generation = start_generation(params.generation)
    if params.stream:
        head = answer_head(generation, "chatcmpl", "chat.completion.chunk")
        opening = {"role": "assistant", "content": "", "refusal": None}
        chunks = stream_chunks(
            head,
            generation.events,
            chat_choice,
            opening,
            include_usage=params.include_usage,
        )
        return sse_response(chunks, on_error=openai_error_event)
    head = answer_head(generation, "chatcmpl", "chat.completion")
    delta, finished = collect(generation.events)
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
    params = load_body(CompletionRequestSchema())
    generation = start_generation(params.generation)
    head = answer_head(generation, "cmpl", "text_completion")
    prompt = params.generation.text or ""
    echo = {"content": prompt} if params.echo else None
    if params.stream:
        chunks = stream_chunks(
            head,
            generation.events,
            text_choice,
            echo,
            include_usage=params.include_usage,
        )
        return sse_response(chunks, on_error=openai_error_event)
    delta, finished = collect(generation.events)
    if echo is not None:
        delta = {"content": prompt + delta["content"]}
    return jsonify(
        {
            **head,
            "choices": [text_choice(delta, finish_reason(finished))],
            "usage": usage_object(finished.usage),
        }
    )


def answer_head(generation: Generation, prefix: str, kind: str) -> dict[str, Any]:
    """The fields every object of one answer repeats."""
    return {
        "id": f"{prefix}-{uuid.uuid4().hex[:24]}",
        "object": kind,
        "created": int(time.time()),
        "model": generation.model_id,
        "system_fingerprint": None,
    }

"""`POST /v1/chat/completions` and `POST /v1/completions`: OpenAI's API.

A second face on the same engine as /v1/messages: the same prepare, admit and
generate, with the engine's events mapped to OpenAI objects here. Every event
becomes a chat delta (`chat_delta`); streams send one chunk per delta, and the
non-streaming answers fold the same deltas into one object.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from flask import Blueprint, Response, jsonify

from ..engine import (
    Constraint,
    ToolPolicy,
)
from ..errors import openai_error_event
from ..schemas.chat_completions import ChatCompletionRequestSchema
from ..schemas.completions import CompletionRequestSchema
from ..sse import sse_response
from . import generate, get_engine
from .chat_events import (
    chat_choice,
    collect,
    finish_reason,
    stream_chunks,
    text_choice,
    usage_object,
)
from .messages import json_body

bp = Blueprint("openai", __name__)


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

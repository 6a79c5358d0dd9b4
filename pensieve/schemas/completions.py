"""The OpenAI (legacy) text completion request: one raw prompt, no chat template."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from marshmallow import ValidationError, fields, post_load, validate

from ..engine import GenerationRequest
from .common import StrictBoolean, StrictInteger
from .openai import GenerationSchema, sampling_of, stream_flags

# OpenAI's default for /v1/completions (chat completions default to "what fits").
DEFAULT_MAX_TOKENS = 16
NOT_SUPPORTED = "is not supported"


class PromptField(fields.Field):
    """`prompt`: a string, or a list of exactly one string."""

    def _deserialize(
        self, value: Any, attr: str | None, data: Any, **kwargs: Any
    ) -> str:
        if isinstance(value, list) and len(value) == 1:
            value = value[0]
        elif isinstance(value, list):
            raise ValidationError("only one prompt per request is supported")
        if not isinstance(value, str):
            raise ValidationError(
                "must be a string or a list of one string (token ids are not supported)"
            )
        if not value:
            raise ValidationError("must not be empty")
        return value


@dataclass(frozen=True)
class CompletionRequest:
    """A validated `POST /v1/completions` body: the engine's request (a raw
    prompt), and how to answer."""

    generation: GenerationRequest
    echo: bool  # the answer's text starts with the prompt
    stream: bool
    include_usage: bool


class CompletionRequestSchema(GenerationSchema):
    prompt = PromptField(required=True)
    max_tokens = StrictInteger(allow_none=True, validate=validate.Range(min=1))
    echo = StrictBoolean(allow_none=True)
    best_of = StrictInteger(
        allow_none=True, validate=validate.Equal(1, error="only 1 is supported")
    )
    logprobs = StrictInteger(
        allow_none=True, validate=validate.Equal(0, error=NOT_SUPPORTED)
    )
    suffix = fields.String(
        allow_none=True, validate=validate.Equal("", error=NOT_SUPPORTED)
    )

    @post_load
    def to_request(self, data: dict[str, Any], **kwargs: Any) -> CompletionRequest:
        stream, include_usage = stream_flags(data)
        max_tokens = data.get("max_tokens")
        generation = GenerationRequest(
            text=data["prompt"],
            sampling=sampling_of(
                data, DEFAULT_MAX_TOKENS if max_tokens is None else max_tokens
            ),
        )
        return CompletionRequest(
            generation, bool(data.get("echo")), stream, include_usage
        )

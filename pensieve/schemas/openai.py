"""What OpenAI's chat and text completion requests share: sampling and streaming.

Fields OpenAI documents as nullable accept `null` as "not given". Unknown
top-level fields are accepted and ignored, as on the Anthropic side.
"""

from __future__ import annotations

from typing import Any

from marshmallow import (
    EXCLUDE,
    Schema,
    ValidationError,
    fields,
    validate,
    validates_schema,
)

from ..engine import SamplingParams
from .common import MODEL_ID, StrictBoolean, StrictFloat, StrictInteger

DEFAULT_TEMPERATURE = 1.0
ONE_CHOICE = validate.Equal(1, error="only 1 is supported: one choice per request")


class StopField(fields.Field):
    """`stop`: one string or a list of strings."""

    def _deserialize(
        self, value: Any, attr: str | None, data: Any, **kwargs: Any
    ) -> tuple[str, ...]:
        stops = [value] if isinstance(value, str) else value
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise ValidationError("must be a string or a list of strings")
        if not all(stops):
            raise ValidationError("must not contain an empty string")
        return tuple(stops)


class StreamOptionsSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    include_usage = StrictBoolean(allow_none=True)
    include_obfuscation = StrictBoolean(allow_none=True)


class GenerationSchema(Schema):
    """The fields both OpenAI completion requests have.

    `seed` is validated (a client's seed is no error); the penalties and
    `logit_bias` are validated and not applied: the engine's sampler has no
    such settings.
    """

    class Meta:
        unknown = EXCLUDE

    model = fields.String(required=True, validate=MODEL_ID)
    temperature = StrictFloat(allow_none=True, validate=validate.Range(0.0, 2.0))
    top_p = StrictFloat(allow_none=True, validate=validate.Range(0.0, 1.0))
    stop = StopField(allow_none=True)
    stream = StrictBoolean(allow_none=True)
    stream_options = fields.Nested(StreamOptionsSchema, allow_none=True)
    n = StrictInteger(allow_none=True, validate=ONE_CHOICE)
    seed = StrictInteger(allow_none=True, validate=validate.Range(0, 2**64 - 1))
    presence_penalty = StrictFloat(allow_none=True, validate=validate.Range(-2, 2))
    frequency_penalty = StrictFloat(allow_none=True, validate=validate.Range(-2, 2))
    logit_bias = fields.Dict(
        keys=fields.String(),
        values=StrictFloat(validate=validate.Range(-100, 100)),
        allow_none=True,
    )
    user = fields.String(allow_none=True)

    @validates_schema
    def stream_options_need_a_stream(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data.get("stream_options") is not None and not data.get("stream"):
            raise ValidationError(
                "is only allowed when stream is true", "stream_options"
            )


def sampling_of(data: dict[str, Any], max_tokens: int | None) -> SamplingParams:
    """The sampling fields of a loaded GenerationSchema body.

    `temperature` keeps OpenAI's meaning, which is the engine's (the softmax
    temperature; 0 is greedy), over OpenAI's whole 0–2 range: no rescaling.
    `max_tokens` None: as many as the context window fits.
    """
    temperature = data.get("temperature")
    return SamplingParams(
        max_tokens=max_tokens,
        temperature=DEFAULT_TEMPERATURE if temperature is None else temperature,
        top_p=data.get("top_p"),
        stop_sequences=data.get("stop") or (),
        seed=data.get("seed"),
    )


def stream_flags(data: dict[str, Any]) -> tuple[bool, bool]:
    """(stream, include_usage) of a loaded GenerationSchema body."""
    options = data.get("stream_options") or {}
    return bool(data.get("stream")), bool(options.get("include_usage"))

"""The Anthropic Messages request: validation and conversion for the engine."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from marshmallow import (
    EXCLUDE,
    Schema,
    ValidationError,
    fields,
    post_load,
    validate,
)

from ..engine import ChatMessage, SamplingParams

ROLES = ("user", "assistant", "system")


class TextBlockSchema(Schema):
    class Meta:
        unknown = EXCLUDE  # cache_control, citations: accepted, not used

    type = fields.String(required=True, validate=validate.Equal("text"))
    text = fields.String(required=True)


class TextContent(fields.Field):
    """A string, or a list of text blocks; deserialises to plain text."""

    def _deserialize(
        self, value: Any, attr: str | None, data: Any, **kwargs: Any
    ) -> str:
        if isinstance(value, str):
            return value
        if not isinstance(value, list):
            raise ValidationError("must be a string or a list of content blocks")
        errors: dict[int, Any] = {}
        texts = []
        for index, block in enumerate(value):
            kind = block.get("type") if isinstance(block, dict) else None
            if kind not in (None, "text"):
                errors[index] = {
                    "type": [f"content block type {kind!r} is not supported"]
                }
                continue
            try:
                texts.append(TextBlockSchema().load(block)["text"])
            except ValidationError as error:
                errors[index] = error.messages
        if errors:
            raise ValidationError(errors)
        return "\n".join(texts)


class MessageSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    role = fields.String(required=True, validate=validate.OneOf(ROLES))
    content = TextContent(required=True)

    @post_load
    def to_message(self, data: dict[str, Any], **kwargs: Any) -> ChatMessage:
        return ChatMessage(role=data["role"], content=data["content"])


@dataclass(frozen=True)
class MessagesRequest:
    """A validated `POST /v1/messages` body."""

    model: str
    messages: list[ChatMessage]
    sampling: SamplingParams
    stream: bool


def merge_turns(messages: list[ChatMessage]) -> list[ChatMessage]:
    """Join consecutive turns of the same role, as the Messages API does."""
    merged: list[ChatMessage] = []
    for message in messages:
        if merged and merged[-1].role == message.role:
            last = merged.pop()
            message = ChatMessage(message.role, f"{last.content}\n\n{message.content}")
        merged.append(message)
    return merged


class MessagesRequestSchema(Schema):
    """Known fields are checked strictly; unknown top-level fields are ignored."""

    class Meta:
        unknown = EXCLUDE

    model = fields.String(required=True, validate=validate.Length(min=1))
    messages = fields.List(
        fields.Nested(MessageSchema), required=True, validate=validate.Length(min=1)
    )
    system = TextContent()
    max_tokens = fields.Integer(
        strict=True, required=True, validate=validate.Range(min=1)
    )
    temperature = fields.Float(validate=validate.Range(min=0.0, max=1.0))
    top_p = fields.Float(validate=validate.Range(min=0.0, max=1.0))
    top_k = fields.Integer(strict=True, validate=validate.Range(min=0))
    stop_sequences = fields.List(fields.String())
    stream = fields.Boolean(truthy={True}, falsy={False}, load_default=False)

    @post_load
    def to_request(self, data: dict[str, Any], **kwargs: Any) -> MessagesRequest:
        system = data.get("system")
        prefix = [ChatMessage("system", system)] if system else []
        return MessagesRequest(
            model=data["model"],
            messages=merge_turns(prefix + data["messages"]),
            sampling=SamplingParams(
                max_tokens=data["max_tokens"],
                temperature=data.get("temperature", 1.0),
                top_p=data.get("top_p"),
                top_k=data.get("top_k"),
                stop_sequences=tuple(data.get("stop_sequences", ())),
            ),
            stream=data["stream"],
        )

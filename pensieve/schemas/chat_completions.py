"""The OpenAI chat completion request: validation and conversion for the engine.

The engine gets what the Messages API hands it: ChatMessage turns (`developer`
becomes `system`; assistant `tool_calls` become ToolCalls, `tool` messages
tool turns), function tools as ToolSpecs, and `tool_choice` and
`response_format` in the Messages API's own forms, so both faces share one
path to tool calling and constrained decoding.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from marshmallow import (
    EXCLUDE,
    Schema,
    ValidationError,
    fields,
    post_load,
    validate,
    validates_schema,
)

from ..engine import ChatMessage, GenerationRequest, ToolCall, ToolSpec
from .common import JSONSchemaField, StrictBoolean, StrictInteger, tool_policy
from .openai import GenerationSchema, sampling_of, stream_flags

NAME = validate.Regexp(r"^[a-zA-Z0-9_-]{1,64}$", error="must match {regex}")
# Valid OpenAI content parts the text-only model cannot read.
UNREADABLE_PARTS = {"image_url", "input_audio", "file"}
NO_PARAMETERS = {"type": "object", "properties": {}}


class ContentField(fields.Field):
    """Message content: a string, or a list of content parts joined as text."""

    def __init__(self, *, parts: tuple[str, ...] = ("text",), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.parts = parts

    def _deserialize(
        self, value: Any, attr: str | None, data: Any, **kwargs: Any
    ) -> str:
        if isinstance(value, str):
            return value
        if not isinstance(value, list):
            raise ValidationError("must be a string or a list of content parts")
        texts: list[str] = []
        errors: dict[int, Any] = {}
        for index, part in enumerate(value):
            try:
                texts.append(self.part_text(part))
            except ValidationError as error:
                errors[index] = error.messages
        if errors:
            raise ValidationError(errors)
        return "\n".join(texts)

    def part_text(self, part: Any) -> str:
        if not isinstance(part, dict):
            raise ValidationError("each content part must be an object")
        kind = part.get("type")
        if not isinstance(kind, str):  # also unhashable values: a list, an object
            raise ValidationError({"type": ["must be a string"]})
        if kind in UNREADABLE_PARTS:
            problem = (
                f"{kind} content is not supported: the loaded model reads text only"
            )
            raise ValidationError({"type": [problem]})
        if kind not in self.parts:
            expected = ", ".join(self.parts)
            raise ValidationError(
                {"type": [f"must be one of: {expected}; got {kind!r}"]}
            )
        text = part.get(kind)  # a text part's `text`, a refusal part's `refusal`
        if not isinstance(text, str):
            raise ValidationError({kind: ["must be a string"]})
        return text


class TextMessageSchema(Schema):
    """A system, developer or user message."""

    class Meta:
        unknown = EXCLUDE

    role = fields.String(required=True)
    content = ContentField(required=True)
    name = fields.String()

    @post_load
    def make(self, data: dict[str, Any], **kwargs: Any) -> ChatMessage:
        role = "system" if data["role"] == "developer" else data["role"]
        return ChatMessage(role, data["content"])


class FunctionCallSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    name = fields.String(required=True, validate=validate.Length(min=1))
    arguments = fields.String(required=True)

    @post_load
    def parse_arguments(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        try:
            arguments = json.loads(data["arguments"] or "{}")
        except json.JSONDecodeError:
            arguments = None
        if not isinstance(arguments, dict):
            raise ValidationError("must be a JSON object, as a string", "arguments")
        return {"name": data["name"], "input": arguments}


class ToolCallSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    id = fields.String(required=True)
    type = fields.String(load_default="function", validate=validate.Equal("function"))
    function = fields.Nested(FunctionCallSchema, required=True)

    @post_load
    def make(self, data: dict[str, Any], **kwargs: Any) -> ToolCall:
        return ToolCall(data["id"], data["function"]["name"], data["function"]["input"])


class AssistantMessageSchema(Schema):
    class Meta:
        unknown = EXCLUDE  # audio, function_call: accepted, unused

    role = fields.String(required=True)
    content = ContentField(parts=("text", "refusal"), allow_none=True)
    refusal = fields.String(allow_none=True)
    name = fields.String()
    tool_calls = fields.List(fields.Nested(ToolCallSchema), allow_none=True)

    @validates_schema
    def content_or_calls(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data.get("content") is None and not data.get("tool_calls"):
            raise ValidationError("is required unless tool_calls is given", "content")

    @post_load
    def make(self, data: dict[str, Any], **kwargs: Any) -> ChatMessage:
        calls = tuple(data.get("tool_calls") or ())
        return ChatMessage("assistant", data.get("content") or "", tool_calls=calls)


class ToolMessageSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    role = fields.String(required=True)
    content = ContentField(required=True)
    tool_call_id = fields.String(required=True)

    @post_load
    def make(self, data: dict[str, Any], **kwargs: Any) -> ChatMessage:
        return ChatMessage("tool", data["content"], tool_call_id=data["tool_call_id"])


MESSAGE_SCHEMAS: dict[str, type[Schema]] = {
    "system": TextMessageSchema,
    "developer": TextMessageSchema,
    "user": TextMessageSchema,
    "assistant": AssistantMessageSchema,
    "tool": ToolMessageSchema,
}


class MessageField(fields.Field):
    """One message, validated by the schema of its role."""

    def _deserialize(
        self, value: Any, attr: str | None, data: Any, **kwargs: Any
    ) -> ChatMessage:
        if not isinstance(value, dict):
            raise ValidationError("each message must be an object")
        role = value.get("role")
        schema = MESSAGE_SCHEMAS.get(role) if isinstance(role, str) else None
        if schema is None:
            expected = ", ".join(MESSAGE_SCHEMAS)
            raise ValidationError(
                {"role": [f"must be one of: {expected}; got {role!r}"]}
            )
        return schema().load(value)


class FunctionSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    name = fields.String(required=True, validate=NAME)
    description = fields.String(allow_none=True)
    parameters = JSONSchemaField(object_only=True, allow_none=True)
    strict = StrictBoolean(allow_none=True)


class ToolSchema(Schema):
    """A function tool (OpenAI's other tool types are not supported)."""

    class Meta:
        unknown = EXCLUDE

    type = fields.String(required=True, validate=validate.Equal("function"))
    function = fields.Nested(FunctionSchema, required=True)

    @post_load
    def make(self, data: dict[str, Any], **kwargs: Any) -> ToolSpec:
        function = data["function"]
        return ToolSpec(
            name=function["name"],
            description=function.get("description") or "",
            input_schema=function.get("parameters") or NO_PARAMETERS,
        )


class ToolChoiceField(fields.Field):
    """`tool_choice`, as the Messages API's form (`required` is its `any`)."""

    def _deserialize(
        self, value: Any, attr: str | None, data: Any, **kwargs: Any
    ) -> dict[str, Any]:
        if value in ("none", "auto"):
            return {"type": value}
        if value == "required":
            return {"type": "any"}
        if isinstance(value, dict) and value.get("type") == "function":
            function = value.get("function")
            name = function.get("name") if isinstance(function, dict) else None
            if isinstance(name, str) and name:
                return {"type": "tool", "name": name}
        raise ValidationError(
            'must be "none", "auto", "required" or '
            '{"type": "function", "function": {"name": ...}}'
        )


class JsonSchemaFormatSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    name = fields.String(required=True, validate=NAME)
    description = fields.String()
    schema = JSONSchemaField()
    strict = StrictBoolean(allow_none=True)


class ResponseFormatSchema(Schema):
    """`response_format`, as the Messages API's output format (None: free text)."""

    class Meta:
        unknown = EXCLUDE

    type = fields.String(
        required=True, validate=validate.OneOf(["text", "json_object", "json_schema"])
    )
    json_schema = fields.Nested(JsonSchemaFormatSchema)

    @validates_schema
    def json_schema_needs_one(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data["type"] == "json_schema" and "json_schema" not in data:
            raise ValidationError(
                'is required when type is "json_schema"', "json_schema"
            )

    @post_load
    def to_output_format(
        self, data: dict[str, Any], **kwargs: Any
    ) -> dict[str, Any] | None:
        if data["type"] == "json_object":
            return {"type": "json_schema", "schema": {"type": "object"}}
        if data["type"] == "json_schema":
            return {
                "type": "json_schema",
                "schema": data["json_schema"].get("schema", {}),
            }
        return None


@dataclass(frozen=True)
class ChatCompletionRequest:
    """A validated `POST /v1/chat/completions` body: the engine's request, and
    how to answer."""

    generation: GenerationRequest
    stream: bool
    include_usage: bool


class ChatCompletionRequestSchema(GenerationSchema):
    messages = fields.List(
        MessageField(), required=True, validate=validate.Length(min=1)
    )
    max_tokens = StrictInteger(allow_none=True, validate=validate.Range(min=1))
    max_completion_tokens = StrictInteger(
        allow_none=True, validate=validate.Range(min=1)
    )
    tools = fields.List(fields.Nested(ToolSchema), allow_none=True)
    tool_choice = ToolChoiceField(allow_none=True)
    parallel_tool_calls = StrictBoolean(allow_none=True)
    response_format = fields.Nested(ResponseFormatSchema, allow_none=True)
    logprobs = StrictBoolean(
        allow_none=True, validate=validate.Equal(False, error="is not supported")
    )
    top_logprobs = StrictInteger(
        allow_none=True, validate=validate.Equal(0, error="is not supported")
    )

    @validates_schema
    def tool_choice_names_a_tool(self, data: dict[str, Any], **kwargs: Any) -> None:
        choice = data.get("tool_choice") or {}
        names = {tool.name for tool in data.get("tools") or ()}
        if choice.get("type") == "any" and not names:
            raise ValidationError('"required" needs tools', "tool_choice")
        if choice.get("type") == "tool" and choice["name"] not in names:
            raise ValidationError(
                f"tool {choice['name']!r} is not among the request's tools",
                "tool_choice",
            )

    @post_load
    def to_request(self, data: dict[str, Any], **kwargs: Any) -> ChatCompletionRequest:
        tool_choice = data.get("tool_choice") or {"type": "auto"}
        if data.get("parallel_tool_calls") is False:
            tool_choice = {**tool_choice, "disable_parallel_tool_use": True}
        stream, include_usage = stream_flags(data)
        max_tokens = data.get("max_completion_tokens") or data.get("max_tokens")
        output_format = data.get("response_format") or {}
        generation = GenerationRequest(
            messages=tuple(data["messages"]),
            tool_policy=tool_policy(data.get("tools") or (), tool_choice),
            sampling=sampling_of(data, max_tokens),
            response_schema=output_format.get("schema"),
        )
        return ChatCompletionRequest(generation, stream, include_usage)

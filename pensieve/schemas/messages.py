"""The Anthropic Messages request: validation and conversion for the engine.

Every documented field is validated strictly; unknown top-level fields are
accepted and ignored, since clients such as Claude Code add fields often.
"""

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
    validates_schema,
)

from ..engine import (
    ChatMessage,
    GenerationRequest,
    SamplingParams,
    Thinking,
    ToolCall,
    ToolSpec,
)
from .common import (
    MODEL_ID,
    JSONSchemaField,
    StrictBoolean,
    StrictFloat,
    StrictInteger,
    tool_policy,
)
from .content import (
    Block,
    ContentField,
    TextBlock,
    ThinkingBlock,
    ToolResultBlock,
    ToolUseBlock,
)

ROLES = ("user", "assistant", "system")
TOOL_NAME = validate.Regexp(r"^[a-zA-Z0-9_-]{1,128}$", error="must match {regex}")


# Claude Code stamps its first system block per request; rendering it would
# change the prompt's first tokens every turn and defeat the prompt cache.
BILLING_HEADER = "x-anthropic-billing-header:"


class MessageSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    role = fields.String(required=True, validate=validate.OneOf(ROLES))
    content = ContentField(required=True)


class ToolSchema(Schema):
    """A client tool, or a server tool (`type` other than `custom`): names only."""

    class Meta:
        unknown = EXCLUDE  # cache_control, and server tools' own settings

    type = fields.String()
    name = fields.String(required=True, validate=TOOL_NAME)
    description = fields.String()
    input_schema = JSONSchemaField(object_only=True)

    @validates_schema
    def custom_tools_need_a_schema(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data.get("type", "custom") == "custom" and "input_schema" not in data:
            raise ValidationError("Missing data for required field.", "input_schema")

    @post_load
    def make(self, data: dict[str, Any], **kwargs: Any) -> ToolSpec:
        return ToolSpec(
            name=data["name"],
            description=data.get("description", ""),
            input_schema=data.get("input_schema", {"type": "object"}),
        )


class ToolChoiceSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    type = fields.String(
        required=True, validate=validate.OneOf(["auto", "any", "tool", "none"])
    )
    name = fields.String()
    disable_parallel_tool_use = StrictBoolean()

    @validates_schema
    def tool_needs_a_name(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data["type"] == "tool" and not data.get("name"):
            raise ValidationError('is required when type is "tool"', "name")


class ThinkingSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    type = fields.String(
        required=True, validate=validate.OneOf(["enabled", "disabled", "adaptive"])
    )
    budget_tokens = StrictInteger(validate=validate.Range(min=1024))

    @validates_schema
    def enabled_needs_a_budget(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data["type"] == "enabled" and "budget_tokens" not in data:
            raise ValidationError('is required when type is "enabled"', "budget_tokens")


class MetadataSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    user_id = fields.String(allow_none=True)


class OutputFormatSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    type = fields.String(required=True, validate=validate.Equal("json_schema"))
    schema = JSONSchemaField(required=True)


class OutputConfigSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    effort = fields.String(validate=validate.OneOf(["low", "medium", "high", "max"]))
    format = fields.Nested(OutputFormatSchema, allow_none=True)


@dataclass(frozen=True)
class MessagesRequest:
    """A validated `POST /v1/messages` body: the engine's request, and how to answer."""

    generation: GenerationRequest
    stream: bool


class MessagesRequestSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    model = fields.String(required=True, validate=MODEL_ID)
    messages = fields.List(
        fields.Nested(MessageSchema), required=True, validate=validate.Length(min=1)
    )
    system = ContentField(allowed={"text"})
    max_tokens = StrictInteger(required=True, validate=validate.Range(min=1))
    temperature = StrictFloat(validate=validate.Range(min=0.0, max=1.0))
    top_p = StrictFloat(validate=validate.Range(min=0.0, max=1.0))
    top_k = StrictInteger(validate=validate.Range(min=0))
    stop_sequences = fields.List(
        fields.String(validate=validate.Length(min=1, error="must not be empty"))
    )
    stream = StrictBoolean(load_default=False)
    metadata = fields.Nested(MetadataSchema)
    tools = fields.List(fields.Nested(ToolSchema), load_default=list)
    tool_choice = fields.Nested(ToolChoiceSchema)
    thinking = fields.Nested(ThinkingSchema)
    context_management = fields.Dict()
    output_config = fields.Nested(OutputConfigSchema)
    service_tier = fields.String(validate=validate.OneOf(["auto", "standard_only"]))

    @validates_schema
    def cross_field_rules(self, data: dict[str, Any], **kwargs: Any) -> None:
        budget = data.get("thinking", {}).get("budget_tokens")
        if budget is not None and "max_tokens" in data and budget >= data["max_tokens"]:
            raise ValidationError(
                "must be less than max_tokens", "thinking.budget_tokens"
            )
        choice = data.get("tool_choice", {})
        names = {tool.name for tool in data.get("tools", [])}
        if choice.get("type") == "any" and not names:
            raise ValidationError('"any" needs tools', "tool_choice.type")
        if choice.get("type") == "tool" and choice.get("name") not in names:
            raise ValidationError(
                f"tool {choice.get('name')!r} is not among the request's tools",
                "tool_choice.name",
            )

    @validates_schema
    def no_empty_turns(self, data: dict[str, Any], **kwargs: Any) -> None:
        """As Anthropic's API: every user and assistant message has content,
        but for a final assistant one (an empty prefill). A `system` message
        may be empty: Claude Code ends its requests with one."""
        turns = data.get("messages", [])
        for index, message in enumerate(turns):
            final_assistant = index == len(turns) - 1 and message["role"] == "assistant"
            exempt = final_assistant or message["role"] == "system"
            if not exempt and is_empty(message["content"]):
                raise ValidationError(
                    "must not be empty (only a final assistant message may be)",
                    f"messages.{index}.content",
                )

    @post_load
    def to_request(self, data: dict[str, Any], **kwargs: Any) -> MessagesRequest:
        output_format = (data.get("output_config") or {}).get("format") or {}
        thinking = data.get("thinking")
        generation = GenerationRequest(
            messages=tuple(conversation(data.get("system", []), data["messages"])),
            tool_policy=tool_policy(
                data["tools"], data.get("tool_choice", {"type": "auto"})
            ),
            sampling=SamplingParams(
                max_tokens=data.get("max_tokens"),
                temperature=data.get("temperature", 1.0),
                top_p=data.get("top_p"),
                top_k=data.get("top_k"),
                stop_sequences=tuple(data.get("stop_sequences", ())),
            ),
            response_schema=output_format.get("schema"),
            thinking=Thinking(**thinking) if thinking else None,
        )
        return MessagesRequest(generation, stream=data["stream"])


def is_empty(blocks: list[Block]) -> bool:
    """No content: no blocks, or only empty text."""
    return all(isinstance(b, TextBlock) and not b.text for b in blocks)


def conversation(
    system: list[Block], messages: list[dict[str, Any]]
) -> list[ChatMessage]:
    """The request's system prompt and turns as chat turns, merged the API's way.

    Claude Code's billing-header system block is left out (see BILLING_HEADER).
    """
    texts = [
        block.text
        for block in system
        if isinstance(block, TextBlock) and not block.text.startswith(BILLING_HEADER)
    ]
    turns = [ChatMessage("system", "\n".join(texts))] if texts else []
    for message in messages:
        turns.extend(to_chat_messages(message["role"], message["content"]))
    return merge_turns(turns)


def to_chat_messages(role: str, blocks: list[Block]) -> list[ChatMessage]:
    """One Anthropic turn as chat turns: tool results become `tool` turns."""
    turns: list[ChatMessage] = []
    text: list[str] = []
    thoughts: list[str] = []
    calls: list[ToolCall] = []
    for block in blocks:
        if isinstance(block, TextBlock):
            text.append(block.text)
        elif isinstance(block, ToolUseBlock):
            calls.append(ToolCall(block.id, block.name, block.input))
        elif isinstance(block, ToolResultBlock):
            turns.append(
                ChatMessage(
                    "tool",
                    block.content,
                    tool_call_id=block.tool_use_id,
                    is_error=block.is_error,
                )
            )
        elif isinstance(block, ThinkingBlock) and block.thinking:
            thoughts.append(block.thinking)  # the template's reasoning, not text
    if text or calls or thoughts or not turns:
        turns.append(
            ChatMessage(
                role,  # type: ignore[arg-type]
                "\n".join(text),
                tool_calls=tuple(calls),
                reasoning="\n".join(thoughts),
            )
        )
    return turns


def merge_turns(messages: list[ChatMessage]) -> list[ChatMessage]:
    """Join consecutive plain turns of the same role, as the Messages API does."""
    merged: list[ChatMessage] = []
    for message in messages:
        last = merged[-1] if merged else None
        if (
            last is not None
            and last.role == message.role
            and message.role != "tool"
            and not last.tool_calls
        ):
            merged[-1] = ChatMessage(
                message.role,
                "\n\n".join(p for p in (last.content, message.content) if p),
                tool_calls=message.tool_calls,
                reasoning="\n".join(
                    r for r in (last.reasoning, message.reasoning) if r
                ),
            )
        else:
            merged.append(message)
    return merged


class CountTokensRequestSchema(MessagesRequestSchema):
    """`POST /v1/messages/count_tokens`: a Messages request without max_tokens
    (so no budget check against it)."""

    max_tokens = StrictInteger(validate=validate.Range(min=1))

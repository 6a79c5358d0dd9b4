"""Anthropic content blocks: one schema per block type, dispatched on `type`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, post_load, validate


@dataclass(frozen=True)
class TextBlock:
    text: str


@dataclass(frozen=True)
class ToolUseBlock:
    id: str
    name: str
    input: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ToolResultBlock:
    tool_use_id: str
    content: str
    is_error: bool = False


@dataclass(frozen=True)
class ThinkingBlock:
    """Reasoning from an earlier turn: accepted, never shown to the model again."""

    thinking: str


Block = TextBlock | ToolUseBlock | ToolResultBlock | ThinkingBlock

# Valid Anthropic block types the text-only model cannot read.
UNREADABLE_TYPES = {"image", "document", "container_upload"}


class BlockSchema(Schema):
    class Meta:
        unknown = EXCLUDE  # cache_control, citations, signature: accepted, unused

    type = fields.String(required=True)


class TextBlockSchema(BlockSchema):
    text = fields.String(required=True)

    @post_load
    def make(self, data: dict[str, Any], **kwargs: Any) -> TextBlock:
        return TextBlock(data["text"])


class ToolUseBlockSchema(BlockSchema):
    id = fields.String(required=True)
    name = fields.String(required=True, validate=validate.Length(min=1))
    input = fields.Dict(required=True)

    @post_load
    def make(self, data: dict[str, Any], **kwargs: Any) -> ToolUseBlock:
        return ToolUseBlock(data["id"], data["name"], data["input"])


class ToolResultBlockSchema(BlockSchema):
    tool_use_id = fields.String(required=True)
    content = fields.Raw(load_default="")
    is_error = fields.Boolean(truthy={True}, falsy={False}, load_default=False)

    @post_load
    def make(self, data: dict[str, Any], **kwargs: Any) -> ToolResultBlock:
        content = data["content"]
        if not isinstance(content, str):
            blocks = load_blocks(content, allowed={"text"})
            content = "\n".join(b.text for b in blocks if isinstance(b, TextBlock))
        return ToolResultBlock(data["tool_use_id"], content, data["is_error"])


class ThinkingBlockSchema(BlockSchema):
    thinking = fields.String(required=True)

    @post_load
    def make(self, data: dict[str, Any], **kwargs: Any) -> ThinkingBlock:
        return ThinkingBlock(data["thinking"])


class RedactedThinkingBlockSchema(BlockSchema):
    data = fields.String(required=True)

    @post_load
    def make(self, data: dict[str, Any], **kwargs: Any) -> ThinkingBlock:
        return ThinkingBlock("")


BLOCK_SCHEMAS: dict[str, type[Schema]] = {
    "text": TextBlockSchema,
    "tool_use": ToolUseBlockSchema,
    "tool_result": ToolResultBlockSchema,
    "thinking": ThinkingBlockSchema,
    "redacted_thinking": RedactedThinkingBlockSchema,
}


def load_blocks(value: Any, allowed: set[str] | None = None) -> list[Block]:
    """Validate a list of content blocks; errors are keyed by block index."""
    if not isinstance(value, list):
        raise ValidationError("must be a string or a list of content blocks")
    errors: dict[int, Any] = {}
    blocks: list[Block] = []
    for index, raw in enumerate(value):
        try:
            blocks.append(load_block(raw, allowed))
        except ValidationError as error:
            errors[index] = error.messages
    if errors:
        raise ValidationError(errors)
    return blocks


def load_block(raw: Any, allowed: set[str] | None) -> Block:
    if not isinstance(raw, dict):
        raise ValidationError("each content block must be an object")
    kind = raw.get("type")
    if not isinstance(kind, str):  # also unhashable values: a list, an object
        raise ValidationError({"type": ["must be a string"]})
    if kind in UNREADABLE_TYPES:
        raise ValidationError(
            {
                "type": [
                    f"{kind} content is not supported: the loaded model reads text only"
                ]
            }
        )
    schema = BLOCK_SCHEMAS.get(kind)
    if schema is None or (allowed is not None and kind not in allowed):
        expected = ", ".join(sorted(allowed or BLOCK_SCHEMAS))
        raise ValidationError({"type": [f"must be one of: {expected}; got {kind!r}"]})
    return schema().load(raw)


class ContentField(fields.Field):
    """Message content: a string, or a list of content blocks."""

    def __init__(self, *, allowed: set[str] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.allowed = allowed

    def _deserialize(
        self, value: Any, attr: str | None, data: Any, **kwargs: Any
    ) -> list[Block]:
        if isinstance(value, str):
            return [TextBlock(value)]
        return load_blocks(value, self.allowed)

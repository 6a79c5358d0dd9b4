"""What every face's schemas share: the JSON body, strict scalars, JSON schemas,
and the tool policy.

Both the Anthropic and the OpenAI face validate through these, so one rule
answers both the same way (in each face's own error envelope).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from typing import Any

from flask import request
from marshmallow import ValidationError, fields

from ..engine import ToolPolicy, ToolSpec
from ..engine.grammars import json_grammar
from ..errors import InvalidRequest


def json_body() -> dict[str, Any]:
    """The request's JSON object, or a clear 400."""
    body = request.get_json(force=True, silent=True)
    if body is None:
        raise InvalidRequest("request body is not valid JSON")
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object")
    return body


class StrictBoolean(fields.Boolean):
    """A JSON boolean only: not 1 or 0, not "true"."""

    def _deserialize(
        self, value: Any, attr: str | None, data: Any, **kwargs: Any
    ) -> bool:
        if not isinstance(value, bool):
            raise ValidationError("must be a boolean")
        return value


class StrictFloat(fields.Float):
    """A JSON number only: no numeric strings, no booleans."""

    def _deserialize(
        self, value: Any, attr: str | None, data: Any, **kwargs: Any
    ) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValidationError("must be a number")
        return super()._deserialize(value, attr, data, **kwargs)


class StrictInteger(fields.Integer):
    """A JSON integer only: no strings, no booleans, no fractions."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(strict=True, **kwargs)

    def _deserialize(
        self, value: Any, attr: str | None, data: Any, **kwargs: Any
    ) -> int:
        if isinstance(value, bool):
            raise ValidationError("must be an integer")
        return super()._deserialize(value, attr, data, **kwargs)


class JSONSchemaField(fields.Dict):
    """A JSON Schema both jsonschema and the constrained decoder accept.

    Tools' input schemas and structured output's schema are this field on
    both faces, so every schema is checked before it reaches the grammar
    builder. With `object_only`, the schema must describe an object.
    """

    def __init__(self, *, object_only: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.object_only = object_only

    def _deserialize(
        self, value: Any, attr: str | None, data: Any, **kwargs: Any
    ) -> dict[str, Any]:
        schema = super()._deserialize(value, attr, data, **kwargs)
        if self.object_only and schema.get("type") != "object":
            raise ValidationError('must have "type": "object"')
        if problem := json_schema_problem(schema):
            raise ValidationError(problem)
        return schema


def json_schema_problem(schema: dict[str, Any]) -> str | None:
    """Why `schema` cannot be used (not valid, or not buildable), or None.

    Agents send the same tools on every turn (Claude Code's ~100 schemas
    take ~0.2 s to check): the answer is remembered by the schema's text.
    """
    return _schema_problem(json.dumps(schema, sort_keys=True))


@functools.lru_cache(maxsize=2048)
def _schema_problem(text: str) -> str | None:
    import jsonschema
    import llguidance

    schema = json.loads(text)
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as error:
        return f"not a valid JSON Schema: {error.message}"
    if problem := llguidance.LLMatcher.validate_grammar(json_grammar(schema)):
        return f"not supported for constrained decoding: {problem}"
    return None


def tool_policy(tools: Iterable[ToolSpec], choice: dict[str, Any]) -> ToolPolicy:
    """The tool policy of a request's tools and its `tool_choice`, in the
    Messages API's form (`{"type": ..., "name": ..., "disable_parallel_tool_use":
    ...}`), which the OpenAI face converts its own to."""
    return ToolPolicy(
        tools=tuple(tools),
        choice=choice["type"],
        name=choice.get("name"),
        parallel=not choice.get("disable_parallel_tool_use", False),
    )

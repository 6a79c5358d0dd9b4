"""What every face's schemas share: the JSON body, strict scalars, JSON schemas,
and the tool policy.

Both the Anthropic and the OpenAI face validate through these, so one rule
answers both the same way (in each face's own error envelope).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable
from typing import Any

from flask import current_app, request
from marshmallow import Schema, ValidationError, fields, validate

from ..engine import ToolPolicy, ToolSpec
from ..engine.grammars import json_grammar
from ..engine.runner import off_loop
from ..errors import InvalidRequest, RequestTimedOut, RequestTooLarge
from ..guard import read_timed_out
from ..limits import json_depth

# A model id: every id is served by the loaded model, but none is this long.
MODEL_ID = validate.Length(min=1, max=256)
# A JSON escape of a UTF-16 surrogate: the body may hold a lone one.
SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def load_body(schema: Schema) -> Any:
    """The request's JSON object loaded by `schema`, or a clear 4xx.

    The body is read here, on the event loop (it is I/O); checking, parsing
    and validating it run off the loop, so a large request does not stall
    the other connections.
    """
    if (kind := request.mimetype) and not is_json(kind):
        raise InvalidRequest(f"Content-Type must be application/json; got {kind}")
    raw = request.get_data(cache=True)  # RequestEntityTooLarge past the limit
    if read_timed_out(request.environ):  # the body stopped short
        timeout = current_app.config["READ_TIMEOUT"]
        raise RequestTimedOut(f"request body not received within {timeout:g} s")
    limit = request.max_content_length
    if request.content_length is None and limit is not None and len(raw) >= limit:
        # A chunked body is read up to the limit, and the rest left unread.
        raise RequestTooLarge(f"request body exceeds {limit} bytes")
    depth = current_app.config["MAX_JSON_DEPTH"]
    return off_loop(parse_and_load, raw, depth, schema)


def is_json(mimetype: str) -> bool:
    return mimetype == "application/json" or mimetype.endswith("+json")


def parse_and_load(raw: bytes, max_depth: int, schema: Schema) -> Any:
    """Check, parse and validate a body: what `load_body` runs off the loop."""
    if json_depth(raw) > max_depth:
        raise InvalidRequest(
            f"request body is nested too deeply (more than {max_depth} levels)"
        )
    try:
        body = json.loads(raw)
    except RecursionError:
        raise InvalidRequest("request body is nested too deeply") from None
    except ValueError:  # also bytes that are not UTF-8
        raise InvalidRequest("request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object")
    if SURROGATE_ESCAPE.search(raw) and (where := lone_surrogate(body)):
        raise InvalidRequest(f"{where}: contains a lone UTF-16 surrogate (not text)")
    return schema.load(body)


def lone_surrogate(value: Any, path: str = "") -> str | None:
    """The path of the first string in `value` that is not valid Unicode text
    (a lone surrogate, which no tokenizer takes), or None."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path or "body"
    elif isinstance(value, dict):
        for key, item in value.items():
            if where := lone_surrogate(item, f"{path}.{key}" if path else str(key)):
                return where
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if where := lone_surrogate(item, f"{path}.{index}" if path else str(index)):
                return where
    return None


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
    try:
        return _schema_problem(json.dumps(schema, sort_keys=True))
    except RecursionError:
        return "is nested too deeply"


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

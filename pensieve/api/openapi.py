"""`GET /openapi.json`: the API as an OpenAPI 3.1 document.

Built once per app with apispec's Marshmallow plugin from the schemas the
views load, and from the app's own routes: the document lists no route the
app lacks, and no field a schema does not take. Like the other API routes it
needs the key (auth's public endpoints say which routes do not).

Fields that take more than one shape (content, `stop`, `tool_choice`, …) are
plain `fields.Field`s to apispec; `polymorphic_field` gives their shapes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any, get_args

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin, OpenAPIConverter
from flask import Blueprint, Flask, Response, current_app, jsonify
from marshmallow import Schema, fields
from werkzeug.routing import Rule

from ..auth import PUBLIC_ENDPOINTS
from ..engine.engine import Status
from ..errors import OPENAI_ERROR_TYPES
from ..schemas import chat_completions, completions, content, openai
from ..schemas.common import JSONSchemaField
from ..schemas.messages import CountTokensRequestSchema, MessagesRequestSchema

bp = Blueprint("openapi", __name__)
EXTENSION = "pensieve.openapi"
OPENAPI_VERSION = "3.1.0"
OPENAI_MODULES = {module.__name__ for module in (chat_completions, completions, openai)}
ANTHROPIC, OPENAI, EITHER = "anthropic", "openai", "either"
KEY_SECURITY: list[dict[str, list[str]]] = [{"ApiKey": []}, {"Bearer": []}]
SECURITY_SCHEMES = {
    "ApiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
    "Bearer": {"type": "http", "scheme": "bearer"},
}
ANTHROPIC_VERSION = {
    "name": "anthropic-version",
    "in": "header",
    "required": False,
    "schema": {"type": "string"},
    "description": "Sent by Anthropic clients; accepted, not checked. Where the "
    "route does not decide the API, it (or x-api-key) picks Anthropic's shapes.",
}


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(required: list[str], **properties: Any) -> dict[str, Any]:
    """A JSON object with these properties, `required` of them required."""
    return {"type": "object", "required": required, "properties": properties}


STRING, INTEGER = {"type": "string"}, {"type": "integer"}
NULLABLE_STRING = {"type": ["string", "null"]}
SSE_EVENT = obj(
    ["data"], event=STRING, data={**STRING, "contentMediaType": "application/json"}
)
ENVELOPES: dict[str, dict[str, Any]] = {
    "AnthropicError": obj(
        ["type", "error"],
        type={"const": "error"},
        error=obj(
            ["type", "message"],
            type={"enum": list(OPENAI_ERROR_TYPES)},
            message=STRING,
        ),
    ),
    "OpenAIError": obj(
        ["error"],
        error=obj(
            ["message", "type", "param", "code"],
            message=STRING,
            type={"enum": sorted({kind for kind, _ in OPENAI_ERROR_TYPES.values()})},
            param=NULLABLE_STRING,
            code=NULLABLE_STRING,
        ),
    ),
}
ANSWERS: dict[str, dict[str, Any]] = {
    "MessageResponse": obj(
        ["id", "type", "role", "model", "content", "stop_reason", "usage"],
        type={"const": "message"},
        role={"const": "assistant"},
        content={"type": "array", "items": obj(["type"], type=STRING)},
        usage=obj(["input_tokens", "output_tokens"]),
    ),
    "TokenCount": obj(["input_tokens"], input_tokens={**INTEGER, "minimum": 0}),
    "Model": {
        "anyOf": [
            obj(["type", "id", "display_name", "created_at"], type={"const": "model"}),
            obj(["id", "object", "created", "owned_by"], object={"const": "model"}),
        ]
    },
    "ModelList": {
        "anyOf": [
            obj(["data", "has_more", "first_id", "last_id"], data={"type": "array"}),
            obj(["object", "data"], object={"const": "list"}, data={"type": "array"}),
        ]
    },
    "ChatCompletion": obj(
        ["id", "object", "created", "model", "choices", "usage"],
        object={"const": "chat.completion"},
    ),
    "Completion": obj(
        ["id", "object", "created", "model", "choices", "usage"],
        object={"const": "text_completion"},
    ),
    "Health": obj(["status"], status={"enum": [*get_args(Status), "draining"]}),
    "Index": obj(["name", "status"], name={"const": "pensieve"}),
}


@dataclass(frozen=True)
class Operation:
    """What the document says of one route and method.

    `face`: whose error envelope its 4xx and 5xx answers are in (EITHER: the
    headers decide, see `pensieve.dialect`). `answer`: the 200's media types.
    """

    summary: str
    face: str
    answer: dict[str, Any]
    body: type[Schema] | None = None
    extra_responses: dict[str, Any] = field(default_factory=dict)


def json_answer(name: str, *, streams: bool = False) -> dict[str, Any]:
    answer: dict[str, Any] = {"application/json": {"schema": ref(name)}}
    if streams:  # with "stream": true; each event (OpenAI's have no name)
        answer["text/event-stream"] = {"schema": SSE_EVENT}
    return answer


# Keyed by the Flask endpoint and the method; the paths come from app.url_map.
OPERATIONS: dict[tuple[str, str], Operation] = {
    ("messages.create_message", "post"): Operation(
        "Create a message (Anthropic Messages API)",
        ANTHROPIC,
        json_answer("MessageResponse", streams=True),
        MessagesRequestSchema,
    ),
    ("messages.count_tokens", "post"): Operation(
        "Count the input tokens of a message request",
        ANTHROPIC,
        json_answer("TokenCount"),
        CountTokensRequestSchema,
    ),
    ("models.list_models", "get"): Operation(
        "The served model and its aliases", EITHER, json_answer("ModelList")
    ),
    ("models.get_model", "get"): Operation(
        "One model (any id names the served model)", EITHER, json_answer("Model")
    ),
    ("openai.chat_completions", "post"): Operation(
        "Create a chat completion (OpenAI API)",
        OPENAI,
        json_answer("ChatCompletion", streams=True),
        chat_completions.ChatCompletionRequestSchema,
    ),
    ("openai.completions", "post"): Operation(
        "Create a text completion (OpenAI legacy API)",
        OPENAI,
        json_answer("Completion", streams=True),
        completions.CompletionRequestSchema,
    ),
    ("health.health", "get"): Operation(
        "Whether the model can serve; with the key, what is loaded",
        EITHER,
        json_answer("Health"),
        extra_responses={
            "503": {
                "description": "Not ready: starting, loading, failed or draining",
                "content": json_answer("Health"),
            }
        },
    ),
    ("health.index", "get"): Operation("Name and status", EITHER, json_answer("Index")),
    ("health.index", "head"): Operation("Name and status, headers only", EITHER, {}),
    ("metrics.metrics", "get"): Operation(
        "Prometheus metrics (OpenMetrics when the Accept header asks)",
        EITHER,
        {"text/plain": {"schema": STRING}},
    ),
    ("openapi.openapi_json", "get"): Operation(
        "This document", EITHER, {"application/json": {"schema": {"type": "object"}}}
    ),
}


def tagged(schema: dict[str, Any], key: str, *values: str) -> dict[str, Any]:
    """`schema`, with `key` one of `values` (the tag a field dispatches on)."""
    tag = {"const": values[0]} if len(values) == 1 else {"enum": list(values)}
    return {"allOf": [schema, {"properties": {key: tag}}]}


def anthropic_content(converter: OpenAPIConverter, field: Any) -> list[Any]:
    kinds = sorted(field.allowed or content.BLOCK_SCHEMAS)
    blocks = [
        tagged(
            converter.resolve_nested_schema(content.BLOCK_SCHEMAS[kind]), "type", kind
        )
        for kind in kinds
    ]
    items = blocks[0] if len(blocks) == 1 else {"anyOf": blocks}
    return [STRING, {"type": "array", "items": items}]


def openai_content(converter: OpenAPIConverter, field: Any) -> list[Any]:
    parts = [
        obj(["type", kind], type={"const": kind}, **{kind: STRING})
        for kind in field.parts
    ]
    return [STRING, {"type": "array", "items": {"anyOf": parts}}]


def openai_message(converter: OpenAPIConverter, field: Any) -> list[Any]:
    roles: dict[type[Schema], list[str]] = {}
    for role, schema in chat_completions.MESSAGE_SCHEMAS.items():
        roles.setdefault(schema, []).append(role)
    return [
        tagged(converter.resolve_nested_schema(schema), "role", *names)
        for schema, names in roles.items()
    ]


NONEMPTY = {"type": "string", "minLength": 1}
FUNCTION_CHOICE = obj(
    ["type", "function"],
    type={"const": "function"},
    function=obj(["name"], name=NONEMPTY),
)
# Each field class that takes several shapes: the `anyOf` of its shapes.
SHAPES: dict[type[fields.Field], Callable[[OpenAPIConverter, Any], list[Any]]] = {
    content.ContentField: anthropic_content,
    chat_completions.ContentField: openai_content,
    chat_completions.MessageField: openai_message,
    openai.StopField: lambda _, __: [NONEMPTY, {"type": "array", "items": NONEMPTY}],
    chat_completions.ToolChoiceField: lambda _, __: [
        {"enum": ["none", "auto", "required"]},
        FUNCTION_CHOICE,
    ],
    completions.PromptField: lambda _, __: [
        NONEMPTY,
        {"type": "array", "items": NONEMPTY, "minItems": 1, "maxItems": 1},
    ],
}


def polymorphic_field(
    self: OpenAPIConverter, field: fields.Field, **kwargs: Any
) -> dict[str, Any]:
    """apispec attribute function: the shapes of the fields apispec cannot
    see into, and what a JSON Schema field asks of the schema it takes."""
    if isinstance(field, JSONSchemaField) and field.object_only:
        return {"required": ["type"], "properties": {"type": {"const": "object"}}}
    shape = SHAPES.get(type(field))
    if shape is None:
        return {}
    shapes = shape(self, field)
    return {"anyOf": [*shapes, {"type": "null"}] if field.allow_none else shapes}


def component_name(schema: type[Schema] | Schema) -> str:
    """A schema's component name; the OpenAI face's are prefixed (both faces
    have a `ToolSchema`)."""
    cls = schema if isinstance(schema, type) else type(schema)
    name = cls.__name__.removesuffix("Schema")
    return f"OpenAI{name}" if cls.__module__ in OPENAI_MODULES else name


def openapi_path(rule: Rule) -> tuple[str, list[dict[str, Any]]]:
    """A Flask rule as an OpenAPI path and its path parameters."""
    path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
    parameters = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": NONEMPTY,
            "description": "may contain slashes (as Hugging Face ids do)",
        }
        for name in sorted(rule.arguments)
    ]
    return path, parameters


def error_responses(face: str) -> dict[str, Any]:
    envelope = {
        ANTHROPIC: ref("AnthropicError"),
        OPENAI: ref("OpenAIError"),
        EITHER: {"anyOf": [ref("AnthropicError"), ref("OpenAIError")]},
    }[face]
    media = {"application/json": {"schema": envelope}}
    return {
        "4XX": {
            "description": "Refused, in the face's error envelope",
            "content": media,
        },
        "5XX": {
            "description": "The model is unavailable (503) or busy (529; 503 with "
            "retry-after on the OpenAI face), in the face's error envelope",
            "content": media,
        },
    }


def operation_object(
    endpoint: str, method: str, operation: Operation
) -> dict[str, Any]:
    """One operation of the document."""
    answer: dict[str, Any] = {"description": "OK"}
    if operation.answer:
        answer["content"] = operation.answer
    described: dict[str, Any] = {
        "operationId": f"{method}_{endpoint.rpartition('.')[2]}",
        "summary": operation.summary,
        "tags": [operation.face],
        "responses": {
            "200": answer,
            **error_responses(operation.face),
            **operation.extra_responses,
        },
    }
    if operation.body is not None:
        schema = {"schema": operation.body}
        described["requestBody"] = {
            "required": True,
            "content": {"application/json": schema},
        }
    if operation.face != OPENAI:
        described["parameters"] = [ANTHROPIC_VERSION]
    if endpoint in PUBLIC_ENDPOINTS:  # the key is optional (/health shows more)
        described["security"] = [{}, *KEY_SECURITY]
    return described


def package_version() -> str:
    try:
        return version("pensieve")
    except PackageNotFoundError:
        return "0.0.0"


def build_document(app: Flask) -> dict[str, Any]:
    """The OpenAPI document of `app`'s routes that OPERATIONS describes."""
    plugin = MarshmallowPlugin(schema_name_resolver=component_name)
    spec = APISpec(
        title="Pensieve",
        version=package_version(),
        openapi_version=OPENAPI_VERSION,
        plugins=[plugin],
        info={"description": "A local LLM server: Anthropic's and OpenAI's APIs."},
        security=KEY_SECURITY,
    )
    converter: OpenAPIConverter = plugin.converter  # type: ignore[assignment]
    converter.add_attribute_function(polymorphic_field)
    for name, scheme in SECURITY_SCHEMES.items():
        spec.components.security_scheme(name, scheme)
    for name, schema in {**ENVELOPES, **ANSWERS}.items():
        spec.components.schema(name, component=schema)
    for rule in sorted(app.url_map.iter_rules(), key=lambda rule: rule.rule):
        operations = {
            method: operation_object(endpoint, method, operation)
            for (endpoint, method), operation in OPERATIONS.items()
            if endpoint == rule.endpoint and method.upper() in (rule.methods or ())
        }
        if operations:
            path, parameters = openapi_path(rule)
            spec.path(path=path, operations=operations, parameters=parameters)
    return spec.to_dict()


def document_of(app: Flask) -> dict[str, Any]:
    """The app's OpenAPI document, built on first use."""
    if EXTENSION not in app.extensions:
        app.extensions[EXTENSION] = build_document(app)
    return app.extensions[EXTENSION]


@bp.get("/openapi.json")
def openapi_json() -> Response:
    return jsonify(document_of(current_app))

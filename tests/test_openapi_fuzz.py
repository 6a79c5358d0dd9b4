"""The OpenAPI document at /openapi.json, and a property-based fuzz of the API
from it (schemathesis): no 5xx, every 4xx in its face's envelope, and the
server serving afterwards.

The fast fuzz runs on the scripted engine, at least MIN_CASES cases over
every operation; the slow one runs fewer against the real server and model.
Generation is derandomized, so a run sends the same cases every time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jsonschema
import pytest
import requests
import schemathesis
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.schemas import BaseSchema

from conftest import API_KEY, Server
from fake_engine import KEY, FakeEngine, script, scripted_app
from pensieve.api.openapi import document_of

MIN_CASES = 500
POSITIVE, NEGATIVE = GenerationMode.POSITIVE, GenerationMode.NEGATIVE
# Cases per generation mode, for each operation; only operations with a body
# can be sent negative data (no other parameter has values to break).
FAST_PLAN: dict[str, dict[GenerationMode, int]] = {
    "POST /v1/messages": {POSITIVE: 60, NEGATIVE: 60},
    "POST /v1/messages/count_tokens": {POSITIVE: 50, NEGATIVE: 50},
    "POST /v1/chat/completions": {POSITIVE: 50, NEGATIVE: 50},
    "POST /v1/completions": {POSITIVE: 50, NEGATIVE: 50},
    "GET /v1/models": {POSITIVE: 15},
    "GET /v1/models/{model_id}": {POSITIVE: 30},
    "GET /health": {POSITIVE: 15},
    "GET /": {POSITIVE: 10},
    "HEAD /": {POSITIVE: 10},
    "GET /metrics": {POSITIVE: 10},
    "GET /openapi.json": {POSITIVE: 10},
}
# Against the real model: negative data for the generation endpoints, so
# nothing generates (and max_tokens is capped in case something does).
SLOW_PLAN: dict[str, dict[GenerationMode, int]] = {
    "POST /v1/messages": {NEGATIVE: 15},
    "POST /v1/chat/completions": {NEGATIVE: 10},
    "POST /v1/completions": {NEGATIVE: 10},
    "POST /v1/messages/count_tokens": {POSITIVE: 20, NEGATIVE: 5},
    "GET /v1/models": {POSITIVE: 5},
    "GET /v1/models/{model_id}": {POSITIVE: 10},
    "GET /health": {POSITIVE: 5},
}
GENERATION_PATHS = ("/v1/messages", "/v1/chat/completions", "/v1/completions")
SLOW_MAX_TOKENS = 8
# schemathesis checks left out: our own key is sent on purpose (ignored_auth
# takes it for a generated one), and schema-valid bodies may still break a
# cross-field rule (thinking budget < max_tokens, tool_choice names a tool).
EXCLUDED_CHECKS = ["ignored_auth", "positive_data_acceptance"]
ANTHROPIC_ERRORS = {
    "invalid_request_error",
    "authentication_error",
    "permission_error",
    "not_found_error",
    "request_too_large",
    "rate_limit_error",
    "overloaded_error",
    "api_error",
}


def auth_headers(key: str) -> st.SearchStrategy[dict[str, str]]:
    """The key for most cases, in either header; none or a wrong one for some."""
    return st.sampled_from(
        [
            *[{"x-api-key": key}] * 6,
            *[{"Authorization": f"Bearer {key}"}] * 3,
            {},
            {"x-api-key": "wrong"},
            {"Authorization": "Bearer wrong"},
        ]
    )


def face_of(path: str, headers: Mapping[str, str]) -> str:
    """Whose envelope an error on `path` is in (pensieve.dialect's rule)."""
    if path.startswith(("/v1/chat/completions", "/v1/completions")):
        return "openai"
    if path.startswith("/v1/messages"):
        return "anthropic"
    sent = {name.lower() for name in headers}
    return "anthropic" if sent & {"anthropic-version", "x-api-key"} else "openai"


def assert_envelope(face: str, body: Any) -> None:
    """`body` is exactly the face's error envelope."""
    if face == "anthropic":
        assert set(body) == {"type", "error"} and body["type"] == "error", body
        assert set(body["error"]) == {"type", "message"}, body
        assert body["error"]["type"] in ANTHROPIC_ERRORS, body
        assert isinstance(body["error"]["message"], str), body
        return
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}, body
    assert isinstance(error["message"], str) and isinstance(error["type"], str)
    assert all(
        error[key] is None or isinstance(error[key], str) for key in ("param", "code")
    )


def check_answer(method: str, path: str, sent: Mapping[str, str], answer: Any) -> None:
    """No 5xx; a 4xx is JSON in the envelope of the face `path` and `sent` pick."""
    status = answer.status_code
    assert status < 500, f"{method} {path}: {status} {answer.content[:500]!r}"
    if status < 400 or method == "HEAD":
        return
    assert answer.headers["content-type"][0].startswith("application/json")
    assert_envelope(face_of(path, sent), answer.json())


def capped(path: str, body: Any) -> Any:
    """A body's max_tokens capped at SLOW_MAX_TOKENS (a valid one, if any);
    OpenAI's default (what the window fits) is set to it too."""
    if not isinstance(body, dict):
        return body
    limits = ("max_tokens", "max_completion_tokens")
    if path != "/v1/messages" and not any(key in body for key in limits):
        body["max_tokens"] = SLOW_MAX_TOKENS
    for key in limits:
        value = body.get(key)
        too_many = isinstance(value, int) and value > SLOW_MAX_TOKENS
        if too_many and not isinstance(value, bool):
            body[key] = SLOW_MAX_TOKENS
    return body


def fuzz(
    schema: BaseSchema,
    label: str,
    plan: Mapping[GenerationMode, int],
    key: str,
    base_url: str | None = None,
) -> int:
    """Run the plan's cases of one operation; the number of cases sent.

    With `base_url` (a real server), generation requests ask for few tokens.
    """
    call: dict[str, Any] = {"base_url": base_url, "timeout": 120} if base_url else {}
    operation = schema[label.split()[1]][label.split()[0]]
    sent = 0
    for mode, examples in plan.items():

        @settings(
            max_examples=examples,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(generation_mode=mode), auth=auth_headers(key))
        def one_case(case: schemathesis.Case, auth: dict[str, str]) -> None:
            nonlocal sent
            sent += 1
            if base_url and operation.path in GENERATION_PATHS:
                case.body = capped(operation.path, case.body)
            note(f"{case!r}, sent with {auth}")
            answer = case.call(headers=auth, **call)
            headers = {**(case.headers or {}), **auth}
            check_answer(operation.method.upper(), operation.path, headers, answer)
            case.validate_response(answer, headers=headers)

        one_case()
    return sent


def loaded(schema: BaseSchema) -> BaseSchema:
    schema.config.generation.update(with_security_parameters=False)  # we send keys
    schema.config.checks.update(excluded_check_names=EXCLUDED_CHECKS)
    return schema


@pytest.fixture(scope="module")
def fuzzed_app() -> Flask:
    """One scripted app for the whole fast fuzz: state carries across cases."""
    return scripted_app(FakeEngine(script(["Hel", "lo", "!"])))


@pytest.fixture(scope="module")
def document(fuzzed_app: Flask) -> dict[str, Any]:
    response = fuzzed_app.test_client().get("/openapi.json", headers={"x-api-key": KEY})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def test_the_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"] == "3.1.0"
    schemathesis.openapi.from_dict(document).validate()  # the OAS 3.1 meta-schema
    validator = jsonschema.Draft202012Validator  # 3.1's default schema dialect
    for schema in document["components"]["schemas"].values():
        validator.check_schema(schema)
    assert set(document["components"]["securitySchemes"]) == {"ApiKey", "Bearer"}


def test_every_route_is_in_the_document(
    fuzzed_app: Flask, document: dict[str, Any]
) -> None:
    documented = {
        (path, method.upper())
        for path, item in document["paths"].items()
        for method in item
        if method != "parameters"
    }
    for rule in fuzzed_app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = rule.rule.replace("<path:model_id>", "{model_id}")
        methods = (rule.methods or set()) - {"OPTIONS", "HEAD"}
        assert {(path, method) for method in methods} <= documented, rule
    assert {f"{method} {path}" for path, method in documented} == set(FAST_PLAN)


def test_the_document_names_the_bodies_and_the_envelopes(
    document: dict[str, Any],
) -> None:
    paths = document["paths"]
    body = paths["/v1/messages"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/MessagesRequest"}
    errors = paths["/v1/messages"]["post"]["responses"]["4XX"]["content"]
    assert errors["application/json"]["schema"]["$ref"].endswith("/AnthropicError")
    errors = paths["/v1/chat/completions"]["post"]["responses"]["4XX"]["content"]
    assert errors["application/json"]["schema"]["$ref"].endswith("/OpenAIError")
    assert paths["/health"]["get"]["security"][0] == {}  # the key is optional
    assert "security" not in paths["/v1/messages"]["post"]  # the document's: a key


def test_a_real_request_fits_the_document(document: dict[str, Any]) -> None:
    """A Claude-Code-like body (tools, a tool call and its result) is valid."""
    body = {
        "model": "claude-sonnet-5-5",
        "max_tokens": 64,
        "system": [{"type": "text", "text": "Be brief."}],
        "tools": [{"name": "ls", "input_schema": {"type": "object"}}],
        "messages": [
            {"role": "user", "content": "List the files."},
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": "t1", "name": "ls", "input": {}}
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "t1", "content": "a"}
                ],
            },
        ],
    }
    schema = {
        "components": document["components"],
        "$ref": "#/components/schemas/MessagesRequest",
    }
    jsonschema.Draft202012Validator(schema).validate(body)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(schema).validate({**body, "max_tokens": 0})


def test_the_document_is_built_once(fuzzed_app: Flask) -> None:
    assert document_of(fuzzed_app) is document_of(fuzzed_app)


def test_the_document_needs_the_key_like_every_api_route(
    fuzzed_app: Flask,
) -> None:
    client = fuzzed_app.test_client()
    response = client.get("/openapi.json", headers={"anthropic-version": "2023-06-01"})
    assert response.status_code == 401
    assert_envelope("anthropic", response.get_json())
    response = client.get("/openapi.json", headers={"Authorization": "Bearer wrong"})
    assert response.status_code == 401
    assert_envelope("openai", response.get_json())


@pytest.mark.parametrize(
    ("method", "path", "headers", "face"),
    [
        ("GET", "/v1/messages", {"x-api-key": KEY}, "anthropic"),
        ("PUT", "/v1/messages/count_tokens", {"x-api-key": KEY}, "anthropic"),
        ("GET", "/v1/chat/completions", {"Authorization": f"Bearer {KEY}"}, "openai"),
        ("DELETE", "/v1/completions", {"x-api-key": KEY}, "openai"),
        ("POST", "/v1/models", {"x-api-key": KEY}, "anthropic"),
        ("POST", "/openapi.json", {"Authorization": f"Bearer {KEY}"}, "openai"),
    ],
)
def test_a_wrong_method_is_405_in_the_envelope(
    fuzzed_app: Flask, method: str, path: str, headers: dict[str, str], face: str
) -> None:
    response = fuzzed_app.test_client().open(path, method=method, headers=headers)
    assert response.status_code == 405
    assert_envelope(face, response.get_json())


def still_serves(client: FlaskClient) -> None:
    body = {
        "model": "m",
        "max_tokens": 8,
        "messages": [{"role": "user", "content": "Hi"}],
    }
    answer = client.post("/v1/messages", json=body, headers={"x-api-key": KEY})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.get_json()["content"] == [{"type": "text", "text": "Hello!"}]


def test_the_fast_plan_sends_at_least_min_cases() -> None:
    assert sum(sum(plan.values()) for plan in FAST_PLAN.values()) >= MIN_CASES


@pytest.fixture(scope="module")
def fuzzed_schema(fuzzed_app: Flask) -> BaseSchema:
    headers = {"x-api-key": KEY}
    return loaded(
        schemathesis.openapi.from_wsgi("/openapi.json", fuzzed_app, headers=headers)
    )


@pytest.mark.parametrize("label", FAST_PLAN)
def test_fuzz(
    fuzzed_schema: BaseSchema, fuzzed_app: Flask, label: str, record_property: Any
) -> None:
    """Every case of the operation's plan sent, none failing; still serving."""
    sent = fuzz(fuzzed_schema, label, FAST_PLAN[label], KEY)
    record_property("cases", sent)
    print(f"{label}: {sent} cases")
    assert sent >= sum(FAST_PLAN[label].values())
    still_serves(fuzzed_app.test_client())


@pytest.fixture(scope="module")
def server_schema(server: Server) -> BaseSchema:
    url = f"{server.url}/openapi.json"
    return loaded(schemathesis.openapi.from_url(url, headers={"x-api-key": API_KEY}))


def test_fuzz_the_real_server(server: Server, server_schema: BaseSchema) -> None:
    """A smaller fuzz over HTTP on the bundled model; then a real answer."""
    sent = 0
    for label, plan in SLOW_PLAN.items():
        sent += fuzz(server_schema, label, plan, API_KEY, base_url=server.url)
    print(f"real server: {sent} cases")
    assert sent >= sum(sum(plan.values()) for plan in SLOW_PLAN.values())
    body = {
        "model": "m",
        "max_tokens": 8,
        "messages": [{"role": "user", "content": "Say hi."}],
    }
    answer = requests.post(
        f"{server.url}/v1/messages",
        json=body,
        headers={"x-api-key": API_KEY},
        timeout=120,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["usage"]["output_tokens"] <= 8

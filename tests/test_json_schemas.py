"""JSON schemas (tool inputs, structured output) are checked once, for both
faces: a schema the constrained decoder cannot build is a 400 in each face's
own envelope, never a 500."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from fake_engine import KEY, FakeEngine
from pensieve.engine.tools import GrammarError

# A lookbehind: valid JSON Schema, but no regular language llguidance can build.
BAD_PATTERN = {
    "type": "object",
    "properties": {"a": {"type": "string", "pattern": "(?<=a)b"}},
}
NOT_A_SCHEMA = {"type": "object", "properties": {"a": {"type": 12}}}
HEADERS = {"x-api-key": KEY}
BEARER = {"Authorization": f"Bearer {KEY}"}
USER = [{"role": "user", "content": "Hi"}]


def anthropic(client: FlaskClient, **fields: Any) -> dict[str, Any]:
    body = {"model": "m", "max_tokens": 5, "messages": USER, **fields}
    response = client.post("/v1/messages", json=body, headers=HEADERS)
    assert response.status_code == 400, response.get_data(as_text=True)
    error = response.get_json()
    assert error["type"] == "error"
    assert error["error"]["type"] == "invalid_request_error"
    return error["error"]


def openai(client: FlaskClient, **fields: Any) -> dict[str, Any]:
    body = {"model": "m", "messages": USER, **fields}
    response = client.post("/v1/chat/completions", json=body, headers=BEARER)
    assert response.status_code == 400, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert error["type"] == "invalid_request_error"
    return error


def openai_tool(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "function", "function": {"name": "f", "parameters": schema}}


@pytest.mark.parametrize("schema", [BAD_PATTERN, NOT_A_SCHEMA])
def test_a_bad_tool_schema_is_a_400_on_both_faces(
    client: FlaskClient, engine: FakeEngine, schema: dict[str, Any]
) -> None:
    tool = {"name": "f", "input_schema": schema}
    assert "input_schema" in anthropic(client, tools=[tool])["message"]
    error = openai(client, tools=[openai_tool(schema)])
    assert error["param"] == "tools.0.function.parameters"
    assert engine.requests == []  # refused before the engine saw it


@pytest.mark.parametrize("schema", [BAD_PATTERN, NOT_A_SCHEMA])
def test_a_bad_output_schema_is_a_400_on_both_faces(
    client: FlaskClient, schema: dict[str, Any]
) -> None:
    output_config = {"format": {"type": "json_schema", "schema": schema}}
    assert "schema" in anthropic(client, output_config=output_config)["message"]
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": schema},
    }
    error = openai(client, response_format=response_format)
    assert error["param"] == "response_format.json_schema.schema"


def test_a_grammar_error_from_the_engine_is_a_400_too(
    client: FlaskClient, engine: FakeEngine
) -> None:
    engine.fails = GrammarError("lookbehind is not supported")
    assert "lookbehind" in anthropic(client)["message"]
    assert "lookbehind" in openai(client)["message"]


def test_good_schemas_still_pass(client: FlaskClient) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    tools = [openai_tool(schema)]
    body = {"model": "m", "messages": USER, "tools": tools}
    response = client.post("/v1/chat/completions", json=body, headers=BEARER)
    assert response.status_code == 200

"""What a request body may be: its type, size and depth, and the fields the
Messages API refuses (checked on a scripted engine)."""

from __future__ import annotations

import json

import pytest
from flask import Flask
from flask.testing import FlaskClient
from test_http import OK_BODY, assert_error, post

from fake_engine import KEY
from pensieve.limits import (
    MINIMUM_BODY_BYTES,
    body_limit,
    json_depth,
    size_body_limit,
)

CHAT_BODY = {"model": "m", "messages": [{"role": "user", "content": "Hi"}]}


@pytest.mark.parametrize(
    "text, depth",
    [
        ("", 0),
        ('"[{"', 0),
        ("[]", 1),
        ('{"a": [1, {"b": "[[[["}]}', 3),
        ('{"a": "\\\\", "b": [[1]]}', 3),  # an escaped backslash ends no string
        ('{"a": "\\"[[", "b": 1}', 1),  # an escaped quote does not end one
        ("[" * 50 + "]" * 50, 50),
    ],
)
def test_json_depth_counts_brackets_outside_strings(text: str, depth: int) -> None:
    assert json_depth(text.encode()) == depth


def test_the_body_limit_follows_the_window() -> None:
    assert body_limit(4096) == MINIMUM_BODY_BYTES
    assert body_limit(131_072) == 128 * 131_072
    auto = {"MAX_REQUEST_BYTES": None, "MAX_CONTENT_LENGTH": 1}
    size_body_limit(auto, 262_144)
    assert auto["MAX_CONTENT_LENGTH"] == 32 * 1024 * 1024
    chosen = {"MAX_REQUEST_BYTES": 5000, "MAX_CONTENT_LENGTH": 5000}
    size_body_limit(chosen, 262_144)
    assert chosen["MAX_CONTENT_LENGTH"] == 5000  # the setting wins


def test_the_default_body_limit_waits_for_the_model(app: Flask) -> None:
    assert app.config["MAX_REQUEST_BYTES"] is None  # "auto"
    assert app.config["MAX_CONTENT_LENGTH"] == 32 * 1024 * 1024


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded"]
)
@pytest.mark.parametrize("path", ["/v1/messages", "/v1/chat/completions"])
def test_a_body_that_is_not_declared_json_is_a_400(
    client: FlaskClient, path: str, content_type: str
) -> None:
    body = OK_BODY if path == "/v1/messages" else CHAT_BODY
    response = client.post(
        path,
        data=json.dumps(body),
        headers={"x-api-key": KEY, "content-type": content_type},
    )
    assert response.status_code == 400
    text = response.get_data(as_text=True)
    assert f"Content-Type must be application/json; got {content_type}" in text
    if path == "/v1/messages":
        assert response.get_json()["type"] == "error"
    else:
        assert response.get_json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    "content_type", [None, "application/json; charset=utf-8", "application/x+json"]
)
def test_json_types_and_no_type_are_read_as_json(
    client: FlaskClient, content_type: str | None
) -> None:
    headers = {"x-api-key": KEY}
    if content_type:
        headers["content-type"] = content_type
    response = client.post("/v1/messages", data=json.dumps(OK_BODY), headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)


@pytest.mark.parametrize("content", [[], "", [{"type": "text", "text": ""}]])
def test_an_empty_message_is_a_400_but_a_final_assistant_prefill(
    client: FlaskClient, content: object
) -> None:
    empty_user = {**OK_BODY, "messages": [{"role": "user", "content": content}]}
    message = assert_error(post(client, empty_user), 400, "invalid_request_error")
    assert message.startswith("messages.0.content: must not be empty")
    prefill = {"role": "assistant", "content": content}
    ends_empty = {**OK_BODY, "messages": [*OK_BODY["messages"], prefill]}
    assert post(client, ends_empty).status_code == 200
    # Claude Code's shape: its requests end with an empty system message.
    system = {"role": "system", "content": content}
    claude_code = {**OK_BODY, "messages": [*OK_BODY["messages"], system]}
    assert post(client, claude_code).status_code == 200


def test_an_empty_stop_sequence_is_a_400(client: FlaskClient) -> None:
    body = {**OK_BODY, "stop_sequences": ["END", ""]}
    message = assert_error(post(client, body), 400, "invalid_request_error")
    assert message == "stop_sequences.1: must not be empty"


def test_tool_choice_any_needs_tools(client: FlaskClient) -> None:
    body = {**OK_BODY, "tool_choice": {"type": "any"}}
    message = assert_error(post(client, body), 400, "invalid_request_error")
    assert message == 'tool_choice.type: "any" needs tools'
    tool = {"name": "get", "input_schema": {"type": "object"}}
    assert post(client, {**body, "tools": [tool]}).status_code == 200


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/chat/completions"])
def test_a_model_id_past_256_characters_is_a_400(
    client: FlaskClient, path: str
) -> None:
    body = {**(OK_BODY if path == "/v1/messages" else CHAT_BODY), "model": "m" * 10**6}
    response = client.post(path, json=body, headers={"x-api-key": KEY})
    assert response.status_code == 400
    assert "model" in response.get_data(as_text=True)
    ok = {**body, "model": "m" * 256}
    assert client.post(path, json=ok, headers={"x-api-key": KEY}).status_code == 200


@pytest.mark.parametrize("kind", [["text"], {"a": 1}, 5, None])
@pytest.mark.parametrize("path", ["/v1/messages", "/v1/chat/completions"])
def test_a_content_block_type_that_is_not_a_string_is_a_400(
    client: FlaskClient, path: str, kind: object
) -> None:
    turn = {"role": "user", "content": [{"type": kind, "text": "Hi"}]}
    body = {**(OK_BODY if path == "/v1/messages" else CHAT_BODY), "messages": [turn]}
    response = client.post(path, json=body, headers={"x-api-key": KEY})
    assert response.status_code == 400, response.get_data(as_text=True)
    assert "messages.0.content.0.type: must be a string" in response.get_data(
        as_text=True
    )

"""The HTTP layer on a scripted engine: auth, errors, validation, SSE framing."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from fake_engine import KEY, FakeEngine, script
from pensieve.engine import PromptTooLong
from pensieve.sse import ServerSentEvent

OK_BODY = {
    "model": "claude-sonnet-5-5",
    "max_tokens": 10,
    "messages": [{"role": "user", "content": "Hi"}],
}


def post(client: FlaskClient, body: Any, **headers: str) -> Any:
    return client.post("/v1/messages", json=body, headers={"x-api-key": KEY, **headers})


def assert_error(response: Any, status: int, error_type: str) -> str:
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert body["type"] == "error"
    assert body["error"]["type"] == error_type
    assert response.headers["request-id"].startswith("req_")
    return body["error"]["message"]


def test_message_from_engine_events(client: FlaskClient) -> None:
    body = post(client, OK_BODY).get_json()
    assert body["content"] == [{"type": "text", "text": "Hello!"}]
    assert body["model"] == "fake-model"
    assert body["stop_reason"] == "end_turn"
    assert body["usage"] == {
        "input_tokens": 2,
        "output_tokens": 3,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }


def test_keepalives_become_pings_in_the_stream(
    client: FlaskClient, engine: FakeEngine
) -> None:
    engine.events = script(["Hel", "lo", "!"], keepalives=2)
    text = post(client, {**OK_BODY, "stream": True}).get_data(as_text=True)
    assert text.count("event: ping\n") == 3  # one after content_block_start
    assert text.endswith('event: message_stop\ndata: {"type":"message_stop"}\n\n')


def test_sse_frame_bytes() -> None:
    frame = ServerSentEvent("content_block_delta", {"text": "é\n"})
    assert frame.encode() == 'event: content_block_delta\ndata: {"text":"é\\n"}\n\n'


@pytest.mark.parametrize(
    "headers",
    [{}, {"x-api-key": "wrong"}, {"Authorization": "Bearer wrong"}],
)
def test_missing_or_wrong_key_is_401(client: FlaskClient, headers: dict) -> None:
    response = client.post("/v1/messages", json=OK_BODY, headers=headers)
    assert_error(response, 401, "authentication_error")


@pytest.mark.parametrize(
    ("headers", "named", "not_named"),
    [
        ({"x-api-key": "wrong"}, "x-api-key", "Bearer"),
        ({"Authorization": "Bearer wrong"}, "Bearer", "x-api-key"),
    ],
)
def test_wrong_key_message_names_the_header_sent(
    client: FlaskClient, headers: dict, named: str, not_named: str
) -> None:
    response = client.post("/v1/messages", json=OK_BODY, headers=headers)
    message = assert_error(response, 401, "authentication_error")
    assert message.startswith("invalid ")
    assert named in message and not_named not in message


def test_bearer_key_and_beta_query(client: FlaskClient) -> None:
    response = client.post(
        "/v1/messages?beta=true",
        json=OK_BODY,
        headers={"Authorization": f"Bearer {KEY}", "anthropic-beta": "x"},
    )
    assert response.status_code == 200


def test_health_needs_no_key_and_shows_only_its_status_without_one(
    client: FlaskClient,
) -> None:
    response = client.get("/health")
    assert response.status_code == 200 and response.get_json() == {"status": "ready"}
    wrong = client.get("/health", headers={"x-api-key": "guess"}).get_json()
    assert wrong == {"status": "ready"}  # no path, no request id, no model
    body = client.get("/health", headers={"x-api-key": KEY}).get_json()
    assert body["status"] == "ready" and body["model"] == "fake-model"
    assert "model_path" in body and body["running"] == []
    assert body["batch"] == {"max": 1, "running": 0, "occupancy": 0.0}
    bearer = {"Authorization": f"Bearer {KEY}"}
    assert client.get("/health", headers=bearer).get_json()["model"] == "fake-model"
    assert client.head("/").status_code == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**OK_BODY, "max_tokens": 0}, "max_tokens"),
        ({**OK_BODY, "max_tokens": "10"}, "max_tokens"),
        ({k: v for k, v in OK_BODY.items() if k != "max_tokens"}, "max_tokens"),
        ({**OK_BODY, "messages": []}, "messages"),
        (
            {**OK_BODY, "messages": [{"role": "robot", "content": "x"}]},
            "messages.0.role",
        ),
        (
            {**OK_BODY, "messages": [{"role": "user", "content": 5}]},
            "messages.0.content",
        ),
        (
            {**OK_BODY, "messages": [{"role": "user", "content": [{"type": "text"}]}]},
            "messages.0.content.0.text",
        ),
        (
            {**OK_BODY, "messages": [{"role": "user", "content": [{"type": "image"}]}]},
            "messages.0.content.0.type",
        ),
        ({**OK_BODY, "temperature": 1.5}, "temperature"),
        ({**OK_BODY, "top_k": -1}, "top_k"),
        ({**OK_BODY, "stream": "yes"}, "stream"),
        ({**OK_BODY, "stream": 1}, "stream"),
        ({**OK_BODY, "stop_sequences": "END"}, "stop_sequences"),
        ({**OK_BODY, "system": 7}, "system"),
        ({**OK_BODY, "model": ""}, "model"),
    ],
)
def test_schema_violations_name_the_field(
    client: FlaskClient, body: dict, field: str
) -> None:
    message = assert_error(post(client, body), 400, "invalid_request_error")
    assert message.startswith(f"{field}:"), message


def test_unknown_fields_are_ignored(client: FlaskClient) -> None:
    body = {**OK_BODY, "some_future_field": {"x": 1}, "metadata": {"user_id": "u"}}
    assert post(client, body).status_code == 200


@pytest.mark.parametrize("raw", ["{not json", "[1, 2]", '"text"'])
def test_malformed_bodies(client: FlaskClient, raw: str) -> None:
    response = client.post(
        "/v1/messages",
        data=raw,
        content_type="application/json",
        headers={"x-api-key": KEY},
    )
    assert_error(response, 400, "invalid_request_error")


def test_unknown_route_and_wrong_method(client: FlaskClient) -> None:
    assert_error(
        client.get("/v1/nothing", headers={"x-api-key": KEY}), 404, "not_found_error"
    )
    assert_error(
        client.get("/v1/messages", headers={"x-api-key": KEY}),
        405,
        "invalid_request_error",
    )


def test_prompt_too_long_uses_anthropic_wording(
    client: FlaskClient, engine: FakeEngine
) -> None:
    engine.fails = PromptTooLong(100, 63)
    body = {**OK_BODY, "messages": [{"role": "user", "content": "x" * 100}]}
    message = assert_error(post(client, body), 400, "invalid_request_error")
    assert message == "prompt is too long: 100 tokens > 63 maximum"


def test_a_cut_off_answer_keeps_its_stop_reason_and_usage(
    client: FlaskClient, engine: FakeEngine
) -> None:
    engine.events = script(["a"] * 4, "max_tokens")
    message = post(client, {**OK_BODY, "max_tokens": 4}).get_json()
    assert engine.request.sampling.max_tokens == 4
    assert message["stop_reason"] == "max_tokens"
    assert message["usage"]["output_tokens"] == 4


def test_system_and_consecutive_turns_are_merged(
    client: FlaskClient, engine: FakeEngine
) -> None:
    body = {
        **OK_BODY,
        "system": [
            {
                "type": "text",
                "text": "Be brief.",
                "cache_control": {"type": "ephemeral"},
            }
        ],
        "messages": [
            {"role": "user", "content": "a"},
            {"role": "user", "content": [{"type": "text", "text": "b"}]},
        ],
    }
    assert post(client, body).status_code == 200
    assert [(m.role, m.content) for m in engine.request.messages] == [
        ("system", "Be brief."),
        ("user", "a\n\nb"),
    ]


def test_server_keeps_serving_after_bad_requests(client: FlaskClient) -> None:
    for body in ({}, {"messages": 1}, {**OK_BODY, "max_tokens": -5}):
        assert post(client, body).status_code == 400
    assert post(client, OK_BODY).status_code == 200


def test_internal_errors_hide_the_stack_trace(
    client: FlaskClient, engine: FakeEngine
) -> None:
    engine.fails = RuntimeError("secret detail")
    message = assert_error(post(client, OK_BODY), 500, "api_error")
    assert "secret" not in message


def test_error_after_stream_start_is_an_error_event(
    client: FlaskClient, engine: FakeEngine
) -> None:
    engine.events = [RuntimeError("boom")]
    text = post(client, {**OK_BODY, "stream": True}).get_data(as_text=True)
    assert text.startswith("event: message_start\n")
    assert text.endswith(
        'event: error\ndata: {"type":"error","error":{"type":"api_error",'
        '"message":"internal server error"}}\n\n'
    )


TOOL = {
    "name": "get_weather",
    "description": "Weather",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}
CLAUDE_CODE_FIELDS = {
    "metadata": {"user_id": "user_abc"},
    "tools": [TOOL, {"type": "web_search_20250305", "name": "web_search"}],
    "tool_choice": {"type": "auto", "disable_parallel_tool_use": False},
    "thinking": {"type": "enabled", "budget_tokens": 1024},
    "context_management": {"edits": [{"type": "clear_tool_uses_20250919"}]},
    "output_config": {"effort": "high"},
    "service_tier": "auto",
    "temperature": 1,
    "top_p": 0.9,
    "top_k": 40,
    "system": [
        {"type": "text", "text": "x-anthropic-billing-header: cc_version=1; cch=2"},
        {
            "type": "text",
            "text": "You are Claude Code.",
            "cache_control": {"type": "ephemeral"},
        },
    ],
}


def test_every_messages_api_field_is_accepted(
    client: FlaskClient, engine: FakeEngine
) -> None:
    body = {
        **OK_BODY,
        **CLAUDE_CODE_FIELDS,
        "max_tokens": 2000,
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "Use the tool.", "signature": "s"},
                    {"type": "redacted_thinking", "data": "abc"},
                    {"type": "text", "text": "Let me check."},
                    {
                        "type": "tool_use",
                        "id": "toolu_1",
                        "name": "get_weather",
                        "input": {"city": "Paris"},
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_1",
                        "content": [{"type": "text", "text": "Sunny"}],
                        "is_error": False,
                    },
                    {
                        "type": "text",
                        "text": "Thanks",
                        "cache_control": {"type": "ephemeral"},
                    },
                ],
            },
            {"role": "system", "content": "Reminder."},
            {"role": "user", "content": "More?"},
        ],
    }
    response = post(client, body, **{"anthropic-beta": "claude-code-20250219"})
    assert response.status_code == 200, response.get_data(as_text=True)
    seen = engine.request.messages
    roles = [(m.role, m.content) for m in seen]
    assert roles[0][0] == "system" and "You are Claude Code." in roles[0][1]
    assert roles[1] == ("user", "Weather in Paris?")
    assert roles[2] == ("assistant", "Let me check.")  # thinking is not fed back
    assert seen[2].tool_calls[0].input == {"city": "Paris"}
    assert (seen[3].role, seen[3].tool_call_id) == ("tool", "toolu_1")
    assert [t.name for t in engine.request.tools] == ["get_weather", "web_search"]


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"tools": [{"name": "x"}]}, "tools.0.input_schema"),
        (
            {"tools": [{"name": "bad name!", "input_schema": {"type": "object"}}]},
            "tools.0.name",
        ),
        (
            {"tools": [{"name": "t", "input_schema": {"type": "array"}}]},
            "tools.0.input_schema",
        ),
        ({"tool_choice": {"type": "sometimes"}}, "tool_choice.type"),
        ({"tool_choice": {"type": "tool"}}, "tool_choice.name"),
        (
            {"tools": [TOOL], "tool_choice": {"type": "tool", "name": "nope"}},
            "tool_choice.name",
        ),
        ({"thinking": {"type": "enabled"}}, "thinking.budget_tokens"),
        (
            {"thinking": {"type": "enabled", "budget_tokens": 100}},
            "thinking.budget_tokens",
        ),
        (
            {"thinking": {"type": "enabled", "budget_tokens": 2048}},
            "thinking.budget_tokens",
        ),
        ({"thinking": {"type": "maybe"}}, "thinking.type"),
        ({"metadata": {"user_id": 5}}, "metadata.user_id"),
        ({"service_tier": "premium"}, "service_tier"),
        ({"output_config": {"format": {"type": "xml"}}}, "output_config.format.type"),
        ({"temperature": "0.5"}, "temperature"),
        ({"top_p": True}, "top_p"),
        ({"max_tokens": 1.5}, "max_tokens"),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "image", "source": {}}]}
                ]
            },
            "messages.0.content.0.type",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "hologram"}]}]},
            "messages.0.content.0.type",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "tool_use", "id": "t"}]}
                ]
            },
            "messages.0.content.0.name",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "tool_result"}]}]},
            "messages.0.content.0.tool_use_id",
        ),
        (
            {"system": [{"type": "tool_use", "id": "t", "name": "n", "input": {}}]},
            "system.0.type",
        ),
    ],
)
def test_claude_code_fields_are_validated_strictly(
    client: FlaskClient, extra: dict, field: str
) -> None:
    message = assert_error(
        post(client, {**OK_BODY, **extra}), 400, "invalid_request_error"
    )
    assert message.startswith(f"{field}:"), message


def test_image_gets_a_clear_text_only_message(client: FlaskClient) -> None:
    body = {
        **OK_BODY,
        "messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}],
    }
    message = assert_error(post(client, body), 400, "invalid_request_error")
    assert "reads text only" in message


def test_count_tokens_uses_the_same_rendering(client: FlaskClient) -> None:
    body = {k: v for k, v in OK_BODY.items() if k != "max_tokens"}
    response = client.post(
        "/v1/messages/count_tokens", json=body, headers={"x-api-key": KEY}
    )
    assert response.get_json() == {"input_tokens": 2}
    bad = client.post(
        "/v1/messages/count_tokens", json={"model": "m"}, headers={"x-api-key": KEY}
    )
    assert_error(bad, 400, "invalid_request_error")


def test_models_list_and_retrieve(client: FlaskClient) -> None:
    listing = client.get("/v1/models", headers={"x-api-key": KEY}).get_json()
    assert listing["data"][0]["id"] == "fake-model"
    assert listing["first_id"] == "fake-model" and listing["has_more"] is False
    assert listing["last_id"] == listing["data"][-1]["id"]
    one = client.get(
        "/v1/models/claude-opus-5-5", headers={"x-api-key": KEY}
    ).get_json()
    assert set(one) == {"type", "id", "display_name", "created_at"}
    assert one["id"] == "claude-opus-5-5" and "fake-model" in one["display_name"]
    anthropic_client = {"anthropic-version": "2023-06-01"}
    assert_error(
        client.get("/v1/models", headers=anthropic_client), 401, "authentication_error"
    )


def test_body_over_the_limit_is_413(app: Flask) -> None:
    app.config["MAX_CONTENT_LENGTH"] = 1000
    response = post(app.test_client(), {**OK_BODY, "pad": "x" * 2000})
    message = assert_error(response, 413, "request_too_large")
    assert message == "request body exceeds 1000 bytes"


# --- bodies that once got a 500 (hardening) --------------------------------


def raw_post(client: FlaskClient, path: str, raw: bytes, **headers: str) -> Any:
    return client.post(
        path,
        data=raw,
        headers={"x-api-key": KEY, "content-type": "application/json", **headers},
    )


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/chat/completions"])
def test_json_nested_past_the_parser_is_a_400(client: FlaskClient, path: str) -> None:
    response = raw_post(client, path, b"[" * 100_000 + b"]" * 100_000)
    assert response.status_code == 400
    assert "nested too deeply" in response.get_data(as_text=True)
    assert post(client, OK_BODY).status_code == 200  # and it serves on


def test_a_body_nested_past_the_depth_setting_is_a_400_before_parsing(
    app: Flask,
) -> None:
    app.config["MAX_JSON_DEPTH"] = 6
    client = app.test_client()
    turn = {"role": "user", "content": [{"type": "text", "text": "[[[[{{{{"}]}
    assert post(client, {**OK_BODY, "messages": [turn]}).status_code == 200  # 5 deep
    nested = {**OK_BODY, "metadata": {"a": {"b": [[{"c": [1]}]]}}}  # 7 deep
    message = assert_error(post(client, nested), 400, "invalid_request_error")
    assert message == "request body is nested too deeply (more than 6 levels)"


def test_a_schema_nested_past_the_grammar_builder_is_a_400(app: Flask) -> None:
    app.config["MAX_JSON_DEPTH"] = 10_000  # past the body check: the schema's own
    client = app.test_client()
    depth = 450  # 900 levels of JSON: the parser takes it, the checks recurse
    schema = '{"type": "object", "properties": {"a": ' * depth + '{"type": "string"}'
    schema += "}}" * depth
    raw = (
        '{"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": '
        f'"Hi"}}], "tools": [{{"name": "deep", "input_schema": {schema}}}]}}'
    )
    message = assert_error(
        raw_post(client, "/v1/messages", raw.encode()), 400, "invalid_request_error"
    )
    assert "tools.0.input_schema" in message and "nested too deeply" in message


def test_a_lone_surrogate_is_a_400_naming_where_a_pair_is_text(
    client: FlaskClient,
) -> None:
    def body(text: str) -> bytes:
        turn = {"role": "user", "content": text}
        return json.dumps({**OK_BODY, "messages": [turn]}).encode()

    lone = body("a\ud800b")
    message = assert_error(
        raw_post(client, "/v1/messages", lone), 400, "invalid_request_error"
    )
    assert message.startswith("messages.0.content: contains a lone UTF-16 surrogate")
    assert raw_post(client, "/v1/messages", body("a😀b")).status_code == 200


def test_a_chunked_body_over_the_limit_is_413(app: Flask) -> None:
    app.config["MAX_CONTENT_LENGTH"] = 1000
    body = json.dumps({**OK_BODY, "pad": "x" * 2000}).encode()
    response = app.test_client().post(
        "/v1/messages",
        input_stream=io.BytesIO(body),
        headers={
            "x-api-key": KEY,
            "content-type": "application/json",
            "transfer-encoding": "chunked",
        },
        environ_overrides={"wsgi.input_terminated": True},  # as gunicorn's
    )
    message = assert_error(response, 413, "request_too_large")
    assert message == "request body exceeds 1000 bytes"

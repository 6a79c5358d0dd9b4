"""The OpenAI face on a scripted engine: shapes, streams, errors, models."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from fake_engine import FakeEngine, script
from openai_helpers import (
    BEARER,
    CHAT,
    COMPLETION,
    KEY,
    assert_openai_error,
    chat,
    complete,
    data_frames,
)
from pensieve.engine import (
    EngineBusy,
    EngineUnavailable,
    Finished,
    PromptTooLong,
    Usage,
)
from pensieve.sse import Comment, DataEvent, Done


def test_chat_completion_has_the_exact_shape(client: FlaskClient) -> None:
    body = chat(client, CHAT).get_json()
    assert list(body) == [
        "id",
        "object",
        "created",
        "model",
        "system_fingerprint",
        "choices",
        "usage",
    ]
    assert body["id"].startswith("chatcmpl-") and body["object"] == "chat.completion"
    assert isinstance(body["created"], int) and body["model"] == "fake-model"
    assert body["choices"] == [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Hello!",
                "refusal": None,
                "annotations": [],
            },
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]
    assert body["usage"]["prompt_tokens"] == 2
    assert body["usage"]["completion_tokens"] == 3
    assert body["usage"]["total_tokens"] == 5


def test_usage_counts_cached_tokens_in_the_prompt(
    client: FlaskClient, engine: FakeEngine
) -> None:
    engine.events = [Finished("end_turn", None, Usage(5, 3, cache_read_input_tokens=7))]
    usage = chat(client, CHAT).get_json()["usage"]
    assert usage == {
        "prompt_tokens": 12,
        "completion_tokens": 3,
        "total_tokens": 15,
        "prompt_tokens_details": {"cached_tokens": 7, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


@pytest.mark.parametrize(
    ("limits", "max_tokens"),
    [
        ({"max_tokens": 2}, 2),
        ({"max_completion_tokens": 1, "max_tokens": 5}, 1),
        ({"max_tokens": None}, None),
        ({}, None),  # no limit: what fits in the context window
    ],
)
def test_token_limits_reach_the_engine(
    client: FlaskClient, engine: FakeEngine, limits: dict, max_tokens: int | None
) -> None:
    assert chat(client, {**CHAT, **limits}).status_code == 200
    assert engine.request.sampling.max_tokens == max_tokens


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
    ],
)
def test_finish_reasons(
    client: FlaskClient, engine: FakeEngine, stop_reason: str, finish_reason: str
) -> None:
    engine.events = script(["Hel"], stop_reason)
    [choice] = chat(client, CHAT).get_json()["choices"]
    assert (choice["message"]["content"], choice["finish_reason"]) == (
        "Hel",
        finish_reason,
    )


def test_stream_sends_data_only_chunks_ending_with_done(client: FlaskClient) -> None:
    response = chat(client, {**CHAT, "stream": True})
    assert response.headers["content-type"].startswith("text/event-stream")
    text = response.get_data(as_text=True)
    assert "event:" not in text and text.endswith("data: [DONE]\n\n")
    *chunks, done = data_frames(text)
    assert done == "[DONE]"
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert len({c["id"] for c in chunks}) == 1 and chunks[0]["id"].startswith(
        "chatcmpl-"
    )
    assert all("usage" not in c for c in chunks)
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert deltas[0] == {"role": "assistant", "content": "", "refusal": None}
    assert [d["content"] for d in deltas[1:-1]] == ["Hel", "lo", "!"]
    assert deltas[-1] == {}
    reasons = [c["choices"][0]["finish_reason"] for c in chunks]
    assert reasons == [None, None, None, None, "stop"]


def test_stream_include_usage_adds_a_usage_chunk(client: FlaskClient) -> None:
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    *chunks, done = data_frames(chat(client, body).get_data(as_text=True))
    assert done == "[DONE]"
    assert all(c["usage"] is None for c in chunks[:-1])
    assert chunks[-1]["choices"] == []
    usage = chunks[-1]["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (2, 3)


def test_keepalives_are_sse_comments(client: FlaskClient, engine: FakeEngine) -> None:
    engine.events = script(["Hel", "lo", "!"], keepalives=2)
    text = chat(client, {**CHAT, "stream": True}).get_data(as_text=True)
    assert text.count(": keep-alive\n\n") == 2
    assert "ping" not in text


def test_error_after_stream_start_is_an_error_chunk(
    client: FlaskClient, engine: FakeEngine
) -> None:
    engine.events = [RuntimeError("secret detail")]
    text = chat(client, {**CHAT, "stream": True}).get_data(as_text=True)
    assert text.endswith(
        'data: {"error":{"message":"internal server error","type":"server_error",'
        '"param":null,"code":null}}\n\n'
    )
    assert "secret" not in text and "[DONE]" not in text


def test_openai_frame_bytes() -> None:
    assert DataEvent({"text": "é\n"}).encode() == 'data: {"text":"é\\n"}\n\n'
    assert Comment("keep-alive").encode() == ": keep-alive\n\n"
    assert Done().encode() == "data: [DONE]\n\n"


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}],
)
def test_missing_or_wrong_key_is_401_in_the_openai_envelope(
    client: FlaskClient, headers: dict
) -> None:
    error = assert_openai_error(chat(client, CHAT, headers), 401, "invalid_api_key")
    assert error["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("headers", "named", "not_named"),
    [
        ({"Authorization": "Bearer wrong"}, "Bearer", "x-api-key"),
        ({"x-api-key": "wrong"}, "x-api-key", "Bearer"),
    ],
)
def test_wrong_key_message_names_the_header_sent(
    client: FlaskClient, headers: dict, named: str, not_named: str
) -> None:
    error = assert_openai_error(chat(client, CHAT, headers), 401, "invalid_api_key")
    assert error["message"].startswith("invalid ")
    assert named in error["message"] and not_named not in error["message"]


def test_x_api_key_works_and_the_route_picks_the_envelope(client: FlaskClient) -> None:
    assert chat(client, CHAT, {"x-api-key": KEY}).status_code == 200
    response = chat(client, {**CHAT, "n": 3}, {"x-api-key": KEY})
    assert_openai_error(response, 400)


def test_prompt_too_long_keeps_the_wording_and_sets_the_code(
    client: FlaskClient, engine: FakeEngine
) -> None:
    engine.fails = PromptTooLong(100, 63)
    body = {**CHAT, "messages": [{"role": "user", "content": "x" * 100}]}
    error = assert_openai_error(chat(client, body), 400, "context_length_exceeded")
    assert error["message"] == "prompt is too long: 100 tokens > 63 maximum"
    assert error["type"] == "invalid_request_error"


def test_busy_model_is_503_for_openai_and_529_for_anthropic(
    client: FlaskClient, engine: FakeEngine
) -> None:
    engine.fails = EngineBusy(
        "the model is busy: 4 requests are waiting", retry_after=3
    )
    response = chat(client, CHAT)
    error = assert_openai_error(response, 503, "overloaded")
    assert error["type"] == "server_error"
    assert response.headers["retry-after"] == "3"
    anthropic = client.post(
        "/v1/messages",
        json={**CHAT, "max_tokens": 5},
        headers={"x-api-key": KEY},
    )
    assert anthropic.status_code == 529
    assert anthropic.get_json()["error"]["type"] == "overloaded_error"


def test_unavailable_model_and_internal_errors(
    client: FlaskClient, engine: FakeEngine
) -> None:
    engine.fails = EngineUnavailable("no weights")
    assert assert_openai_error(chat(client, CHAT), 503)["type"] == "server_error"

    engine.fails = RuntimeError("secret detail")
    error = assert_openai_error(chat(client, CHAT), 500)
    assert error["type"] == "server_error" and "secret" not in error["message"]


def test_unknown_routes_methods_and_bodies(client: FlaskClient) -> None:
    assert_openai_error(client.get("/v1/embeddings", headers=BEARER), 404)
    assert_openai_error(client.get("/v1/chat/completions", headers=BEARER), 405)
    for raw in ("{not json", "[1, 2]"):
        response = client.post(
            "/v1/chat/completions",
            data=raw,
            content_type="application/json",
            headers=BEARER,
        )
        assert_openai_error(response, 400)


def test_anthropic_errors_keep_their_envelope(client: FlaskClient) -> None:
    response = client.post(
        "/v1/messages", json={"model": "m"}, headers={"Authorization": f"Bearer {KEY}"}
    )
    body = response.get_json()
    assert response.status_code == 400 and set(body) == {"type", "error"}
    assert set(body["error"]) == {"type", "message"}


def test_server_keeps_serving_after_bad_requests(client: FlaskClient) -> None:
    for body in ({}, {"messages": 1}, {**CHAT, "n": 5}, {**CHAT, "max_tokens": -5}):
        assert chat(client, body).status_code == 400
    assert complete(client, {"prompt": ["a", "b"], "model": "m"}).status_code == 400
    assert chat(client, CHAT).status_code == 200
    assert complete(client, COMPLETION).status_code == 200


def test_text_completion_has_the_exact_shape(
    client: FlaskClient, engine: FakeEngine
) -> None:
    engine.events = script(["Hel", "lo", "!"], usage=Usage(4, 3))
    body = complete(client, COMPLETION).get_json()
    assert engine.request.text == "Once"
    assert body["id"].startswith("cmpl-") and body["object"] == "text_completion"
    assert body["model"] == "fake-model" and isinstance(body["created"], int)
    assert body["choices"] == [
        {"text": "Hello!", "index": 0, "logprobs": None, "finish_reason": "stop"}
    ]
    assert body["usage"]["prompt_tokens"] == 4
    assert body["usage"]["total_tokens"] == 7


def test_text_completion_defaults_to_16_tokens_and_echoes(
    client: FlaskClient, engine: FakeEngine
) -> None:
    engine.events = script(["a"] * 16, "max_tokens")
    [choice] = complete(client, {**COMPLETION, "prompt": ["Go"]}).get_json()["choices"]
    assert engine.request.sampling.max_tokens == 16
    assert (choice["text"], choice["finish_reason"]) == ("a" * 16, "length")
    engine.events = script(["a"] * 2, "max_tokens")
    echoed = complete(client, {**COMPLETION, "echo": True, "max_tokens": 2})
    assert engine.request.sampling.max_tokens == 2
    assert echoed.get_json()["choices"][0]["text"] == "Onceaa"


def test_text_completion_stream(client: FlaskClient) -> None:
    body = {
        **COMPLETION,
        "stream": True,
        "echo": True,
        "stream_options": {"include_usage": True},
    }
    *chunks, done = data_frames(complete(client, body).get_data(as_text=True))
    assert done == "[DONE]"
    assert {c["object"] for c in chunks} == {"text_completion"}
    texts = [c["choices"][0]["text"] for c in chunks[:-1]]
    assert texts == ["Once", "Hel", "lo", "!", ""]
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 3


def test_models_answer_in_the_shape_of_the_client(client: FlaskClient) -> None:
    listing = client.get("/v1/models", headers=BEARER).get_json()
    assert set(listing) == {"object", "data"} and listing["object"] == "list"
    first = listing["data"][0]
    assert list(first) == ["id", "object", "created", "owned_by"]
    assert first["id"] == "fake-model" and first["object"] == "model"
    assert isinstance(first["created"], int) and first["owned_by"] == "pensieve"
    one = client.get("/v1/models/gpt-4o", headers=BEARER).get_json()
    assert one["id"] == "gpt-4o" and one["object"] == "model"
    anthropic = client.get(
        "/v1/models", headers={**BEARER, "anthropic-version": "2023-06-01"}
    ).get_json()
    assert anthropic["first_id"] == "fake-model" and anthropic["data"][0]["type"]
    assert_openai_error(client.get("/v1/models"), 401, "invalid_api_key")

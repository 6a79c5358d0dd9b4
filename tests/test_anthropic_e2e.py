"""The Anthropic SDK against the real server: count_tokens, models, typed errors."""

from __future__ import annotations

from typing import Any

import anthropic
import pytest
import requests

from conftest import API_KEY, Server

WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Current weather for a city.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
SYSTEM_BLOCKS = [
    {"type": "text", "text": "You are terse."},
    {
        "type": "text",
        "text": "Answer in English.",
        "cache_control": {"type": "ephemeral"},
    },
]


@pytest.fixture(scope="module")
def client(server: Server) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.url, api_key=API_KEY, max_retries=0)


def test_count_tokens_equals_usage_input_tokens(client: anthropic.Anthropic) -> None:
    request: dict[str, Any] = {
        "model": "claude-sonnet-5-5",
        "system": SYSTEM_BLOCKS,
        "tools": [WEATHER_TOOL],
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": [
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
                        "content": "Sunny",
                    }
                ],
            },
        ],
    }
    counted = client.messages.count_tokens(**request)
    message = client.messages.create(
        **request, max_tokens=2, extra_body={"temperature": 0}
    )
    usage = message.usage
    # Anthropic's three prompt figures are disjoint: their sum is the prompt.
    created, read = usage.cache_creation_input_tokens, usage.cache_read_input_tokens
    assert counted.input_tokens == usage.input_tokens + (created or 0) + (read or 0)
    plain = client.messages.count_tokens(
        model="m", messages=[{"role": "user", "content": "Weather in Paris?"}]
    )
    assert plain.input_tokens < counted.input_tokens  # tools and system count


def test_models_list_and_retrieve(client: anthropic.Anthropic, server: Server) -> None:
    local_id = requests.get(
        f"{server.url}/health", timeout=5, headers={"x-api-key": API_KEY}
    ).json()["model"]
    page = client.models.list()
    ids = [model.id for model in page.data]
    assert ids[0] == local_id and "claude-sonnet-5-5" in ids
    assert page.first_id == ids[0] and page.last_id == ids[-1]
    model = client.models.retrieve("claude-opus-5-5")
    assert model.type == "model" and model.id == "claude-opus-5-5"
    assert local_id in model.display_name


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (
            lambda c: c.messages.create(model="m", max_tokens=0, messages=[]),
            anthropic.BadRequestError,
        ),
        (
            lambda c: c.post("/v1/nothing", cast_to=object, body={}),
            anthropic.NotFoundError,
        ),
        (
            lambda c: c.messages.create(
                model="m",
                max_tokens=5,
                messages=[{"role": "user", "content": "x" * 2_500_000}],
            ),
            anthropic.ContentTooLargeError,
        ),
        (
            lambda c: c.messages.create(
                model="m",
                max_tokens=5,
                messages=[
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "image",
                                "source": {
                                    "type": "base64",
                                    "media_type": "image/png",
                                    "data": "iVBORw0KGgo=",
                                },
                            }
                        ],
                    }
                ],
            ),
            anthropic.BadRequestError,
        ),
    ],
)
def test_sdk_raises_the_typed_exception(
    client: anthropic.Anthropic, call: Any, error: type[Exception]
) -> None:
    with pytest.raises(error) as caught:
        call(client)
    body = caught.value.body  # type: ignore[attr-defined]
    assert body["type"] == "error" and body["error"]["message"]


def test_prompt_too_long_is_the_exact_message(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(
            model="m",
            max_tokens=5,
            messages=[{"role": "user", "content": "hello " * 9000}],
        )
    message = caught.value.body["error"]["message"]  # type: ignore[index]
    assert message.startswith("prompt is too long: ")
    assert message.endswith(" tokens > 8191 maximum")


def test_count_tokens_counts_past_the_context_window(
    client: anthropic.Anthropic,
) -> None:
    """Claude Code counts a conversation before it compacts it: only
    generation refuses a prompt the window cannot hold."""
    long: Any = [{"role": "user", "content": "hello " * 9000}]
    short: Any = [{"role": "user", "content": "hello " * 10}]
    counted = client.messages.count_tokens(model="m", messages=long)
    assert counted.input_tokens > 9000  # the 8,192-token window holds less
    small = client.messages.count_tokens(model="m", messages=short)
    assert 10 < small.input_tokens < counted.input_tokens


BAD_REQUESTS = [
    (b"{not json", 400, "invalid_request_error"),
    (b'{"model": "m", "max_tokens": 5}', 400, "invalid_request_error"),
    (
        b'{"model": "m", "max_tokens": -1, "messages": '
        b'[{"role": "user", "content": "x"}]}',
        400,
        "invalid_request_error",
    ),
    (
        b'{"model": "m", "max_tokens": 5, "messages": '
        b'[{"role": "bot", "content": "x"}]}',
        400,
        "invalid_request_error",
    ),
    (
        b'{"model": "m", "max_tokens": 5, "stream": "yes", "messages": []}',
        400,
        "invalid_request_error",
    ),
]


def test_bad_inputs_get_errors_and_the_server_keeps_serving(
    server: Server, client: anthropic.Anthropic
) -> None:
    for raw, status, error_type in BAD_REQUESTS:
        response = requests.post(
            f"{server.url}/v1/messages",
            data=raw,
            timeout=30,
            headers={"x-api-key": API_KEY, "content-type": "application/json"},
        )
        assert response.status_code == status, (raw, response.text)
        assert response.json()["error"]["type"] == error_type
        assert response.headers["request-id"]
    assert (
        requests.delete(
            f"{server.url}/v1/messages", timeout=5, headers={"x-api-key": API_KEY}
        ).status_code
        == 405
    )
    assert requests.head(server.url, timeout=5).status_code == 200
    message = client.messages.create(
        model="m", max_tokens=3, messages=[{"role": "user", "content": "Hi"}]
    )
    assert message.usage.output_tokens > 0

"""Requests and checks shared by the OpenAI HTTP tests (on a scripted engine)."""

from __future__ import annotations

import json
from typing import Any

from flask.testing import FlaskClient

from fake_engine import KEY

BEARER = {"Authorization": f"Bearer {KEY}"}
CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}]}
COMPLETION = {"model": "gpt-3.5-turbo-instruct", "prompt": "Once"}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def chat(client: FlaskClient, body: Any, headers: dict | None = None) -> Any:
    return client.post(
        "/v1/chat/completions",
        json=body,
        headers=BEARER if headers is None else headers,
    )


def complete(client: FlaskClient, body: Any) -> Any:
    return client.post("/v1/completions", json=body, headers=BEARER)


def assert_openai_error(response: Any, status: int, code: str | None = None) -> dict:
    """The OpenAI envelope, exactly its four fields; returns the error object."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.headers["request-id"].startswith("req_")
    body = response.get_json()
    assert list(body) == ["error"]
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"] and error["code"] == code
    return error


def data_frames(text: str) -> list[Any]:
    """The `data:` payloads of an OpenAI stream, `[DONE]` as a string."""
    frames = [f for f in text.split("\n\n") if f and not f.startswith(":")]
    assert all(f.startswith("data: ") and "\n" not in f for f in frames), frames
    return [f[6:] if f == "data: [DONE]" else json.loads(f[6:]) for f in frames]

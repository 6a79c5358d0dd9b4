"""Reasoning on both faces (scripted engine): Anthropic thinking blocks with
signatures, OpenAI reasoning_content, count_tokens with a thinking field, and
a template that cannot render a conversation."""

from __future__ import annotations

import json
from typing import Any

from flask.testing import FlaskClient

from fake_engine import KEY, FakeEngine
from pensieve.engine import Finished, TextDelta, ThinkingDelta, Usage
from pensieve.engine.prompt import TemplateRenderError

HEADERS = {"x-api-key": KEY}
BODY = {
    "model": "m",
    "max_tokens": 2048,
    "messages": [{"role": "user", "content": "Hi"}],
    "thinking": {"type": "enabled", "budget_tokens": 1024},
}
SCRIPT = [
    ThinkingDelta("Let me "),
    ThinkingDelta("think."),
    TextDelta("Hello!"),
    Finished("end_turn", None, Usage(2, 5)),
]


def frames(text: str) -> list[dict[str, Any]]:
    return [
        json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")
    ]


def test_thinking_is_a_signed_block_before_the_answer(
    client: FlaskClient, engine: FakeEngine
) -> None:
    engine.events = SCRIPT
    message = client.post("/v1/messages", json=BODY, headers=HEADERS).get_json()
    thinking, text = message["content"]
    assert thinking["type"] == "thinking" and thinking["thinking"] == "Let me think."
    assert thinking["signature"]
    assert text == {"type": "text", "text": "Hello!"}
    assert engine.request.thinking is not None
    assert engine.request.thinking.budget_tokens == 1024


def test_streamed_thinking_has_deltas_then_a_signature(
    client: FlaskClient, engine: FakeEngine
) -> None:
    engine.events = SCRIPT
    body = {**BODY, "stream": True}
    data = frames(client.post("/v1/messages", json=body, headers=HEADERS).text)
    deltas = [d["delta"] for d in data if d["type"] == "content_block_delta"]
    kinds = [d["type"] for d in deltas]
    assert kinds == [
        "thinking_delta",
        "thinking_delta",
        "signature_delta",
        "text_delta",
    ]
    starts = [
        d["content_block"]["type"] for d in data if d["type"] == "content_block_start"
    ]
    assert starts == ["thinking", "text"]
    whole = client.post("/v1/messages", json=BODY, headers=HEADERS).get_json()
    assert deltas[2]["signature"] == whole["content"][0]["signature"]


def test_thinking_history_is_fed_back_as_reasoning(
    client: FlaskClient, engine: FakeEngine
) -> None:
    turns = [
        {"role": "user", "content": "Hi"},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "greet back", "signature": "s"},
                {"type": "text", "text": "Hello"},
            ],
        },
        {"role": "user", "content": "Again"},
    ]
    assert (
        client.post(
            "/v1/messages", json={**BODY, "messages": turns}, headers=HEADERS
        ).status_code
        == 200
    )
    assistant = engine.request.messages[1]
    assert (assistant.content, assistant.reasoning) == ("Hello", "greet back")


def test_count_tokens_takes_a_thinking_field(client: FlaskClient) -> None:
    body = {k: v for k, v in BODY.items() if k != "max_tokens"}
    response = client.post("/v1/messages/count_tokens", json=body, headers=HEADERS)
    assert response.status_code == 200, response.text
    assert response.get_json() == {"input_tokens": 2}
    bad = {**body, "thinking": {"type": "enabled", "budget_tokens": 5}}
    response = client.post("/v1/messages/count_tokens", json=bad, headers=HEADERS)
    assert response.status_code == 400


def test_openai_reasoning_content(client: FlaskClient, engine: FakeEngine) -> None:
    engine.events = SCRIPT
    body = {"model": "m", "messages": [{"role": "user", "content": "Hi"}]}
    bearer = {"Authorization": f"Bearer {KEY}"}
    answer = client.post("/v1/chat/completions", json=body, headers=bearer).get_json()
    message = answer["choices"][0]["message"]
    assert (message["reasoning_content"], message["content"]) == (
        "Let me think.",
        "Hello!",
    )
    streamed = client.post(
        "/v1/chat/completions", json={**body, "stream": True}, headers=bearer
    ).text
    chunks = [c for c in frames(streamed.replace("data: [DONE]", "")) if c["choices"]]
    reasoning = "".join(
        c["choices"][0]["delta"].get("reasoning_content", "") for c in chunks
    )
    assert reasoning == "Let me think."


def test_a_template_that_raises_is_a_400_and_the_server_serves_on(
    client: FlaskClient, engine: FakeEngine
) -> None:
    engine.fails = TemplateRenderError(
        "the model's chat template cannot render this conversation: "
        "roles must alternate"
    )
    response = client.post("/v1/messages", json=BODY, headers=HEADERS)
    assert response.status_code == 400
    assert "roles must alternate" in response.get_json()["error"]["message"]
    engine.fails = None
    assert client.post("/v1/messages", json=BODY, headers=HEADERS).status_code == 200

"""End to end: real gunicorn, the real bundled model, real HTTP and the SDK."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import anthropic
import pytest
import requests

from conftest import API_KEY, Server

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def post(server: Server, body: dict[str, Any], **kwargs: Any) -> requests.Response:
    return requests.post(
        f"{server.url}/v1/messages",
        json=body,
        headers={"x-api-key": API_KEY},
        timeout=300,
        **kwargs,
    )


def sse_events(response: requests.Response) -> list[tuple[str, dict[str, Any]]]:
    """Parse an SSE body into (event, data) pairs."""
    events = []
    for frame in response.text.split("\n\n"):
        if not frame.strip():
            continue
        lines = dict(line.split(": ", 1) for line in frame.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


@pytest.fixture(scope="module")
def client(server: Server) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.url, api_key=API_KEY, max_retries=0)


def test_non_streaming_message_has_the_exact_shape(server: Server) -> None:
    response = post(
        server,
        {
            "model": "claude-sonnet-5-5",
            "max_tokens": 24,
            "messages": QUESTION,
            "temperature": 0,
        },
    )
    assert response.status_code == 200, response.text
    assert response.headers["request-id"].startswith("req_")
    message = response.json()
    assert set(message) == {
        "id",
        "type",
        "role",
        "model",
        "content",
        "stop_reason",
        "stop_sequence",
        "usage",
    }
    assert message["id"].startswith("msg_")
    assert (message["type"], message["role"]) == ("message", "assistant")
    assert message["model"] == server_model_id(server)
    assert message["stop_reason"] in ("end_turn", "max_tokens")
    [block] = message["content"]
    assert block["type"] == "text" and block["text"].strip()
    assert "paris" in block["text"].lower()  # the model knows this one
    usage = message["usage"]
    prompt = usage["input_tokens"] + usage["cache_creation_input_tokens"]
    assert prompt + usage["cache_read_input_tokens"] > 10
    assert 0 < usage["output_tokens"] <= 24


def server_model_id(server: Server) -> str:
    return requests.get(
        f"{server.url}/health", timeout=5, headers={"x-api-key": API_KEY}
    ).json()["model"]


def test_stream_event_sequence_and_text_match_non_streaming(server: Server) -> None:
    body = {"model": "m", "max_tokens": 16, "messages": QUESTION, "temperature": 0}
    whole = post(server, body).json()
    streamed = post(server, {**body, "stream": True})
    assert streamed.headers["content-type"].startswith("text/event-stream")
    events = sse_events(streamed)
    names = [name for name, _ in events if name != "ping"]
    deltas = names.count("content_block_delta")
    assert names == [
        "message_start",
        "content_block_start",
        *["content_block_delta"] * deltas,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert all(data["type"] == name for name, data in events)
    start = events[0][1]["message"]
    keys = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    assert sum(start["usage"][k] for k in keys) == sum(whole["usage"][k] for k in keys)
    text = "".join(
        data["delta"]["text"] for name, data in events if name == "content_block_delta"
    )
    assert text == whole["content"][0]["text"]
    final = next(data for name, data in events if name == "message_delta")
    assert final["delta"]["stop_reason"] == whole["stop_reason"]
    assert final["usage"]["output_tokens"] == whole["usage"]["output_tokens"]


def test_greedy_is_deterministic(client: anthropic.Anthropic) -> None:
    def ask() -> str:
        message = client.messages.create(
            model="local",
            max_tokens=12,
            messages=QUESTION,
            extra_body={"temperature": 0},
        )
        return message.content[0].text

    assert ask() == ask()


def test_sdk_create(client: anthropic.Anthropic) -> None:
    message = client.messages.create(
        model="claude-haiku-5-5",
        max_tokens=8,
        system="You answer in one word.",
        messages=[{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
    )
    assert message.type == "message" and message.role == "assistant"
    assert message.content[0].type == "text"
    assert message.usage.output_tokens <= 8
    assert message.stop_reason in ("end_turn", "max_tokens")


def test_sdk_stream(client: anthropic.Anthropic) -> None:
    with client.messages.stream(
        model="claude-opus-5-5",
        max_tokens=10,
        messages=QUESTION,
        extra_body={"temperature": 0},
    ) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(pieces) == final.content[0].text
    assert final.usage.output_tokens > 0


def test_max_tokens_stop_reason(client: anthropic.Anthropic) -> None:
    message = client.messages.create(
        model="m",
        max_tokens=3,
        extra_body={"temperature": 0},
        messages=[{"role": "user", "content": "Write a long poem about the sea."}],
    )
    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == 3


def test_stop_sequence_is_matched_and_never_shown(client: anthropic.Anthropic) -> None:
    def ask(**kwargs: Any) -> anthropic.types.Message:
        return client.messages.create(
            model="m",
            max_tokens=12,
            messages=QUESTION,
            extra_body={"temperature": 0},
            **kwargs,
        )

    free = ask().content[0].text
    words = free.split()
    assert len(words) >= 3, free
    stop = " " + words[2]
    stopped = ask(stop_sequences=[stop])
    assert stopped.stop_reason == "stop_sequence"
    assert stopped.stop_sequence == stop
    assert stopped.content[0].text == free[: free.index(stop)]


def test_sdk_raises_typed_authentication_error(server: Server) -> None:
    bad = anthropic.Anthropic(base_url=server.url, api_key="wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as caught:
        bad.messages.create(model="m", max_tokens=5, messages=QUESTION)
    assert caught.value.body["error"]["type"] == "authentication_error"


def test_bearer_auth_is_accepted(server: Server) -> None:
    response = requests.post(
        f"{server.url}/v1/messages?beta=true",
        json={"model": "m", "max_tokens": 2, "messages": QUESTION},
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=120,
    )
    assert response.status_code == 200, response.text


def test_health_answers_quickly_while_a_long_generation_streams(server: Server) -> None:
    finished = threading.Event()
    first_delta = threading.Event()

    def stream() -> None:
        body = {
            "model": "m",
            "max_tokens": 80,
            "temperature": 0,
            "stream": True,
            "messages": [
                {"role": "user", "content": "Write a long story about a dragon."}
            ],
        }
        with post(server, body, stream=True) as response:
            for line in response.iter_lines():
                if b"content_block_delta" in line:
                    first_delta.set()
        finished.set()

    streamer = threading.Thread(target=stream, daemon=True)
    streamer.start()
    assert first_delta.wait(120), "no token arrived"
    latencies = []
    for _ in range(5):
        started = time.monotonic()
        health = requests.get(f"{server.url}/health", timeout=5)
        latencies.append(time.monotonic() - started)
        assert health.json()["status"] == "ready"
        time.sleep(0.2)
    assert not finished.is_set(), "the generation ended before the probes did"
    assert max(latencies) < 0.2, latencies
    streamer.join(120)


def test_pings_keep_the_stream_alive_during_prefill(server: Server) -> None:
    """A prompt that takes seconds to prefill: pings arrive before the first token."""
    # ~2,400 tokens: seconds of prefill even with the CPU profile.
    long_prompt = "Repeat after me: " + "the quick brown fox jumps. " * 400
    body = {
        "model": "m",
        "max_tokens": 2,
        "stream": True,
        "messages": [{"role": "user", "content": long_prompt}],
    }
    names = [name for name, _ in sse_events(post(server, body))]
    before_first_token = names[: names.index("content_block_delta")]
    assert before_first_token.count("ping") >= 2, names


@pytest.mark.parametrize("top_k", [50_000, 10**30])
def test_a_top_k_past_the_vocabulary_is_a_400_and_sampling_goes_on(
    server: Server, top_k: int
) -> None:
    """mlx-lm's top-k fails past the vocabulary (49,152 tokens here), which
    once left every later sampled request failing with a 500."""
    body = {"model": "m", "max_tokens": 4, "temperature": 1.0}
    body["messages"] = [{"role": "user", "content": "Hi"}]
    refused = post(server, {**body, "top_k": top_k})
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith("top_k: must be less than 49152")
    assert post(server, {**body, "top_k": 49_151}).status_code == 200
    assert post(server, body).status_code == 200


def test_nul_and_control_characters_are_text_to_the_model(server: Server) -> None:
    """Accepted on purpose: NUL is valid Unicode and JSON, and the byte-level
    tokenizer spells it; a lone surrogate, which is not text, is a 400."""
    body = {"model": "m", "max_tokens": 4, "temperature": 0}
    body["messages"] = [{"role": "user", "content": "a\u0000b\u0007c\u001bd"}]
    answered = post(server, body)
    assert answered.status_code == 200, answered.text
    counted = requests.post(
        f"{server.url}/v1/messages/count_tokens",
        headers={"x-api-key": API_KEY},
        json={"model": "m", "messages": body["messages"]},
        timeout=30,
    )
    plain = requests.post(
        f"{server.url}/v1/messages/count_tokens",
        headers={"x-api-key": API_KEY},
        json={"model": "m", "messages": [{"role": "user", "content": "abcd"}]},
        timeout=30,
    )
    assert counted.json()["input_tokens"] > plain.json()["input_tokens"]

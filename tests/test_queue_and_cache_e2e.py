"""Prompt cache, fair queueing and cancellation on the real server."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import pytest
import requests

from conftest import API_KEY, Server, running_server

SYSTEM = "You are a helpful assistant. " + "Answer briefly and accurately. " * 40


def ask(server: Server, **body: Any) -> requests.Response:
    payload = {"model": "m", "max_tokens": 8, "temperature": 0, **body}
    return requests.post(
        f"{server.url}/v1/messages",
        json=payload,
        headers={"x-api-key": API_KEY},
        timeout=300,
        stream=bool(payload.get("stream")),
    )


def conversation(stamp: str, question: str) -> dict[str, Any]:
    return {
        "system": [
            {
                "type": "text",
                "text": f"x-anthropic-billing-header: cc_version=2.1; cch={stamp};",
            },
            {"type": "text", "text": SYSTEM},
        ],
        "messages": [{"role": "user", "content": question}],
    }


def test_second_request_reads_the_shared_prefix_from_cache(server: Server) -> None:
    first = ask(server, **conversation("aaa", "What is 2 + 2?")).json()["usage"]
    second = ask(server, **conversation("bbb", "What is 3 + 3?")).json()["usage"]
    prompt_tokens = first["input_tokens"] + first["cache_read_input_tokens"]
    # The billing stamp differs, yet the long system prompt is a cache hit.
    assert second["cache_read_input_tokens"] > 200
    assert second["input_tokens"] < 30
    assert second["cache_creation_input_tokens"] == second["input_tokens"]
    assert (
        second["input_tokens"] + second["cache_read_input_tokens"] >= prompt_tokens - 10
    )


def test_greedy_output_is_identical_with_and_without_a_cache_hit(
    server: Server,
) -> None:
    body = conversation("ccc", "Name a primary colour.")
    cold = ask(
        server, **{**body, "system": [{"type": "text", "text": "Be terse. " * 30}]}
    )
    warm = ask(
        server, **{**body, "system": [{"type": "text", "text": "Be terse. " * 30}]}
    )
    cold_body, warm_body = cold.json(), warm.json()
    assert (
        warm_body["usage"]["cache_read_input_tokens"]
        > cold_body["usage"]["cache_read_input_tokens"]
    )
    assert warm_body["content"] == cold_body["content"]


@pytest.fixture(scope="module")
def small_queue_server(
    cache_dir: Path, bundled_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    env = {
        "PENSIEVE_MODEL": "bundled",
        "PENSIEVE_CACHE_DIR": str(cache_dir),
        "PENSIEVE_API_KEY": API_KEY,
        "PENSIEVE_QUEUE_DEPTH": "1",
        "PENSIEVE_KEEPALIVE_SECONDS": "1",
    }
    log_path = tmp_path_factory.mktemp("queue") / "gunicorn.log"
    with running_server(env, log_path) as running:
        yield running


def stream_until_first_delta(server: Server, max_tokens: int) -> requests.Response:
    response = ask(
        server,
        stream=True,
        max_tokens=max_tokens,
        messages=[
            {"role": "user", "content": "Count from 1 to 500, separated by commas."}
        ],
    )
    for line in response.iter_lines():
        if b"content_block_delta" in line:
            return response
    raise AssertionError("no token arrived")


def test_full_queue_gets_529_with_retry_after(small_queue_server: Server) -> None:
    server = small_queue_server
    running = stream_until_first_delta(server, max_tokens=300)
    queued_result: dict[str, Any] = {}

    def queued() -> None:
        queued_result["response"] = ask(
            server, messages=[{"role": "user", "content": "Hi"}], max_tokens=2
        )

    waiter = threading.Thread(target=queued, daemon=True)
    waiter.start()
    deadline = time.monotonic() + 30
    while (
        requests.get(f"{server.url}/health", timeout=5).json()["requests_waiting"] < 1
    ):
        assert time.monotonic() < deadline, "the second request never queued"
        time.sleep(0.1)
    health = requests.get(f"{server.url}/health", timeout=5).json()
    assert health["running"]["request_id"].startswith("req_")

    client = anthropic.Anthropic(base_url=server.url, api_key=API_KEY, max_retries=0)
    with pytest.raises(anthropic.OverloadedError) as caught:
        client.messages.create(
            model="m", max_tokens=2, messages=[{"role": "user", "content": "Hi"}]
        )
    assert caught.value.response.headers["retry-after"].isdigit()
    assert caught.value.body["error"]["type"] == "overloaded_error"

    running.close()  # the client goes away mid-stream: the model is freed
    waiter.join(120)
    assert queued_result["response"].status_code == 200


def test_disconnect_frees_the_model_promptly(small_queue_server: Server) -> None:
    server = small_queue_server
    stream_until_first_delta(server, max_tokens=400).close()
    response = ask(server, messages=[{"role": "user", "content": "Hi"}], max_tokens=2)
    assert response.status_code == 200
    assert requests.get(f"{server.url}/health", timeout=5).json()["running"] is None
    cancelled = re.findall(r"cancelled after (\d+) generated tokens", server.log())
    assert cancelled, server.log()[-2000:]
    assert int(cancelled[-1]) < 100  # stopped right away, not after 400 tokens

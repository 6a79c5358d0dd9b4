"""Prompt cache, fair queueing and cancellation on the real server."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import pytest
import requests

from conftest import API_KEY, Server, bundled_server

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


PROMPT_KEYS = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")


def test_second_request_reads_the_shared_prefix_from_cache(server: Server) -> None:
    first = ask(server, **conversation("aaa", "What is 2 + 2?")).json()["usage"]
    second = ask(server, **conversation("bbb", "What is 3 + 3?")).json()["usage"]
    prompt_tokens = sum(first[key] for key in PROMPT_KEYS)
    # The billing stamp differs, yet the long system prompt is a cache hit.
    assert second["cache_read_input_tokens"] > 200
    # Disjoint, as Anthropic's: what was processed was written to the cache.
    assert second["input_tokens"] == 0
    assert 0 < second["cache_creation_input_tokens"] < 30
    assert sum(second[key] for key in PROMPT_KEYS) >= prompt_tokens - 10


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
    with bundled_server(
        cache_dir,
        tmp_path_factory,
        QUEUE_DEPTH="1",
        KEEPALIVE_SECONDS="1",
        MAX_BATCH="1",
    ) as running:
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
    lines = response.iter_lines()
    for line in lines:
        if b"content_block_delta" in line:
            # Dropping the iterator would close the connection: keep it.
            response.lines = lines  # type: ignore[attr-defined]
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
        requests.get(
            f"{server.url}/health", timeout=5, headers={"x-api-key": API_KEY}
        ).json()["requests_waiting"]
        < 1
    ):
        assert time.monotonic() < deadline, "the second request never queued"
        time.sleep(0.1)
    health = requests.get(
        f"{server.url}/health", timeout=5, headers={"x-api-key": API_KEY}
    ).json()
    assert health["running"][0]["request_id"].startswith("req_")
    memory = health["memory"]  # mlx's allocator: the model and the live KV
    assert memory["mlx_peak_bytes"] >= memory["mlx_active_bytes"] > 50 * 2**20

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
    assert (
        requests.get(
            f"{server.url}/health", timeout=5, headers={"x-api-key": API_KEY}
        ).json()["running"]
        == []
    )
    cancelled = re.findall(r"cancelled after (\d+) generated tokens", server.log())
    assert cancelled, server.log()[-2000:]
    assert int(cancelled[-1]) < 100  # stopped right away, not after 400 tokens


def test_a_non_streaming_client_that_leaves_frees_the_model(
    small_queue_server: Server,
) -> None:
    # Such a client never gets a write that fails: the server must notice the
    # closed connection itself.
    server = small_queue_server
    before = len(re.findall(r"cancelled after \d+ generated tokens", server.log()))
    body = json.dumps(
        {
            "model": "m",
            "max_tokens": 400,
            "temperature": 0,
            "messages": [
                {"role": "user", "content": "Count from 1 to 500, separated by commas."}
            ],
        }
    ).encode()
    head = (
        "POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"x-api-key: {API_KEY}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode()
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as client:
        client.sendall(head + body)
        deadline = time.monotonic() + 60
        while (
            requests.get(
                f"{server.url}/health", timeout=5, headers={"x-api-key": API_KEY}
            ).json()["running"]
            == []
        ):
            assert time.monotonic() < deadline, "the request never started"
            time.sleep(0.1)
        time.sleep(1.0)  # a few tokens
    started = time.monotonic()
    response = ask(server, messages=[{"role": "user", "content": "Hi"}], max_tokens=2)
    assert response.status_code == 200
    cancelled = re.findall(r"cancelled after (\d+) generated tokens", server.log())
    assert cancelled[before:], server.log()[-2000:]
    assert int(cancelled[-1]) < 100  # not the 400 asked for
    assert time.monotonic() - started < 30


def test_the_prompt_cache_outlives_a_restart(
    cache_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """PROMPT_CACHE_DIR: SIGTERM writes the entries, the next start reads them,
    and its first request is a hit that answers as the first server did."""
    kept = tmp_path_factory.mktemp("kept-prompt-cache")
    body = conversation("ddd", "Name a large city.")
    with bundled_server(cache_dir, tmp_path_factory, PROMPT_CACHE_DIR=str(kept)) as old:
        before = ask(old, **body).json()
        assert before["usage"]["cache_read_input_tokens"] < 20
    assert "prompt cache: wrote 1 entries" in old.log()  # at SIGTERM, drained
    with bundled_server(cache_dir, tmp_path_factory, PROMPT_CACHE_DIR=str(kept)) as new:
        after = ask(new, **conversation("eee", "Name a large city.")).json()
        log = new.log()
    assert "prompt cache: restored 1 entries" in log
    prompt = sum(before["usage"][key] for key in PROMPT_KEYS)
    assert after["usage"]["cache_read_input_tokens"] == prompt - 1
    assert after["content"] == before["content"]
    # Another precision makes other KV: its entries are not reused.
    with bundled_server(
        cache_dir, tmp_path_factory, PROMPT_CACHE_DIR=str(kept), KV_BITS="8"
    ) as other:
        assert ask(other, **body).json()["usage"]["cache_read_input_tokens"] < 20
    assert "is for another model: skipped" in other.log()

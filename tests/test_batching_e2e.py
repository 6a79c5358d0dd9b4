"""Continuous batching on the real server and bundled model.

Concurrent requests share the model's steps: they all complete with their
own usage, answer as they would alone (greedy; see TOLERANCE), keep their
constraints, leave the batch when cancelled, queue and get 529 beyond it,
and read and keep the prompt cache as alone.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import jsonschema
import openai
import pytest
import requests
from test_tools_e2e import WEATHER

from conftest import API_KEY, Server, bundled_server

HERE = Path(__file__).parent
# A batched greedy output may differ from the solo one only at a token whose
# top-2 logit margin (solo) is at most this: there the rounding of a batched
# product can tip the choice.
TOLERANCE = 0.01
PROMPTS = [
    "Tell me a story about a lighthouse keeper.",
    "Explain how a bicycle works.",
    "Write a short poem about autumn rain.",
    "Describe the city of Lisbon.",
]
FILM = {
    "type": "object",
    "properties": {"title": {"type": "string"}, "year": {"type": "integer"}},
    "required": ["title", "year"],
}


@pytest.fixture(scope="module")
def batch_server(
    cache_dir: Path, bundled_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    with bundled_server(
        cache_dir, tmp_path_factory, MAX_BATCH="4", KEEPALIVE_SECONDS="1"
    ) as running:
        yield running


@pytest.fixture(scope="module")
def pair_server(
    cache_dir: Path, bundled_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A batch of two and a queue of one."""
    with bundled_server(
        cache_dir,
        tmp_path_factory,
        MAX_BATCH="2",
        QUEUE_DEPTH="1",
        KEEPALIVE_SECONDS="1",
    ) as running:
        yield running


def ask(server: Server, prompt: str | list[Any], max_tokens: int = 40) -> Any:
    """A greedy Messages answer to `prompt` (a user turn, or the messages)."""
    messages = (
        [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
    )
    response = requests.post(
        f"{server.url}/v1/messages",
        json={
            "model": "m",
            "max_tokens": max_tokens,
            "temperature": 0,
            "messages": messages,
        },
        headers={"x-api-key": API_KEY},
        timeout=600,
    )
    assert response.status_code == 200, response.text
    return response.json()


def text_of(message: dict[str, Any]) -> str:
    return "".join(b["text"] for b in message["content"] if b["type"] == "text")


def health(server: Server) -> dict[str, Any]:
    return requests.get(
        f"{server.url}/health", headers={"x-api-key": API_KEY}, timeout=10
    ).json()


def together(server: Server, *calls: Callable[[], Any]) -> tuple[list[Any], int]:
    """Run `calls` at once; their results, and the most requests `server`'s
    /health saw running meanwhile (the batch they shared)."""
    results: list[Any] = [None] * len(calls)
    errors: list[BaseException] = []

    def run(index: int, call: Callable[[], Any]) -> None:
        try:
            results[index] = call()
        except BaseException as error:  # re-raised below
            errors.append(error)

    threads = [
        threading.Thread(target=run, args=(i, call), daemon=True)
        for i, call in enumerate(calls)
    ]
    for thread in threads:
        thread.start()
    most, deadline = 0, time.monotonic() + 600
    while any(thread.is_alive() for thread in threads):
        assert time.monotonic() < deadline, "the requests never finished"
        most = max(most, len(health(server)["running"]))
        time.sleep(0.2)
    if errors:
        raise errors[0]
    return results, most


def assert_as_alone(
    model_dir: Path, prompt: str, solo: str, batched: str, max_tokens: int
) -> None:
    """`batched` is `solo`, or leaves it first at a near tie of the solo run."""
    if batched == solo:
        return
    index = next(
        (i for i, (a, b) in enumerate(zip(solo, batched, strict=False)) if a != b),
        min(len(solo), len(batched)),
    )
    command = [sys.executable, str(HERE / "greedy_margins.py"), str(model_dir)]
    result = subprocess.run(
        [*command, str(max_tokens), prompt],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    position, margin = 0, float("inf")
    for token, token_margin in json.loads(result.stdout.splitlines()[-1]):
        margin = token_margin
        if position + len(token) > index:
            break
        position += len(token)
    assert margin <= TOLERANCE, (
        f"batched output left the solo one at a top-2 margin of {margin:.4f} "
        f"(> {TOLERANCE}): {solo[index - 20 : index + 20]!r} vs "
        f"{batched[index - 20 : index + 20]!r}"
    )


def test_four_concurrent_sdk_streams_complete_with_correct_usage(
    batch_server: Server,
) -> None:
    client = anthropic.Anthropic(
        base_url=batch_server.url, api_key=API_KEY, max_retries=0
    )

    def stream(prompt: str) -> tuple[str, Any]:
        request = {
            "model": "m",
            "max_tokens": 48,
            "messages": [{"role": "user", "content": prompt}],
        }
        with client.messages.stream(**request, extra_body={"temperature": 0}) as s:
            text = "".join(s.text_stream)
            final = s.get_final_message()
        counted = client.messages.count_tokens(model="m", messages=request["messages"])
        return text, final, counted.input_tokens

    results, most = together(batch_server, *(lambda p=p: stream(p) for p in PROMPTS))
    assert most == 4, f"the four streams never ran together (at most {most})"
    for text, final, counted in results:
        usage = final.usage
        assert text and text == "".join(b.text for b in final.content)
        prompt = (
            usage.input_tokens
            + (usage.cache_read_input_tokens or 0)
            + (usage.cache_creation_input_tokens or 0)
        )
        assert prompt == counted
        if final.stop_reason == "max_tokens":
            assert usage.output_tokens == 48
        else:
            assert final.stop_reason == "end_turn" and 0 < usage.output_tokens < 48


def test_batched_greedy_outputs_equal_solo_outputs(
    batch_server: Server, bundled_model_dir: Path
) -> None:
    solo = [text_of(ask(batch_server, prompt, 64)) for prompt in PROMPTS]
    batched, most = together(
        batch_server, *(lambda p=p: text_of(ask(batch_server, p, 64)) for p in PROMPTS)
    )
    assert most >= 3
    for prompt, alone, inside in zip(PROMPTS, solo, batched, strict=True):
        assert_as_alone(bundled_model_dir, prompt, alone, inside, 64)


def test_a_forced_tool_call_and_a_structured_answer_inside_a_batch_are_valid(
    batch_server: Server,
) -> None:
    anthropic_client = anthropic.Anthropic(
        base_url=batch_server.url, api_key=API_KEY, max_retries=0
    )
    openai_client = openai.OpenAI(
        base_url=f"{batch_server.url}/v1", api_key=API_KEY, max_retries=0
    )

    def forced_call() -> Any:
        return anthropic_client.messages.create(
            model="m",
            max_tokens=120,
            messages=[{"role": "user", "content": "Weather in Paris for 3 days?"}],
            tools=[WEATHER],
            tool_choice={"type": "tool", "name": "get_weather"},
            extra_body={"temperature": 0},
        )

    def structured() -> Any:
        return openai_client.chat.completions.create(
            model="m",
            temperature=0,
            max_tokens=60,
            messages=[{"role": "user", "content": "Name a famous film and its year."}],
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "film", "schema": FILM},
            },
        )

    (call, film, *_), most = together(
        batch_server,
        forced_call,
        structured,
        *(lambda p=p: ask(batch_server, p, 60) for p in PROMPTS[:2]),
    )
    assert most >= 3
    [use] = [block for block in call.content if block.type == "tool_use"]
    assert call.stop_reason == "tool_use" and use.name == "get_weather"
    jsonschema.validate(use.input, WEATHER["input_schema"])
    jsonschema.validate(json.loads(film.choices[0].message.content), FILM)


def test_a_second_turn_inside_a_batch_reads_the_prompt_cache(
    batch_server: Server,
) -> None:
    question = "Name three rivers of Europe, in one line. (batch turn test)"
    first = ask(batch_server, question, 24)
    usage = first["usage"]
    first_prompt = sum(
        usage[key]
        for key in (
            "input_tokens",
            "cache_read_input_tokens",
            "cache_creation_input_tokens",
        )
    )
    history = [
        {"role": "user", "content": question},
        {"role": "assistant", "content": first["content"]},
        {"role": "user", "content": "Which of them is the longest?"},
    ]

    (second, *_), most = together(
        batch_server,
        lambda: ask(batch_server, history, 24),
        *(lambda p=p: ask(batch_server, p, 48) for p in PROMPTS[2:]),
    )
    assert most >= 2
    assert second["usage"]["cache_read_input_tokens"] >= first_prompt


@dataclass
class Stream:
    """A streamed request read line by line; `close()` is the client leaving."""

    response: requests.Response
    lines: Iterator[bytes]

    def deltas(self) -> Iterator[str]:
        for line in self.lines:
            if line.startswith(b"data: ") and b"text_delta" in line:
                yield json.loads(line[6:])["delta"]["text"]

    def close(self) -> None:
        self.response.close()


def open_stream(server: Server, prompt: str, max_tokens: int) -> Stream:
    response = requests.post(
        f"{server.url}/v1/messages",
        json={
            "model": "m",
            "max_tokens": max_tokens,
            "temperature": 0,
            "stream": True,
            "messages": [{"role": "user", "content": prompt}],
        },
        headers={"x-api-key": API_KEY},
        timeout=600,
        stream=True,
    )
    assert response.status_code == 200, response.text
    return Stream(response, response.iter_lines())


def test_cancelling_a_stream_frees_its_slot_and_leaves_the_other_unchanged(
    pair_server: Server, bundled_model_dir: Path
) -> None:
    keeper, quitter, waiter = PROMPTS[0], PROMPTS[1], PROMPTS[2]
    alone = text_of(ask(pair_server, keeper, 120))
    kept = open_stream(pair_server, keeper, 120)
    cancelled = open_stream(pair_server, quitter, 300)
    kept_deltas = kept.deltas()
    first = [next(kept_deltas)]
    next(cancelled.deltas())
    queued: dict[str, Any] = {}
    thread = threading.Thread(
        target=lambda: queued.update(ask(pair_server, waiter, 4)), daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 60
    while health(pair_server)["requests_waiting"] < 1:  # the batch of two is full
        assert time.monotonic() < deadline
        time.sleep(0.1)
    cancelled.close()  # the client goes away mid-stream: its slot is freed
    thread.join(120)
    assert queued["usage"]["output_tokens"] > 0
    assert len(health(pair_server)["running"]) == 1, "the kept stream had ended"
    rest = "".join(kept_deltas)
    assert_as_alone(bundled_model_dir, keeper, alone, "".join(first) + rest, 120)
    assert "cancelled after" in pair_server.log()


def test_a_full_batch_and_a_full_queue_get_529_with_retry_after(
    pair_server: Server,
) -> None:
    streams = [open_stream(pair_server, p, 300) for p in PROMPTS[:2]]
    for stream in streams:
        next(stream.deltas())
    queued = threading.Thread(
        target=lambda: ask(pair_server, PROMPTS[2], 2), daemon=True
    )
    queued.start()
    deadline = time.monotonic() + 60
    while health(pair_server)["requests_waiting"] < 1:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    state = health(pair_server)
    assert state["batch"] == {"max": 2, "running": 2, "occupancy": 1.0}
    client = anthropic.Anthropic(
        base_url=pair_server.url, api_key=API_KEY, max_retries=0
    )
    with pytest.raises(anthropic.OverloadedError) as caught:
        client.messages.create(
            model="m", max_tokens=2, messages=[{"role": "user", "content": "Hi"}]
        )
    assert caught.value.response.headers["retry-after"].isdigit()
    assert caught.value.body["error"]["type"] == "overloaded_error"
    for stream in streams:
        stream.close()
    queued.join(120)
    assert not queued.is_alive()


def test_a_request_cancelled_in_its_prefill_keeps_the_kv_it_computed(
    batch_server: Server,
) -> None:
    prompt = "Summarise this log. " + " ".join(
        f"line {n}: the prefill test wrote record {n * 7919 % 1000}."
        for n in range(160)
    )
    stream = open_stream(batch_server, prompt, 8)
    started = time.monotonic()
    for line in stream.lines:  # message_start and pings only, for a while
        assert b"content_block_delta" not in line, "the prompt was prefilled already"
        if time.monotonic() - started > 3:
            break
    stream.close()
    deadline = time.monotonic() + 30
    while health(batch_server)["running"]:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    again = ask(batch_server, prompt, 2)["usage"]  # the same request, resent
    prompt_tokens = (
        again["input_tokens"]
        + again["cache_read_input_tokens"]
        + again["cache_creation_input_tokens"]
    )
    assert 0 < again["cache_read_input_tokens"] < prompt_tokens - 1

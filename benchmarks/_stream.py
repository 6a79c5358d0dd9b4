"""Server-Sent Events as the client sees them, and one timed /v1/messages request.

The benchmarks time each SSE event at its arrival: first-token times and
decode rates are client-side figures. sse_data is the one parser of both
servers' `data:` lines (and mlx_lm.server's `[DONE]`); timed_message is the
streamed request that skeleton.py and cpu_profile.py measure with.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import requests

from _server import anthropic_headers


def sse_data(
    chunks: Iterable[bytes], deadline: float | None = None
) -> Iterator[tuple[float, Any]]:
    """(arrival time, parsed `data:` payload) per SSE line; None for [DONE].

    The arrival time is that of the chunk completing the line. TimeoutError
    when a chunk arrives after `deadline` (a time.perf_counter() value).
    """
    buffer = b""
    for chunk in chunks:
        now = time.perf_counter()
        if deadline is not None and now > deadline:
            raise TimeoutError("stream deadline passed")
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            line = line.rstrip(b"\r")
            if line.startswith(b"data:"):
                payload = line[5:].strip()
                yield now, None if payload == b"[DONE]" else json.loads(payload)


@dataclass
class TimedMessage:
    """A streamed /v1/messages answer, with the client's time of its events."""

    started: float  # time.perf_counter() as the request was sent
    first_delta: float | None = None  # ... when the first content_block_delta came
    message_stop: float | None = None  # ... when message_stop arrived
    input_tokens: int = 0  # message_start's usage
    cache_read_input_tokens: int = 0  # message_start's usage (0 when absent)
    output_tokens: int = 0  # the last message_delta's usage (0 when absent)
    stop_reason: str | None = None
    pieces: list[str] = field(default_factory=list)

    def see(self, now: float, event: Any) -> None:
        """Take in one SSE event that arrived at `now`; RuntimeError on `error`."""
        kind = event.get("type") if isinstance(event, dict) else None
        if kind == "message_start":
            usage = event["message"]["usage"]
            # The tokens processed: neither read from the cache nor (while
            # it is on) written to it, or written to it.
            self.input_tokens = int(usage["input_tokens"]) + int(
                usage.get("cache_creation_input_tokens") or 0
            )
            self.cache_read_input_tokens = int(
                usage.get("cache_read_input_tokens") or 0
            )
        elif kind == "content_block_delta":
            self.first_delta = self.first_delta or now
            self.pieces.append(event["delta"]["text"])
        elif kind == "message_delta":
            self.output_tokens = int(event.get("usage", {}).get("output_tokens", 0))
            self.stop_reason = event["delta"].get("stop_reason")
        elif kind == "message_stop":
            self.message_stop = now
        elif kind == "error":
            raise RuntimeError(f"server error event: {event}")

    @property
    def text(self) -> str:
        """The generated text."""
        return "".join(self.pieces)

    @property
    def ttft_s(self) -> float:
        """Request start to the first content_block_delta."""
        assert self.first_delta is not None
        return self.first_delta - self.started

    @property
    def decode_s(self) -> float:
        """The first content_block_delta to message_stop."""
        assert self.first_delta is not None and self.message_stop is not None
        return self.message_stop - self.first_delta

    @property
    def total_s(self) -> float:
        """Request start to message_stop."""
        assert self.message_stop is not None
        return self.message_stop - self.started

    @property
    def decode_tps(self) -> float | None:
        """(output_tokens - 1) / decode_s; None below 2 tokens."""
        tokens = self.output_tokens
        return (tokens - 1) / self.decode_s if tokens > 1 else None

    def figures(self) -> dict[str, Any]:
        """Token counts, stop reason, times, decode_tps and text, by name."""
        return {
            "input_tokens": self.input_tokens,
            "cache_read_input_tokens": self.cache_read_input_tokens,
            "output_tokens": self.output_tokens,
            "stop_reason": self.stop_reason,
            "ttft_s": self.ttft_s,
            "decode_s": self.decode_s,
            "total_s": self.total_s,
            "decode_tps": self.decode_tps,
            "text": self.text,
        }


def timed_message(
    url: str,
    prompt: str,
    max_tokens: int,
    *,
    api_key: str,
    timeout_s: float,
    model: str = "bundled",
) -> TimedMessage:
    """One streaming /v1/messages request (temperature 0), timed per SSE event.

    RuntimeError on an `error` event, or when the stream ends without a
    content_block_delta or message_stop.
    """
    body = {
        "model": model,
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "messages": [{"role": "user", "content": prompt}],
    }
    message = TimedMessage(started=time.perf_counter())
    with requests.post(
        f"{url}/v1/messages",
        json=body,
        headers=anthropic_headers(api_key),
        stream=True,
        timeout=timeout_s,
    ) as response:
        response.raise_for_status()
        for now, event in sse_data(response.iter_content(chunk_size=None)):
            message.see(now, event)
    if message.first_delta is None or message.message_stop is None:
        raise RuntimeError("stream ended without a delta or message_stop")
    return message


Stop = Callable[[int, dict[str, Any]], bool] | None  # (index, block) ends a stream


def reassemble(events: Iterable[Any], stop: Stop = None) -> dict[str, Any]:
    """SSE events as a message; "partial" when cut at a block `stop` accepts."""
    message: dict[str, Any] = {"usage": {}}
    blocks: dict[int, dict[str, Any]] = {}
    for event in events:
        kind = event.get("type") if isinstance(event, dict) else None
        if kind == "message_start":
            message.update(event["message"])
        elif kind == "content_block_start":
            blocks[event["index"]] = dict(event["content_block"])
            if stop is not None and stop(event["index"], blocks[event["index"]]):
                message["partial"] = True
                break
        elif kind == "content_block_delta":
            block, delta = blocks[event["index"]], event["delta"]
            for key in ("partial_json", "text", "thinking", "signature"):
                if key in delta:
                    block[key] = block.get(key, "") + delta[key]
        elif kind == "message_delta":
            message["stop_reason"] = event["delta"].get("stop_reason")
            message["usage"] = {**message["usage"], **event.get("usage", {})}
        elif kind == "error":
            raise RuntimeError(f"error event: {event}")
    for block in blocks.values():
        if "partial_json" in block:
            block["input"] = json.loads(block.pop("partial_json") or "{}")
    message["content"] = [blocks[index] for index in sorted(blocks)]
    return message

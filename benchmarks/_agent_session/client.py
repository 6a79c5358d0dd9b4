"""One streamed request as the client sees it: status, first token, end, usage.

Both APIs are read the same way (_stream.sse_data over whatever bytes have
arrived), so Pensieve's and mlx_lm.server's first-token times compare. A
request that stays silent, or outlives its deadline, counts as a hang.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests

from _server import anthropic_headers
from _stream import sse_data

from .fixtures import API_KEY, READ_TIMEOUT


@dataclass
class Stream:
    """One streamed request as the client saw it."""

    status: int = 0
    ttft_s: float | None = None  # to the first text delta
    total_s: float | None = None  # to the end of the stream (or the error answer)
    text: str = ""
    usage: dict[str, Any] = field(default_factory=dict)
    error: str | None = None  # error type, "timeout" (a hang) or an exception
    retry_after: str | None = None


def error_type(response: requests.Response) -> str:
    """The error type of an error answer (either API), else status and text."""
    try:
        return str(response.json()["error"]["type"])
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status_code}: {response.text[:120]!r}"


def post_stream(
    url: str,
    body: dict[str, Any],
    headers: dict[str, str],
    timeout_s: float,
    read_timeout: float,
    on_data: Callable[[Stream, float, Any], bool],
) -> Stream:
    """POST a streaming request; `on_data` sees each frame and says when to stop.

    Leaving the `with` block closes the connection, also mid-stream (that is
    how a client disconnects). Timeouts (a socket silent for `read_timeout`, or
    the whole stream past `timeout_s`) count as hangs: error "timeout".
    """
    result = Stream()
    started = time.perf_counter()
    try:
        with requests.post(
            url,
            json=body,
            headers=headers,
            stream=True,
            timeout=(10, read_timeout),
        ) as response:
            result.status = response.status_code
            if response.status_code != 200:
                result.total_s = time.perf_counter() - started
                result.retry_after = response.headers.get("retry-after")
                result.error = error_type(response)
                return result
            # read1: whatever has arrived. iter_content(None) would wait for the
            # end of a response sent without chunked encoding (mlx_lm.server's).
            chunks = iter(lambda: response.raw.read1(65536), b"")
            for now, data in sse_data(chunks, started + timeout_s):
                if on_data(result, now - started, data):
                    break
    except (requests.Timeout, TimeoutError):
        result.error = "timeout"
    except requests.RequestException as error:
        result.error = f"{type(error).__name__}: {error}"
    return result


def anthropic_stream(
    url: str,
    body: dict[str, Any],
    *,
    timeout_s: float,
    disconnect_after_first: bool = False,
) -> Stream:
    """One streaming /v1/messages request, timed at the client."""
    pieces: list[str] = []

    def on_data(result: Stream, elapsed: float, event: Any) -> bool:
        kind = event.get("type") if isinstance(event, dict) else None
        if kind == "message_start":
            result.usage.update(event["message"].get("usage", {}))
        elif kind == "content_block_delta":
            pieces.append(event["delta"].get("text", ""))
            if result.ttft_s is None:
                result.ttft_s = elapsed
                if disconnect_after_first:
                    return True
        elif kind == "message_delta":
            result.usage.update(event.get("usage", {}))
            if result.ttft_s is None:  # no text at all: the prefill ended here
                result.ttft_s = elapsed
        elif kind == "message_stop":
            result.total_s = elapsed
        elif kind == "error":
            result.error = str(event.get("error", {}).get("type", event))
            result.total_s = elapsed
            return True
        return False

    headers = anthropic_headers(API_KEY)
    # Pensieve pings every 5 s, also while it prefills or queues.
    result = post_stream(
        f"{url}/v1/messages", body, headers, timeout_s, READ_TIMEOUT, on_data
    )
    result.text = "".join(pieces)
    if result.error is None and result.total_s is None and not disconnect_after_first:
        result.error = "stream ended without message_stop"
    return result


def openai_stream(url: str, body: dict[str, Any], *, timeout_s: float) -> Stream:
    """One streaming /v1/chat/completions request (usage in the last chunk)."""
    pieces: list[str] = []

    def on_data(result: Stream, elapsed: float, chunk: Any) -> bool:
        if chunk is None:  # [DONE]
            result.total_s = elapsed
            return True
        if "error" in chunk:
            result.error = str(chunk["error"])
            return True
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            text = delta.get("content") or delta.get("reasoning") or ""
            if text:
                pieces.append(text)
                if result.ttft_s is None:
                    result.ttft_s = elapsed
            if choice.get("finish_reason") and result.ttft_s is None:
                result.ttft_s = elapsed  # no text at all: the prefill ended here
        if chunk.get("usage"):
            result.usage.update(chunk["usage"])
        return False

    # mlx_lm.server sends nothing while it prefills: only the deadline counts.
    result = post_stream(
        f"{url}/v1/chat/completions", body, {}, timeout_s, timeout_s, on_data
    )
    result.text = "".join(pieces)
    if result.error is None and result.total_s is None:
        result.error = "stream ended without [DONE]"
    return result

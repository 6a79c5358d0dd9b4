"""Queueing and cancellation: 20 concurrent clients, then 20 disconnects.

Both run on one Pensieve server started with PENSIEVE_QUEUE_DEPTH=4. Every
client must complete or get 529 `overloaded_error` with `retry-after`;
anything else, or no answer in time (a hang), is a failure. A disconnect
mid-stream must not slow the next request: the first-token times right after
a disconnect and after a finished request are measured interleaved.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
import time
from typing import Any

import requests

from _report import median, spread

from .client import Stream, anthropic_stream
from .fixtures import (
    API_KEY,
    CANCEL_LOG,
    CLIENT_DEADLINE,
    CLIENTS,
    DISCONNECT_MAX_TOKENS,
    DISCONNECTS,
    FILLER,
    FRUITS,
    MAX_TOKENS,
    QUEUE_DEPTH,
)
from .servers import Server

KEYED = {"x-api-key": API_KEY}  # /health shows the queue to keyed clients


def health_poller(url: str, done: threading.Event, seen: dict[str, int]) -> None:
    """Record the largest queue length /health reports until `done`."""
    while not done.wait(0.1):
        with contextlib.suppress(requests.RequestException, ValueError):
            waiting = int(
                requests.get(f"{url}/health", timeout=2, headers=KEYED).json()[
                    "requests_waiting"
                ]
            )
            seen["max_waiting"] = max(seen.get("max_waiting", 0), waiting)


def client_request(index: int) -> dict[str, Any]:
    """Client `index`'s short question (distinct per client)."""
    fruit = FRUITS[index % len(FRUITS)]
    return {
        "model": "bundled",
        "max_tokens": MAX_TOKENS,
        "temperature": 0,
        "stream": True,
        "messages": [
            {
                "role": "user",
                "content": f"Client {index}: in one sentence, what colour is "
                f"a ripe {fruit}?",
            }
        ],
    }


def release_clients(url: str) -> tuple[list[Stream | None], float, int | None]:
    """All clients released at once; their streams (None: still running), the
    wall time, and the longest queue /health showed meanwhile."""
    barrier = threading.Barrier(CLIENTS)
    results: list[Stream | None] = [None] * CLIENTS

    def client(index: int) -> None:
        body = client_request(index)
        barrier.wait()
        results[index] = anthropic_stream(url, body, timeout_s=CLIENT_DEADLINE)

    seen: dict[str, int] = {}
    done = threading.Event()
    poller = threading.Thread(target=health_poller, args=(url, done, seen))
    poller.start()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(
            timeout=max(1.0, started + CLIENT_DEADLINE + 60 - time.perf_counter())
        )
    wall = time.perf_counter() - started
    done.set()
    poller.join()
    return results, wall, seen.get("max_waiting")


def classify(
    results: list[Stream | None],
) -> tuple[list[Stream], list[Stream], list[str]]:
    """Completed streams, 529 answers, and a line per failure."""
    completed, overloaded, failures = [], [], []
    for index, result in enumerate(results):
        if result is None:
            failures.append(f"client {index}: no answer (thread still running: hang)")
        elif result.status == 200 and result.error is None:
            completed.append(result)
        elif result.status == 529 and result.error == "overloaded_error":
            overloaded.append(result)
            if not result.retry_after:
                failures.append(f"client {index}: 529 without retry-after")
        else:
            failures.append(
                f"client {index}: status {result.status}, error {result.error}"
            )
    return completed, overloaded, failures


def concurrent_clients(server: Server) -> dict[str, Any]:
    """20 streaming clients released at once against queue depth 4."""
    results, wall, max_waiting = release_clients(server.url)
    completed, overloaded, failures = classify(results)
    hangs = sum(1 for r in results if r is None or r.error == "timeout")
    return {
        "clients": CLIENTS,
        "queue_depth": QUEUE_DEPTH,
        "completed": len(completed),
        "overloaded_529": len(overloaded),
        "failed": len(failures),
        "hangs": hangs,
        "failures": failures,
        "retry_after": sorted({r.retry_after for r in overloaded if r.retry_after}),
        "max_waiting_seen": max_waiting,
        "wall_s": wall,
        "ttft_s": spread([r.ttft_s for r in completed if r.ttft_s is not None]),
        "total_s": spread([r.total_s for r in completed if r.total_s is not None]),
        "time_to_529_s": spread(
            [r.total_s for r in overloaded if r.total_s is not None]
        ),
    }


def filler_request(max_tokens: int) -> dict[str, Any]:
    """A ~300-token prompt that starts with its own nonce (no cache reuse)."""
    return {
        "model": "bundled",
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "messages": [{"role": "user", "content": f"[{secrets.token_hex(4)}] {FILLER}"}],
    }


def measured(server: Server, label: str) -> Stream:
    """One measured filler request, printed with its prompt and cache reuse."""
    result = anthropic_stream(server.url, filler_request(MAX_TOKENS), timeout_s=300)
    if result.error or result.ttft_s is None:
        raise RuntimeError(f"{label} request failed: {result}")
    cached = result.usage.get("cache_read_input_tokens", 0)
    prompt = result.usage.get("input_tokens", 0) + cached
    prompt += result.usage.get("cache_creation_input_tokens") or 0
    print(
        f"      {label}: TTFT {result.ttft_s:.3f} s, prompt {prompt} tokens "
        f"({cached} from cache)",
        flush=True,
    )
    return result


def disconnect_rounds(server: Server) -> tuple[list[Stream], list[Stream], list[float]]:
    """Per round: an undisturbed request, a stream closed after its first delta,
    and a request sent at once; the two measured series and the first deltas."""
    undisturbed, after, first_deltas = [], [], []
    for index in range(DISCONNECTS):
        undisturbed.append(measured(server, f"round {index + 1}: undisturbed"))
        result = anthropic_stream(
            server.url,
            filler_request(DISCONNECT_MAX_TOKENS),
            timeout_s=300,
            disconnect_after_first=True,
        )
        if result.ttft_s is None or result.error:
            raise RuntimeError(f"disconnect {index + 1} failed: {result}")
        first_deltas.append(result.ttft_s)
        after.append(measured(server, f"round {index + 1}: after a disconnect"))
    return undisturbed, after, first_deltas


def disconnects(server: Server) -> dict[str, Any]:
    """TTFT right after a mid-stream disconnect vs after a finished request.

    Twenty rounds (disconnect_rounds). The two series interleave, so a drift
    of the machine's speed reaches both alike.
    """
    cancelled_before = len(CANCEL_LOG.findall(server.log_text()))
    undisturbed, after, first_deltas = disconnect_rounds(server)
    time.sleep(1.0)  # the last cancellation's log line may trail
    cancelled = [int(n) for n in CANCEL_LOG.findall(server.log_text())]
    cancelled = cancelled[cancelled_before:]
    baseline = median([r.ttft_s for r in undisturbed if r.ttft_s is not None])
    disturbed = median([r.ttft_s for r in after if r.ttft_s is not None])
    return {
        "prompt_cache": "on (default size); every prompt starts with its own nonce",
        "rounds": DISCONNECTS,
        "undisturbed_ttft_s": [r.ttft_s for r in undisturbed],
        "undisturbed_median_s": baseline,
        "disconnect_first_delta_s": spread(first_deltas),
        "after_ttft_s": [r.ttft_s for r in after],
        "after_median_s": disturbed,
        "after_over_undisturbed": disturbed / baseline if baseline else None,
        "measured_cache_read": [
            r.usage.get("cache_read_input_tokens") for r in undisturbed + after
        ],
        "cancel_log_lines": len(cancelled),
        "tokens_generated_before_cancel_max": max(cancelled, default=None),
    }

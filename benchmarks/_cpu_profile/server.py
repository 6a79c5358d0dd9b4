"""Step (c): the server's prefill and decode, through streaming /v1/messages.

gunicorn + Pensieve with the CPU profile at `auto` (on, on the CPU backend).
The prefill figure is input_tokens (not from the prompt cache) over the time
to the first content_block_delta, for a prompt sized with count_tokens; the
decode figure is that of _stream.TimedMessage.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from _server import Readiness, anthropic_headers, running_pensieve
from _stream import timed_message

from .fixtures import (
    API_KEY,
    DECODE_PROMPT,
    FILLER,
    REQUEST_TIMEOUT_S,
    SERVER_PREFILL_TOKENS,
    SERVER_READY_TIMEOUT_S,
    SUMMARY_REQUEST,
)

HEADERS = anthropic_headers(API_KEY)


def count_tokens(url: str, text: str) -> int:
    """The server's token count of a one-message prompt `text`."""
    response = requests.post(
        f"{url}/v1/messages/count_tokens",
        json={"model": "bundled", "messages": [{"role": "user", "content": text}]},
        headers=HEADERS,
        timeout=REQUEST_TIMEOUT_S,
    )
    response.raise_for_status()
    return int(response.json()["input_tokens"])


def sized_prompt(url: str, target: int) -> tuple[Callable[[int], str], int]:
    """Prompts numbered 0, 1, ... whose rendering has at most `target` tokens.

    Each starts with its own number, so that no request shares more than the
    chat template's header with an earlier one in the server's prompt cache.
    """
    words = FILLER.split()

    def text_of(n: int, number: int = 0) -> str:
        body = " ".join(words[i % len(words)] for i in range(n))
        return f"Note {number}: {body}{SUMMARY_REQUEST}"

    low, high = 1, 4 * target  # a word is at least a token
    while low < high:
        middle = (low + high + 1) // 2
        if count_tokens(url, text_of(middle)) <= target:
            low = middle
        else:
            high = middle - 1
    return lambda number: text_of(low, number), count_tokens(url, text_of(low))


def stream_message(url: str, prompt: str, max_tokens: int) -> dict[str, Any]:
    """One streaming /v1/messages request, timed per SSE event."""
    return timed_message(
        url, prompt, max_tokens, api_key=API_KEY, timeout_s=REQUEST_TIMEOUT_S
    ).figures()


def prefill_runs(
    url: str, prompt_of: Callable[[int], str], repeats: int
) -> list[dict[str, Any]]:
    """`repeats` numbered ~1,024-token prompts, 8 new tokens each."""
    prefills = []
    for number in range(1, repeats + 1):
        run = stream_message(url, prompt_of(number), 8)
        run["prefill_tps"] = run["input_tokens"] / run["ttft_s"]
        prefills.append(run)
        print(
            f"      server: prefill {run['input_tokens']} tokens "
            f"({run['cache_read_input_tokens']} cached): first delta after "
            f"{run['ttft_s']:.2f} s, {run['prefill_tps']:.1f} tok/s",
            flush=True,
        )
    return prefills


def decode_runs(url: str, decode_tokens: int, repeats: int) -> list[dict[str, Any]]:
    """`repeats` decodes of `decode_tokens` tokens after the decode prompt."""
    decodes = []
    for _ in range(repeats):
        run = stream_message(url, DECODE_PROMPT, decode_tokens)
        decodes.append(run)
        print(
            f"      server: decode {run['output_tokens']} tokens "
            f"({run['stop_reason']}): {run['decode_tps'] or 0:.1f} tok/s",
            flush=True,
        )
    return decodes


def bench_server(
    cache_dir: Path, log_path: Path, decode_tokens: int, repeats: int
) -> dict[str, Any]:
    """(c): gunicorn with the CPU profile on, measured through /v1/messages."""
    with running_pensieve(
        cache_dir,
        log_path,
        API_KEY,
        settings={"CPU_PROFILE": "auto"},
        readiness=Readiness(timeout_s=SERVER_READY_TIMEOUT_S, poll_s=0.1),
    ) as ready:
        url, health, ready_s = ready.url, ready.health, ready.ready_s
        print(
            f"      server: ready in {ready_s:.1f} s, backend {health.get('backend')}"
            f", cpu_profile {health.get('cpu_profile')}",
            flush=True,
        )
        prompt_of, tokens = sized_prompt(url, SERVER_PREFILL_TOKENS)
        stream_message(url, "Say hello.", 4)  # warm-up
        prefills = prefill_runs(url, prompt_of, repeats)
        decodes = decode_runs(url, decode_tokens, repeats)
    best_prefill = max(prefills, key=lambda run: run["prefill_tps"])
    best_decode = max(decodes, key=lambda run: run["decode_tps"] or 0.0)
    return {
        "start_to_ready_s": ready_s,
        "backend": health.get("backend"),
        "cpu_profile": health.get("cpu_profile"),
        "prefill_prompt_tokens": tokens,
        "prefill_input_tokens": best_prefill["input_tokens"],
        "prefill_cache_read_tokens": best_prefill["cache_read_input_tokens"],
        "prefill_ttft_runs_s": [run["ttft_s"] for run in prefills],
        "prefill_tps": best_prefill["prefill_tps"],
        "decode_runs_tps": [run["decode_tps"] for run in decodes],
        "decode_output_tokens": best_decode["output_tokens"],
        "decode_stop_reason": best_decode["stop_reason"],
        "decode_tps": best_decode["decode_tps"],
        "decode_text": best_decode["text"],
    }

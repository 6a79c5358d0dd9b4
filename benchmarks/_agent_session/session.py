"""The Claude-Code-shaped agent session: 5 turns, cold and warm first-token time.

Pensieve gets Claude Code's request (billing stamp block, system text, tools);
mlx_lm.server, whose chat template knows no tools, gets one system message:
the stamp, the system text and the tools in the very text Pensieve renders,
so both servers see prompts of the same size.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

from _report import median
from pensieve.engine import ToolSpec
from pensieve.engine.prompt import GENERIC_TOOLS_PROMPT, tool_json

from .client import Stream, anthropic_stream, openai_stream
from .fixtures import (
    BILLING_PREFIX,
    FIRST_QUESTION,
    FOLLOW_UPS,
    LONG_TIMEOUT,
    MAX_TOKENS,
    PROMPT_LOG,
    SYSTEM_TEXT,
    TOOLS,
    TURNS,
)
from .servers import Server

Send = Callable[[str, list[dict[str, str]]], Stream]  # (billing, history) -> turn


@dataclass
class Turn:
    """One turn of an agent session."""

    turn: int
    ttft_s: float
    total_s: float
    prompt_tokens: int
    input_tokens: int
    cache_read: int
    output_tokens: int
    text: str
    log_prompt: int | None = None  # Pensieve's log line "prompt N tokens"
    log_cached: int | None = None  # "... (M from cache)"


@contextlib.contextmanager
def ticker(label: str, every: float = 30.0) -> Iterator[None]:
    """Print the elapsed time every `every` seconds while the block runs."""
    done = threading.Event()
    started = time.perf_counter()

    def tick() -> None:
        while not done.wait(every):
            elapsed = time.perf_counter() - started
            print(f"        ... {label}: {elapsed:.0f} s", flush=True)

    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def billing_block() -> str:
    """Claude Code's per-request stamp: a new `cch` value every turn."""
    return f"{BILLING_PREFIX}{secrets.token_hex(3)[:5]};"


def tools_text() -> str:
    """The tools as Pensieve renders them for a template without tool support."""
    specs = [ToolSpec(t["name"], t["description"], t["input_schema"]) for t in TOOLS]
    return GENERIC_TOOLS_PROMPT.format(
        tools="\n".join(json.dumps(tool_json(spec)) for spec in specs)
    )


def claude_code_body(
    billing: str,
    history: list[dict[str, str]],
    *,
    tools: list[dict[str, Any]] = TOOLS,
    system_text: str = SYSTEM_TEXT,
) -> dict[str, Any]:
    """A streamed /v1/messages request as Claude Code sends it: the billing
    stamp block first, then the cached system text, the tools, the history."""
    return {
        "model": "bundled",
        "max_tokens": MAX_TOKENS,
        "temperature": 0,
        "stream": True,
        "system": [
            {"type": "text", "text": billing},
            {
                "type": "text",
                "text": system_text,
                "cache_control": {"type": "ephemeral"},
            },
        ],
        "tools": tools,
        "messages": history,
        "metadata": {"user_id": "agent-session-benchmark"},
    }


def pensieve_turn(url: str) -> Send:
    """A turn as Claude Code sends it to /v1/messages."""

    def send(billing: str, history: list[dict[str, str]]) -> Stream:
        body = claude_code_body(billing, history)
        return anthropic_stream(url, body, timeout_s=LONG_TIMEOUT)

    return send


def mlx_lm_turn(url: str) -> Send:
    """The same turn for mlx_lm.server: stamp, system text, tools as one message."""
    tools = tools_text()

    def send(billing: str, history: list[dict[str, str]]) -> Stream:
        system = f"{billing}\n{SYSTEM_TEXT}\n\n{tools}"
        body = {
            "messages": [{"role": "system", "content": system}, *history],
            "max_tokens": MAX_TOKENS,
            "temperature": 0,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        return openai_stream(url, body, timeout_s=LONG_TIMEOUT)

    return send


def to_turn(index: int, stream: Stream, openai: bool) -> Turn:
    """A finished turn's figures from either API's usage; RuntimeError if it failed."""
    if stream.error or stream.ttft_s is None or stream.total_s is None:
        raise RuntimeError(f"turn {index} failed: {stream}")
    usage = stream.usage
    if openai:
        prompt = int(usage.get("prompt_tokens", 0))
        cached = int((usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0))
        fresh, output = prompt - cached, int(usage.get("completion_tokens", 0))
    else:
        cached = int(usage.get("cache_read_input_tokens", 0))
        fresh = int(usage.get("input_tokens", 0))  # the rest were processed:
        fresh += int(usage.get("cache_creation_input_tokens") or 0)
        prompt, output = fresh + cached, int(usage.get("output_tokens", 0))
    return Turn(
        index, stream.ttft_s, stream.total_s, prompt, fresh, cached, output, stream.text
    )


def warm_up(server: Server, openai: bool) -> None:
    """One short request: the model is loaded and its first call is behind us."""
    messages = [{"role": "user", "content": "Say hello."}]
    if openai:
        body = {"messages": messages, "max_tokens": 4, "stream": True}
        stream = openai_stream(server.url, body, timeout_s=LONG_TIMEOUT)
    else:
        body = {"model": "bundled", "max_tokens": 4, "stream": True}
        body["messages"] = messages
        stream = anthropic_stream(server.url, body, timeout_s=LONG_TIMEOUT)
    if stream.error:
        raise RuntimeError(f"{server.name}: warm-up failed: {stream.error}")


def run_turns(server: Server, send: Send, openai: bool) -> list[Turn]:
    """The turns, each adding the previous answer and the next follow-up."""
    history = [{"role": "user", "content": FIRST_QUESTION}]
    turns: list[Turn] = []
    for index in range(1, TURNS + 1):
        print(f"      turn {index}/{TURNS} ...", flush=True)
        with ticker(f"{server.name} turn {index}"):
            stream = send(billing_block(), history)
        turn = to_turn(index, stream, openai)
        turns.append(turn)
        print(
            f"      turn {index}: TTFT {turn.ttft_s:.2f} s, prompt "
            f"{turn.prompt_tokens} tokens ({turn.cache_read} from cache), "
            f"answer {turn.text!r}",
            flush=True,
        )
        if index < TURNS:
            history.append({"role": "assistant", "content": turn.text or "(none)"})
            history.append({"role": "user", "content": FOLLOW_UPS[index - 1]})
    return turns


def run_session(server: Server, openai: bool) -> dict[str, Any]:
    """The 5-turn session; cold and warm TTFT, usage and log lines per turn."""
    warm_up(server, openai)
    send = mlx_lm_turn(server.url) if openai else pensieve_turn(server.url)
    turns = run_turns(server, send, openai)
    if not openai:
        logged = PROMPT_LOG.findall(server.log_text())[-TURNS:]
        for turn, (prompt, cached) in zip(turns, logged, strict=False):
            turn.log_prompt, turn.log_cached = int(prompt), int(cached)
    cold = turns[0].ttft_s
    warm = median([t.ttft_s for t in turns[1:]])
    return {
        "server_ready_s": server.ready_s,
        "cold_ttft_s": cold,
        "warm_ttft_median_s": warm,
        "warm_over_cold": warm / cold if warm is not None and cold else None,
        "prefix_tokens": turns[0].prompt_tokens,
        "turns": [asdict(t) for t in turns],
    }


def session_anomalies(name: str, session: dict[str, Any]) -> list[str]:
    """Turns whose cache reuse fell short of the previous turn's prompt."""
    notes = []
    turns = session["turns"]
    for previous, turn in zip(turns, turns[1:], strict=False):
        if turn["cache_read"] < previous["prompt_tokens"]:
            notes.append(
                f"{name} turn {turn['turn']}: {turn['cache_read']} tokens from cache, "
                f"fewer than the previous prompt's {previous['prompt_tokens']}"
            )
        logged = turn["log_cached"]
        if logged is not None and logged != turn["cache_read"]:
            notes.append(
                f"{name} turn {turn['turn']}: log says {logged} from cache, usage "
                f"says {turn['cache_read']}"
            )
        if (
            turn["log_prompt"] is not None
            and turn["log_prompt"] != turn["prompt_tokens"]
        ):
            notes.append(
                f"{name} turn {turn['turn']}: log prompt {turn['log_prompt']} "
                f"tokens, usage {turn['prompt_tokens']}"
            )
    return notes

"""Prompt-cache benchmark: Claude Code's ~20k-token prefix, at default settings.

One run, on one model, measures through the real server (gunicorn + Pensieve,
streaming `POST /v1/messages`, a fresh instance folder: every setting at its
default, the prompt cache's budget `auto`):

1. A Claude-Code-shaped session: a system text and tools shaped like Claude
   Code's (its five tools plus MCP-style copies of them, until the system +
   tools prefix reaches `--prefix-tokens`, sized with `count_tokens`), whose
   first system block is the billing stamp with a new `cch` every turn, then
   5 turns, each adding the previous answer and a short follow-up;
   max_tokens 16, temperature 0. Time to first token of turn 1 (cold) and of
   turns 2-5 (warm, median), and each turn's cache read tokens.
2. Uncached requests with a full cache: prompts of turn 1's size that begin
   with a nonce (nothing but the chat template's first tokens is cached), sent
   in turns to that server, whose cache now holds the session and every
   earlier such prompt, and to a second server started with
   PENSIEVE_PROMPT_CACHE_MB=0 (no cache). Both are loaded and warmed up
   before; the two series interleave, so a drift of the machine reaches both.
3. Memory: mlx's peak and the process's resident set from `/health`, the
   prompt cache's entries and bytes, and the budget line of the server log.

The model is `bundled` (the default) or a model directory, e.g. one written by
synthetic_model.py. A prefix longer than the model's context window allows is
cut to the window less 1,024 tokens (the bundled model's window is 8k: the
figure is printed). Goals: warm TTFT <= 5% of cold; uncached TTFT with a full
cache within 5% of uncached TTFT with none. Exit 1 on a missed goal.

    python benchmarks/prompt_cache.py [--model DIR] [--prefix-tokens 20000]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import secrets
import sys
import tempfile
from pathlib import Path
from typing import Any

import requests

from _agent_session.client import Stream, anthropic_stream
from _agent_session.fixtures import (
    API_KEY,
    FIRST_QUESTION,
    FOLLOW_UPS,
    SYSTEM_TEXT,
    TOOLS,
)
from _agent_session.servers import Server, pensieve_server
from _agent_session.session import billing_block, claude_code_body
from _report import (
    banner,
    exit_status,
    fmt,
    goal_line,
    load_warning,
    loadavg,
    machine_info,
    median,
    print_table,
    rounded,
)
from _server import anthropic_headers
from pensieve.config import resolve_cache_dir

TURNS = 5
TIMEOUT_S = 1800.0
WARM_GOAL = 0.05  # warm TTFT at most this share of cold
UNCACHED_GOAL = 0.05  # uncached TTFT with a full cache within this of none
BUDGET_LOG = re.compile(r"prompt cache budget (.*)")
KEPT_LOG = re.compile(r"prompt cache: a \d+-token entry .*")
TTFT_LOG = re.compile(r"first token after ([\d.]+) s")  # from getting the model


def extra_tools(copies: int) -> list[dict[str, Any]]:
    """MCP-style tools shaped like Claude Code's own (as many copies as asked)."""
    tools = []
    for index in range(copies):
        tool = copy.deepcopy(TOOLS[index % len(TOOLS)])
        server = f"workspace{index // len(TOOLS) + 1}"
        tool["name"] = f"mcp__{server}__{tool['name'].lower()}"
        tool["description"] = f"[{server}] {tool['description']}"
        tools.append(tool)
    return tools


def request_body(
    tools: list[dict[str, Any]], history: list[dict[str, str]], *, nonce: str = ""
) -> dict[str, Any]:
    """A turn as Claude Code sends it; a `nonce` starts the system text."""
    return claude_code_body(
        billing_block(), history, tools=tools, system_text=f"{nonce}{SYSTEM_TEXT}"
    )


def count_tokens(url: str, body: dict[str, Any]) -> int:
    fields = {k: v for k, v in body.items() if k not in ("stream", "max_tokens")}
    response = requests.post(
        f"{url}/v1/messages/count_tokens",
        json=fields,
        headers=anthropic_headers(API_KEY),
        timeout=120,
    )
    response.raise_for_status()
    return int(response.json()["input_tokens"])


def sized_tools(url: str, target: int) -> tuple[list[dict[str, Any]], int]:
    """Claude Code's tools plus as many copies as bring the prompt to `target`."""
    history = [{"role": "user", "content": FIRST_QUESTION}]
    base = count_tokens(url, request_body(TOOLS, history))
    per_tool = (
        count_tokens(url, request_body(TOOLS + extra_tools(10), history)) - base
    ) / 10
    copies = max(0, round((target - base) / per_tool))
    tools = TOOLS + extra_tools(copies)
    return tools, count_tokens(url, request_body(tools, history))


def send(url: str, body: dict[str, Any]) -> Stream:
    stream = anthropic_stream(url, body, timeout_s=TIMEOUT_S)
    if stream.error or stream.ttft_s is None:
        raise RuntimeError(f"request failed: {stream}")
    return stream


def cache_read(stream: Stream) -> int:
    return int(stream.usage.get("cache_read_input_tokens") or 0)


def session(server: Server, tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Five turns; each adds the answer and the next follow-up."""
    history = [{"role": "user", "content": FIRST_QUESTION}]
    turns = []
    for index in range(1, TURNS + 1):
        stream = send(server.url, request_body(tools, history))
        usage = stream.usage
        prompt = sum(
            int(usage.get(key) or 0)
            for key in ("input_tokens", "cache_creation_input_tokens")
        ) + cache_read(stream)
        turns.append(
            {
                "turn": index,
                "ttft_s": stream.ttft_s,
                "prompt": prompt,
                "read": cache_read(stream),
            }
        )
        print(
            f"      turn {index}: TTFT {stream.ttft_s:.3f} s, prompt {prompt} "
            f"tokens ({cache_read(stream)} from cache)",
            flush=True,
        )
        history.append({"role": "assistant", "content": stream.text or "(none)"})
        history.append({"role": "user", "content": FOLLOW_UPS[index % len(FOLLOW_UPS)]})
    return turns


def uncached(
    cached: Server, plain: Server, tools: list[dict[str, Any]], rounds: int
) -> dict[str, list[float]]:
    """Nonce-led prompts, alternately to the server with a full cache and without."""
    history = [{"role": "user", "content": FIRST_QUESTION}]
    times: dict[str, list[float]] = {"full_cache": [], "no_cache": [], "read": []}
    for index in range(rounds):
        order = [("full_cache", cached), ("no_cache", plain)]
        for name, server in order if index % 2 == 0 else order[::-1]:
            nonce = f"Session {secrets.token_hex(8)}.\n"
            stream = send(server.url, request_body(tools, history, nonce=nonce))
            times[name].append(float(stream.ttft_s or 0.0))
            if name == "full_cache":
                times["read"].append(float(cache_read(stream)))
        print(
            f"      round {index + 1}: full cache {times['full_cache'][-1]:.3f} s, "
            f"no cache {times['no_cache'][-1]:.3f} s",
            flush=True,
        )
    return times


def health(server: Server) -> dict[str, Any]:
    keyed = anthropic_headers(API_KEY)
    return requests.get(f"{server.url}/health", timeout=10, headers=keyed).json()


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Start both servers, size the prefix, run the session and the rounds."""
    model = {"MODEL": args.model}
    with tempfile.TemporaryDirectory(prefix="pensieve-prompt-cache-") as scratch:
        work = Path(scratch)
        with (
            pensieve_server("default", args.cache_dir, work, **model) as server,
            pensieve_server(
                "no-cache", args.cache_dir, work, PROMPT_CACHE_MB="0", **model
            ) as plain,
        ):
            ready = health(server)
            window = int(ready["context_length"])
            tools, prefix = sized_tools(
                server.url, min(args.prefix_tokens, window - 1024)
            )
            print(
                f"  model {ready['model']} on {ready['backend']}, window {window}; "
                f"prefix {prefix} tokens ({len(tools)} tools)",
                flush=True,
            )
            # The first calls behind us: on a GPU, a first prompt of this size
            # also pays for kernels and buffers once (~2x its prefill).
            first = tools if ready["backend"] != "cpu" else TOOLS
            hello = [{"role": "user", "content": "Hi"}]
            warm_ups = [
                send(warm.url, request_body(first, hello, nonce="Warm-up.\n")).ttft_s
                for warm in (server, plain)
            ]
            print("  session (5 turns):", flush=True)
            logged = len(server.log_text())
            turns = session(server, tools)
            server_ttft = [
                float(t) for t in TTFT_LOG.findall(server.log_text()[logged:])
            ]
            print(f"  uncached, {args.rounds} rounds:", flush=True)
            times = uncached(server, plain, tools, args.rounds)
            after = health(server)
            log = server.log_text()
    budget = BUDGET_LOG.findall(log)
    gib = 1024**3
    return {
        "model": ready["model"],
        "backend": ready["backend"],
        "window": window,
        "prefix_tokens": prefix,
        "warm_up_ttft_s": warm_ups,
        "turns": turns,
        "server_ttft_s": server_ttft,
        "cold_ttft_s": turns[0]["ttft_s"],
        "warm_ttft_s": median([turn["ttft_s"] for turn in turns[1:]]) or 0.0,
        "uncached": times,
        "uncached_full_cache_s": median(times["full_cache"]) or 0.0,
        "uncached_no_cache_s": median(times["no_cache"]) or 0.0,
        "mlx_peak_gib": after["memory"].get("mlx_peak_bytes", 0) / gib,
        "rss_gib": after["memory"]["rss_bytes"] / gib,
        "cache": after["prompt_cache"],
        "budget": budget[0] if budget else None,
        "kept_lines": KEPT_LOG.findall(log),
    }


def report(results: dict[str, Any]) -> dict[str, bool]:
    """Print the table; the goals, met or not."""
    cold, warm = results["cold_ttft_s"], results["warm_ttft_s"]
    full, none = results["uncached_full_cache_s"], results["uncached_no_cache_s"]
    held = results["cache"]
    rows = [
        ("model / backend", f"{results['model']} / {results['backend']}"),
        ("prefix (system + tools)", f"{results['prefix_tokens']} tokens"),
        ("prompt cache budget", results["budget"] or "n/a"),
        (
            "first request of the size (warm-up)",
            fmt(results["warm_up_ttft_s"][0], " s"),
        ),
        ("cold TTFT (turn 1)", fmt(cold, " s")),
        ("warm TTFT (turns 2-5, median)", fmt(warm, " s")),
        ("warm / cold", f"{warm / cold:.1%}"),
        (
            "server's first token, turns 1-5",
            ", ".join(f"{t:.2f}" for t in results["server_ttft_s"]),
        ),
        ("cache read, turns 1-5", ", ".join(str(t["read"]) for t in results["turns"])),
        ("uncached TTFT, full cache (median)", fmt(full, " s")),
        ("uncached TTFT, no cache (median)", fmt(none, " s")),
        ("full / none", f"{full / none:.3f}"),
        ("cache held", f"{held['entries']} entries, {held['bytes'] / 1024**3:.2f} GiB"),
        ("mlx peak memory", f"{results['mlx_peak_gib']:.2f} GiB"),
        ("resident set", f"{results['rss_gib']:.2f} GiB"),
    ]
    print_table(rows, 40)
    return {
        f"warm TTFT <= {WARM_GOAL:.0%} of cold": warm <= WARM_GOAL * cold,
        f"uncached TTFT with a full cache within {UNCACHED_GOAL:.0%} of none": abs(
            full / none - 1
        )
        <= UNCACHED_GOAL,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", default="bundled", help="bundled or a model directory"
    )
    parser.add_argument("--prefix-tokens", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=4, help="uncached pairs")
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=resolve_cache_dir(os.environ.get("PENSIEVE_CACHE_DIR", "")),
    )
    args = parser.parse_args()
    info = machine_info()
    print(banner("prompt cache at scale", info), flush=True)
    results = {"machine": info, **measure(args)}
    info["loadavg_end"] = loadavg()
    goals = report(results)
    print("\ngoals:")
    for text, met in goals.items():
        print(goal_line(met, text))
    if warning := load_warning(info):
        print(warning)
    print("JSON: " + json.dumps(rounded(results, 4)))
    return exit_status(goals)


if __name__ == "__main__":
    sys.exit(main())

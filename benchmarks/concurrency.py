"""Concurrent streams: aggregate decode rate, first-token and inter-token times.

    python benchmarks/concurrency.py [--streams 1,2,4,8] [--max-tokens 128]
                                     [--servers pensieve,mlx_lm] [--model DIR]

For each server (Pensieve through gunicorn at its default settings, and
mlx-lm's own `mlx_lm.server` on the same model folder) and each number of
concurrent streams N, N clients start the same kind of request at once
(`POST /v1/chat/completions`, streamed, greedy, `max_tokens` tokens; each
client's prompt differs, so no prompt cache is shared) and time every chunk.

- aggregate decode tok/s: the chunks of all streams after their first, over
  the time from the first stream's first chunk to the last stream's end;
- TTFT p50/p95: request sent to first content chunk;
- inter-token p50/p95: the gaps between a stream's consecutive chunks.

Then the prefill probe: 4 streams decode, and a request with a ~4,000-token
prompt arrives mid-stream; the running streams' inter-token p95 while it is
prefilled is compared with theirs before it arrived.

Goals (issue "Continuous batching"), checked for Pensieve: 4 streams give
at least 2.5x the aggregate of one; the 4k prefill raises the others' p95 at
most 2x. The script exits 1 if one is missed. Only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

from _report import banner, exit_status, goal_line, loadavg, machine_info
from _server import (
    Readiness,
    free_port,
    gunicorn_command,
    mlx_lm_server_command,
    pensieve_env,
    running_server,
)
from _stream import sse_data
from pensieve.models.resolve import resolve_model

KEY = "pensieve-benchmark-key"
HEADER = (
    "| server | streams | aggregate tok/s | TTFT p50 | TTFT p95 "
    "| ITL p50 | ITL p95 |\n|---|---|---|---|---|---|---|"
)
TIMEOUT = 900.0
# The model id each server answers to (mlx_lm.server loads the one named).
MODEL: dict[str, str] = {}


def quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def stream(url: str, prompt: str, max_tokens: int, record: dict[str, Any]) -> None:
    """One streamed chat completion; chunk arrival times into `record`."""
    body = {
        "model": MODEL[url],
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
    }
    record["sent"] = time.perf_counter()
    stamps: list[float] = []
    record["stamps"] = stamps  # filled as chunks arrive (the prefill probe reads it)
    with requests.post(
        f"{url}/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {KEY}"},
        stream=True,
        timeout=TIMEOUT,
    ) as response:
        response.raise_for_status()
        for now, data in sse_data(response.iter_content(chunk_size=None)):
            if data is None:
                break
            for choice in data.get("choices", []):
                if (choice.get("delta") or {}).get("content"):
                    stamps.append(now)


def run_streams(url: str, prompts: list[str], max_tokens: int) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = [{} for _ in prompts]
    threads = [
        threading.Thread(target=stream, args=(url, p, max_tokens, r))
        for p, r in zip(prompts, records, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return records


def gaps_of(stamps: list[float]) -> list[float]:
    """The gaps between consecutive chunk arrivals."""
    return [b - a for a, b in zip(stamps, stamps[1:], strict=False)]


def summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    firsts = [r["stamps"][0] for r in records if r.get("stamps")]
    lasts = [r["stamps"][-1] for r in records if r.get("stamps")]
    decoded = sum(max(len(r.get("stamps", [])) - 1, 0) for r in records)
    span = max(lasts) - min(firsts) if firsts else 0.0
    ttft = [r["stamps"][0] - r["sent"] for r in records if r.get("stamps")]
    gaps = [g for r in records for g in gaps_of(r.get("stamps", []))]
    return {
        "streams": len(records),
        "aggregate_tps": decoded / span if span > 0 else None,
        "ttft_p50": quantile(ttft, 0.5),
        "ttft_p95": quantile(ttft, 0.95),
        "itl_p50": quantile(gaps, 0.5),
        "itl_p95": quantile(gaps, 0.95),
    }


def prompts(count: int, salt: str) -> list[str]:
    return [
        f"[{salt} {i}] Count from 1 to 400, separated by commas." for i in range(count)
    ]


def prefill_probe(url: str, max_tokens: int) -> dict[str, Any]:
    """Inter-token p95 of 4 running streams before and during a 4k prefill."""
    records: list[dict[str, Any]] = [{} for _ in range(4)]
    threads = [
        threading.Thread(target=stream, args=(url, p, max_tokens, r))
        for p, r in zip(prompts(4, "probe"), records, strict=True)
    ]
    for thread in threads:
        thread.start()
    # Let the four streams reach steady decoding first.
    while sum(len(r.get("stamps", [])) for r in records) < 40:
        if not any(thread.is_alive() for thread in threads):
            break
        time.sleep(0.05)
    arrived = time.perf_counter()
    long_prompt = "Summarise this log. " + " ".join(
        f"line {i}: ok" for i in range(1000)
    )
    newcomer: dict[str, Any] = {}
    stream(url, long_prompt, 8, newcomer)
    prefilled = newcomer["stamps"][0] if newcomer.get("stamps") else time.perf_counter()
    for thread in threads:
        thread.join()
    before, during = [], []
    for r in records:
        stamps = r.get("stamps", [])
        for b, gap in zip(stamps[1:], gaps_of(stamps), strict=True):
            if b < arrived:
                before.append(gap)
            elif b - gap < prefilled:
                during.append(gap)
    p95_before, p95_during = quantile(before, 0.95), quantile(during, 0.95)
    ratio = p95_during / p95_before if p95_before and p95_during else None
    return {"itl_p95_before": p95_before, "itl_p95_during": p95_during, "ratio": ratio}


@contextmanager
def server(kind: str, model_dir: Path, log: Path) -> Iterator[str]:
    port = free_port()
    cache = Path.home() / ".cache" / "pensieve"
    if kind == "pensieve":
        env = pensieve_env(port, cache, KEY, model=str(model_dir))
        command = gunicorn_command()
    else:
        env = dict(os.environ)
        command = mlx_lm_server_command(model_dir, port)
    readiness = Readiness(read_health=False, timeout_s=300)
    with running_server(command, env, port, log, readiness) as ready:
        MODEL[ready.url] = "local" if kind == "pensieve" else str(model_dir)
        yield ready.url


def check_goals(results: dict[str, Any]) -> dict[str, bool]:
    """Print Pensieve's goals (and the other servers' probe); met or not."""
    goals: dict[str, bool] = {}
    mine = results.get("pensieve")
    if mine:
        by_count = {r["streams"]: r["aggregate_tps"] for r in mine["rows"]}
        if by_count.get(1) and by_count.get(4):
            scale = by_count[4] / by_count[1]
            goals["4 streams >= 2.5x one"] = scale >= 2.5
            text = f"4 streams give {scale:.2f}x one stream (goal 2.5x)"
            print(goal_line(scale >= 2.5, text))
    for kind, result in results.items():
        probe = result["prefill_probe"]
        if not probe or probe["ratio"] is None:
            continue
        text = (
            f"{kind}: a 4k prefill mid-stream: ITL p95 "
            f"{fmt(probe['itl_p95_before'])} -> {fmt(probe['itl_p95_during'])} s"
            f" = {probe['ratio']:.2f}x"
        )
        if kind == "pensieve":
            goals["4k prefill raises ITL p95 <= 2x"] = probe["ratio"] <= 2.0
            print(goal_line(probe["ratio"] <= 2.0, text + " (goal 2x)"))
        else:
            print(text)
    return goals


def fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", default="1,2,4,8")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--servers", default="pensieve,mlx_lm")
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--no-probe", action="store_true")
    args = parser.parse_args()
    counts = [int(n) for n in args.streams.split(",")]
    model_dir = (
        args.model
        or resolve_model(
            "bundled", cache_dir=Path.home() / ".cache" / "pensieve", fallback=False
        ).path
    )
    info = machine_info()
    print(banner("Pensieve concurrency benchmark", info))
    print(
        f"model {model_dir}, max_tokens {args.max_tokens}, greedy, chat completions\n"
    )
    print(HEADER)
    results: dict[str, Any] = {}
    for kind in args.servers.split(","):
        log = Path(tempfile.mkdtemp()) / f"{kind}.log"
        with server(kind, model_dir, log) as url:
            run_streams(url, prompts(1, "warm"), 16)  # warm-up
            rows = []
            for count in counts:
                row = summary(
                    run_streams(url, prompts(count, f"n{count}"), args.max_tokens)
                )
                rows.append(row)
                print(
                    f"| {kind} | {count} | {fmt(row['aggregate_tps'], 1)} | "
                    f"{fmt(row['ttft_p50'])} | {fmt(row['ttft_p95'])} | "
                    f"{fmt(row['itl_p50'])} | {fmt(row['itl_p95'])} |",
                    flush=True,
                )
            probe = None if args.no_probe else prefill_probe(url, args.max_tokens)
            results[kind] = {"rows": rows, "prefill_probe": probe}
    print()
    goals = check_goals(results)
    info["loadavg_end"] = loadavg()
    print("\nJSON: " + json.dumps({"machine": info, "results": results}, default=str))
    return exit_status(goals)


if __name__ == "__main__":
    sys.exit(main())

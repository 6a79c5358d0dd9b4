"""Concurrent streams: aggregate decode rate, first-token and inter-token times.

    python benchmarks/concurrency.py [--streams 1,2,4,8] [--max-tokens 128]
                                     [--servers pensieve,mlx_lm] [--model DIR]

For each server (Pensieve through gunicorn at its default settings; with
`--before DIR --servers pensieve,before,mlx_lm`, also the Pensieve of another
checkout; and mlx-lm's own `mlx_lm.server` on the same model folder) and each
number of
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

Last, mlx-lm's `stream_generate` alone on the model, loaded as the server
loads it (median of 3), for the single-stream goal.

Goals (issue "Continuous batching"), checked for Pensieve: 4 streams give
at least 2.5x the aggregate of one on a CPU (8 streams 4x on a GPU); the 4k
prefill raises the others' p95 at most 2x; one stream decodes within 3% of
raw `stream_generate`. The script exits 1 if one is missed. Only 127.0.0.1
is contacted.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

from _files import ROOT
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
        # read1: whatever has arrived. iter_content(None) would wait for the
        # end of a response sent without chunked encoding (mlx_lm.server's).
        chunks = iter(lambda: response.raw.read1(65536), b"")
        for now, data in sse_data(chunks):
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
def server(kind: str, model_dir: Path, log: Path, before: Path | None) -> Iterator[str]:
    """`pensieve` (this checkout), `before` (Pensieve in the `before` checkout)
    or `mlx_lm` (mlx_lm.server), on `model_dir`; its URL."""
    port = free_port()
    cache = Path.home() / ".cache" / "pensieve"
    root = ROOT
    if kind in ("pensieve", "before"):
        env = pensieve_env(port, cache, KEY, model=str(model_dir))
        command = gunicorn_command()
        if kind == "before":
            assert before is not None, "--before DIR names that checkout"
            root = before
    else:
        env = dict(os.environ)
        command = mlx_lm_server_command(model_dir, port)
    readiness = Readiness(read_health=False, timeout_s=300)
    with running_server(command, env, port, log, readiness, cwd=root) as ready:
        MODEL[ready.url] = "local" if kind != "mlx_lm" else str(model_dir)
        yield ready.url


RAW = """
import sys, time
from pathlib import Path
from pensieve.engine.loading import CPUProfile, load_model
loaded = load_model(Path(sys.argv[1]), CPUProfile())
import mlx.core as mx
from mlx_lm.generate import stream_generate
prompt = loaded.tokenizer.apply_chat_template(
    [{"role": "user", "content": "[raw] Count from 1 to 400, separated by commas."}],
    add_generation_prompt=True,
)
rates = []
for _ in range(3):
    stamps = [time.perf_counter() for _ in stream_generate(
        loaded.model, loaded.tokenizer, mx.array(prompt), max_tokens=int(sys.argv[2])
    )]
    rates.append((len(stamps) - 1) / (stamps[-1] - stamps[0]))
print(sorted(rates)[1])
"""


def raw_decode_rate(model_dir: Path, max_tokens: int) -> float:
    """mlx-lm's own `stream_generate` on the model as the server loads it
    (CPU profile on): the median of 3 runs' decode tok/s."""
    result = subprocess.run(
        [sys.executable, "-c", RAW, str(model_dir), str(max_tokens)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return float(result.stdout.split()[-1])


def check_goals(
    results: dict[str, Any], raw: float | None, backend: str
) -> dict[str, bool]:
    """Print Pensieve's goals (and the other servers' probe); met or not.
    On a GPU the batch goal is 8 streams at 4x one, on a CPU 4 at 2.5x."""
    goals: dict[str, bool] = {}
    mine = results.get("pensieve")
    if mine:
        by_count = {r["streams"]: r["aggregate_tps"] for r in mine["rows"]}
        many, factor = (8, 4.0) if backend in ("cuda", "metal") else (4, 2.5)
        if by_count.get(1) and by_count.get(many):
            scale = by_count[many] / by_count[1]
            name = f"{many} streams >= {factor}x one"
            goals[name] = scale >= factor
            text = f"{many} streams give {scale:.2f}x one stream (goal {factor}x)"
            print(goal_line(scale >= factor, text))
        if raw and by_count.get(1):
            share = by_count[1] / raw
            goals["1 stream within 3% of stream_generate"] = share >= 0.97
            text = (
                f"1 stream decodes {by_count[1]:.1f} tok/s, raw stream_generate "
                f"{raw:.1f}: {share:.1%} (goal >= 97%)"
            )
            print(goal_line(share >= 0.97, text))
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


def health_backend(url: str) -> str:
    health = requests.get(f"{url}/health", headers={"x-api-key": KEY}, timeout=10)
    return str(health.json().get("backend") or "cpu")


def fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", default="1,2,4,8")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--servers", default="pensieve,mlx_lm")
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--no-probe", action="store_true")
    parser.add_argument(
        "--before", type=Path, default=None, help="a checkout to run as `before`"
    )
    parser.add_argument("--no-raw", action="store_true")
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
    backend = "cpu"
    for kind in args.servers.split(","):
        log = Path(tempfile.mkdtemp()) / f"{kind}.log"
        with server(kind, model_dir, log, args.before) as url:
            if kind == "pensieve":
                backend = health_backend(url)
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
            if probe is not None:  # printed now: a slow server's run may be cut
                print(f"  {kind} prefill probe: {json.dumps(probe)}", flush=True)
            results[kind] = {"rows": rows, "prefill_probe": probe}
    raw = None if args.no_raw else raw_decode_rate(model_dir, args.max_tokens)
    print()
    goals = check_goals(results, raw, backend)
    info["loadavg_end"] = loadavg()
    print("\nJSON: " + json.dumps({"machine": info, "results": results}, default=str))
    return exit_status(goals)


if __name__ == "__main__":
    sys.exit(main())

"""Walking-skeleton benchmark: where the time goes for the bundled model.

One run measures, on this machine and in this order (nothing overlaps):

1. GGUF import: `resolve_model("bundled")` into a fresh temporary cache folder
   (the first call imports the GGUF in a subprocess), then the same call again
   (cached: only a stat and a hash).
2. Model load, in a fresh Python subprocess: interpreter start-up, the import
   of `mlx.core` + `mlx_lm`, and `mlx_lm.load(dir)` on the imported folder.
3. Raw decode, in that same subprocess: `mlx_lm.stream_generate`, greedy,
   `--max-tokens` new tokens, on the prompt rendered with the chat template
   exactly as the server renders it. Reports mlx-lm's `generation_tps` and the
   same figure computed the way the server figure is (below).
4. Server start: `python -m gunicorn -c gunicorn.conf.py wsgi:app` on
   127.0.0.1 and a free port, with the warm cache of step 1; time from process
   start until `GET /health` answers 200 (the model loaded in the worker).
5. Server decode: `POST /v1/messages`, `stream: true`, temperature 0, the same
   prompt and `max_tokens`; decode tok/s = (output_tokens - 1) / (time from the
   first `content_block_delta` to `message_stop`), with output_tokens from the
   final `message_delta` usage. The server/raw ratio is printed.

The script ends with a table and one `JSON:` line holding every figure; it
states no goal, so it exits 0 whenever it runs to the end. The raw run is
children/raw_decode.py. The server it starts is stopped in a `finally`; it
only talks to 127.0.0.1.

Run it from the repository root with the project's virtualenv active:

    python benchmarks/skeleton.py [--max-tokens 256] [--prompt "..."]

Figures are wall-clock and noisy when other processes share the CPU; the load
average at start and end is printed so a noisy run can be recognised.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _files import child_command, run_child
from _report import (
    banner,
    fmt,
    load_warning,
    loadavg,
    machine_info,
    print_table,
    rounded,
)
from _server import Readiness, running_pensieve
from _stream import timed_message
from pensieve.models.resolve import resolve_model

API_KEY = "pensieve-benchmark-key"
DEFAULT_PROMPT = "Count from 1 to 300, separated by commas."
READY_TIMEOUT = 300.0
REQUEST_TIMEOUT = 600.0


def bench_import(cache_dir: Path) -> dict[str, Any]:
    """Step 1: first (importing) and cached `resolve_model("bundled")`."""
    t0 = time.perf_counter()
    first = resolve_model("bundled", cache_dir=cache_dir, fallback=False)
    first_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    cached = resolve_model("bundled", cache_dir=cache_dir, fallback=False)
    cached_s = time.perf_counter() - t0
    assert cached.path == first.path
    return {
        "model_id": first.model_id,
        "model_dir": str(first.path),
        "import_first_s": first_s,
        "import_cached_s": cached_s,
    }


def bench_raw(model_dir: Path, prompt: str, max_tokens: int) -> dict[str, Any]:
    """Steps 2 and 3: load and decode with plain mlx-lm in a fresh interpreter."""
    command = child_command(
        sys.executable, "raw_decode", str(model_dir), prompt, str(max_tokens)
    )
    before = time.time()
    t0 = time.perf_counter()
    result = run_child(command, "raw mlx-lm run", REQUEST_TIMEOUT)
    wall_s = time.perf_counter() - t0
    result["python_startup_s"] = result.pop("started_at") - before
    result["subprocess_wall_s"] = wall_s
    tokens = result["output_tokens"]
    result["decode_tps_matched"] = (
        (tokens - 1) / result["first_to_last_s"] if tokens > 1 else None
    )
    return result


def stream_message(url: str, prompt: str, max_tokens: int) -> dict[str, Any]:
    """Step 5: one streaming /v1/messages request, timed per SSE event."""
    run = timed_message(
        url, prompt, max_tokens, api_key=API_KEY, timeout_s=REQUEST_TIMEOUT
    )
    return {
        "output_tokens": run.output_tokens,
        "stop_reason": run.stop_reason,
        "time_to_first_delta_s": run.ttft_s,
        "first_delta_to_stop_s": run.decode_s,
        "request_total_s": run.total_s,
        "decode_tps": run.decode_tps,
        "text": run.text,
    }


def bench_server(
    cache_dir: Path, log_path: Path, prompt: str, max_tokens: int
) -> dict[str, Any]:
    """Steps 4 and 5: gunicorn start to ready, then one streamed generation."""
    readiness = Readiness(timeout_s=READY_TIMEOUT, poll_s=0.05)
    with running_pensieve(cache_dir, log_path, API_KEY, readiness=readiness) as server:
        result = stream_message(server.url, prompt, max_tokens)
        result.update(
            start_to_ready_s=server.ready_s,
            worker_load_s=server.health.get("load_seconds"),
            backend=server.health.get("backend"),
        )
        return result


def measure(prompt: str, max_tokens: int) -> dict[str, dict[str, Any]]:
    """Steps 1-5 in a fresh temporary cache folder, with progress lines."""
    with tempfile.TemporaryDirectory(prefix="pensieve-bench-") as tmp:
        cache_dir = Path(tmp) / "cache"
        print("[1/4] importing the bundled GGUF ...", flush=True)
        imported = bench_import(cache_dir)
        print(
            f"      first {imported['import_first_s']:.2f} s, "
            f"cached {imported['import_cached_s'] * 1000:.2f} ms"
        )
        print("[2/4] raw mlx-lm load + decode in a subprocess ...", flush=True)
        raw = bench_raw(Path(imported["model_dir"]), prompt, max_tokens)
        print(
            f"      load {raw['load_s']:.2f} s, {raw['output_tokens']} tokens "
            f"({raw['finish_reason']}) at {raw['generation_tps']:.2f} tok/s"
        )
        print("[3/4] gunicorn start -> /health ready ...", flush=True)
        print("[4/4] streamed /v1/messages through the server ...", flush=True)
        server = bench_server(cache_dir, Path(tmp) / "gunicorn.log", prompt, max_tokens)
        print(
            f"      ready in {server['start_to_ready_s']:.2f} s, "
            f"{server['output_tokens']} tokens ({server['stop_reason']}) "
            f"at {server['decode_tps']:.2f} tok/s"
        )
    return {"imported": imported, "raw": raw, "server": server}


def ratios(raw: dict[str, Any], server: dict[str, Any]) -> dict[str, Any]:
    """Server decode over raw decode (mlx-lm's figure and the server's method)."""
    ratio = ratio_matched = None
    if server["decode_tps"] and raw["generation_tps"]:
        ratio = server["decode_tps"] / raw["generation_tps"]
    if server["decode_tps"] and raw["decode_tps_matched"]:
        ratio_matched = server["decode_tps"] / raw["decode_tps_matched"]
    return {
        "ratio_server_over_raw": ratio,
        "ratio_server_over_raw_matched": ratio_matched,
        "same_text": server["text"] == raw["text"],
    }


def warnings(info: dict[str, Any], raw: dict[str, Any], server: dict[str, Any]) -> None:
    """Print what makes this run's figures less trustworthy."""
    warning = load_warning(info)
    if warning:
        print(f"\n{warning}")
    if server["output_tokens"] != raw["output_tokens"]:
        print(
            f"\nWARNING: token counts differ (server {server['output_tokens']}, "
            f"raw {raw['output_tokens']}); the decode rates are less comparable."
        )


def table_rows(
    info: dict[str, Any], parts: dict[str, dict[str, Any]], ratio: dict[str, Any]
) -> list[tuple[str, str]]:
    """The table: import, start-up, load, raw and server decode, ratios, load."""
    imported, raw, server = parts["imported"], parts["raw"], parts["server"]
    return [
        ("GGUF import, first", fmt(imported["import_first_s"], " s")),
        ("GGUF import, cached", fmt(imported["import_cached_s"] * 1000, " ms")),
        ("python start-up (subprocess)", fmt(raw["python_startup_s"], " s")),
        ("import mlx.core + mlx_lm", fmt(raw["import_s"], " s")),
        ("mlx_lm.load(dir)", fmt(raw["load_s"], " s")),
        ("server start -> /health 200", fmt(server["start_to_ready_s"], " s")),
        ("  of which worker load (/health)", fmt(server["worker_load_s"], " s")),
        ("prompt tokens / raw prefill", f"{raw['prompt_tokens']} / "
         f"{raw['prompt_tps']:.1f} tok/s"),
        ("raw tokens (finish)", f"{raw['output_tokens']} ({raw['finish_reason']})"),
        ("raw decode, mlx generation_tps", fmt(raw["generation_tps"], " tok/s")),
        ("raw decode, (n-1)/first->last", fmt(raw["decode_tps_matched"], " tok/s")),
        ("server tokens (stop_reason)",
         f"{server['output_tokens']} ({server['stop_reason']})"),
        ("server time to first delta", fmt(server["time_to_first_delta_s"], " s")),
        ("server decode, (n-1)/delta->stop", fmt(server["decode_tps"], " tok/s")),
        ("ratio server/raw (generation_tps)", fmt(ratio["ratio_server_over_raw"])),
        ("ratio server/raw (same method)",
         fmt(ratio["ratio_server_over_raw_matched"])),
        ("same generated text", str(ratio["same_text"])),
        ("load avg start / end",
         f"{info['loadavg_start']} / {info['loadavg_end']}"),
    ]  # fmt: skip


def figures(
    info: dict[str, Any],
    args: argparse.Namespace,
    parts: dict[str, dict[str, Any]],
    ratio: dict[str, Any],
) -> dict[str, Any]:
    """Every figure, by name, in the order of the JSON line."""
    imported, raw, server = parts["imported"], parts["raw"], parts["server"]
    return {
        "machine": info,
        "prompt": args.prompt,
        "max_tokens": args.max_tokens,
        "model_id": imported["model_id"],
        "backend": server["backend"],
        "import_first_s": imported["import_first_s"],
        "import_cached_s": imported["import_cached_s"],
        "python_startup_s": raw["python_startup_s"],
        "mlx_import_s": raw["import_s"],
        "load_s": raw["load_s"],
        "server_start_to_ready_s": server["start_to_ready_s"],
        "server_worker_load_s": server["worker_load_s"],
        "prompt_tokens": raw["prompt_tokens"],
        "raw_prompt_tps": raw["prompt_tps"],
        "raw_output_tokens": raw["output_tokens"],
        "raw_finish_reason": raw["finish_reason"],
        "raw_generation_tps": raw["generation_tps"],
        "raw_decode_tps_matched": raw["decode_tps_matched"],
        "server_output_tokens": server["output_tokens"],
        "server_stop_reason": server["stop_reason"],
        "server_time_to_first_delta_s": server["time_to_first_delta_s"],
        "server_decode_tps": server["decode_tps"],
        **ratio,
    }


def main() -> int:
    """Measure, print the table and the JSON line; 0 (no goal to miss)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--prompt", default=DEFAULT_PROMPT)
    args = parser.parse_args()

    info = machine_info()
    print(banner("Pensieve skeleton benchmark", info))
    print(f"prompt: {args.prompt!r}, max_tokens={args.max_tokens}, greedy\n")
    parts = measure(args.prompt, args.max_tokens)
    info["loadavg_end"] = loadavg()
    ratio = ratios(parts["raw"], parts["server"])
    warnings(info, parts["raw"], parts["server"])
    print_table(table_rows(info, parts, ratio), 24)
    everything = figures(info, args, parts, ratio)
    print("\nJSON: " + json.dumps(rounded(everything, 4), separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""CPU-profile benchmark: prefill and decode speed of the bundled model, side by side.

One run measures, on this machine, one after the other (nothing overlaps):

(a) before: plain MLX, `load_model(dir, CPUProfile(enabled=False))`, in a fresh
    Python subprocess;
(b) after: the CPU profile on, `CPUProfile(enabled=True)` (OpenBLAS routed in
    before mlx is imported, float32 weights), in another fresh subprocess: the
    BLAS routing is process-wide, so each setting needs a process of its own;
(c) server: `python -m gunicorn -c gunicorn.conf.py wsgi:app` on 127.0.0.1 and
    a free port (CPU profile at its default, on), through streaming
    `POST /v1/messages`, temperature 0;
(d) llama.cpp: `llama-cpp-python` on the same GGUF, in a virtual environment of
    the benchmark's own (`--llama-venv`, not Pensieve's: llama.cpp is no
    Pensieve dependency), n_ctx 4096, 2 threads.

Figures:

- prefill tok/s at 128, 1,024 and 2,048 prompt tokens: a synthetic prompt of
  exactly N tokens (a paragraph's token ids repeated, capped to N). MLX: time
  of `mlx_lm.generate_step(..., max_tokens=0, prefill_step_size=512)` (the
  engine's PREFILL_STEP_SIZE), which processes the prompt and samples the
  first token. llama.cpp: time of `Llama.eval(tokens)` (n_batch 512).
  Server: input_tokens (from message_start) / time to the first
  content_block_delta, for a prompt of about 1,024 tokens (sized with
  /v1/messages/count_tokens); the server column puts it in the 1,024 row.
  Each of these prompts starts with its own number, so the server's prompt
  cache can only supply the chat template's header, which message_start
  reports as cache_read_input_tokens, not as input_tokens.
- decode tok/s: greedy, --decode-tokens (128) new tokens after the chat prompt
  "Count from 1 to 300, separated by commas." (llama.cpp gets the token ids
  the "after" child rendered: the vocabulary is the GGUF's), computed as
  (tokens - 1) / (time from the first token to the last). MLX and llama.cpp
  ignore the end-of-turn token; the server uses output_tokens from the final
  message_delta and the time from the first content_block_delta to
  message_stop.

Every child first warms up (a short prefill and a few decode steps). Each
figure is the best of --repeats runs (default 3), except the "before" column,
measured once: plain MLX prefills at about 10 tok/s, so 2,048 tokens take
minutes. `--quick` skips the before-2048 measurement.

Run it from the repository root with the project's virtualenv active:

    python benchmarks/cpu_profile.py [--quick] [--repeats 3] [--build-llama]

Without llama_cpp in --llama-venv (default /tmp/pensieve-bench-llama) the
llama.cpp column is skipped and the command that builds it is printed;
`--build-llama` runs that command before measuring llama.cpp (6 to 11
minutes on a 2-core VM; it is in the runtime estimate). The build flags
avoid `-march=native`, whose default build dies with "illegal instruction" on
some VMs.

The script prints the estimated runtime, the load average at start and end, a
table, the goals, and one `JSON:` line holding every figure. The server it
starts is stopped in a `finally`; it only talks to 127.0.0.1. Figures are
wall-clock and noisy when other processes share the CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from _server import (
    ROOT,
    Readiness,
    anthropic_headers,
    banner,
    load_warning,
    loadavg,
    machine_info,
    running_pensieve,
    timed_message,
)
from pensieve.config import load_settings
from pensieve.models.bundled import bundled_gguf_path
from pensieve.models.resolve import resolve_model

API_KEY = "pensieve-local-key"
PREFILL_LENGTHS = (128, 1024, 2048)
SERVER_PREFILL_TOKENS = 1024
DECODE_PROMPT = "Count from 1 to 300, separated by commas."
FILLER = (
    "The old lighthouse keeper climbed the spiral stairs every evening at dusk, "
    "counting one hundred and twelve steps while the wind rattled the windows. "
    "From the lamp room he could see the harbour, the fishing boats returning "
    "with their nets, and the long grey line of the northern cliffs. He wrote "
    "the weather in a leather notebook: pressure, wind direction, visibility, "
    "and the names of ships that passed before midnight. "
)
SUMMARY_REQUEST = "\n\nSummarise the text above in one sentence."
LLAMA_THREADS = 2
LLAMA_N_CTX = 4096
LLAMA_CMAKE_ARGS = (
    "-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON "
    "-DGGML_BMI2=ON -DGGML_AVX512=ON -DGGML_AVX512_VBMI=ON -DGGML_AVX512_VNNI=ON "
    "-DGGML_AVX512_BF16=ON -DGGML_AVX_VNNI=ON -DGGML_AMX_TILE=OFF "
    "-DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
)
GOAL_PREFILL_TPS = 100.0  # at ~1,024 tokens, through /v1/messages
GOAL_DECODE_TPS = 25.0  # through /v1/messages
STRETCH_FRACTION = 0.5  # of llama.cpp

# Rough speeds for the runtime estimate (2-core x86_64 VM).
EST_BEFORE_PREFILL_TPS = 10.0
EST_BEFORE_DECODE_TPS = 7.0
EST_AFTER_PREFILL_TPS = 250.0
EST_AFTER_DECODE_TPS = 20.0
EST_LLAMA_PREFILL_TPS = 300.0
EST_LLAMA_DECODE_TPS = 100.0
EST_BUILD_S = 420.0

CHILD_TIMEOUT_S = 1500.0
SERVER_READY_TIMEOUT_S = 300.0
REQUEST_TIMEOUT_S = 300.0
BUILD_TIMEOUT_S = 1800.0

# Runs in a fresh interpreter (cwd: repository root). argv[1] is a JSON object:
# model_dir, profile ("on"/"off"), lengths, decode_tokens, prefill_step_size,
# repeats, filler, decode_prompt. Prints PROGRESS lines and one RESULT line.
MLX_CHILD = r"""
import json, sys, time
args = json.loads(sys.argv[1])
from pathlib import Path
from pensieve.engine import ChatMessage
from pensieve.engine.loading import CPUProfile, load_model
from pensieve.engine.prompt import render_prompt

def progress(text):
    print("PROGRESS " + text, flush=True)

t0 = time.perf_counter()
profile = CPUProfile(enabled=args["profile"] == "on")
loaded = load_model(Path(args["model_dir"]), profile)
load_s = time.perf_counter() - t0
import mlx.core as mx  # only now: load_model routes BLAS before mlx loads
from mlx_lm.generate import generate_step
from mlx_lm.sample_utils import make_sampler

greedy = make_sampler(temp=0.0)
step = args["prefill_step_size"]
filler = loaded.tokenizer.encode(args["filler"], add_special_tokens=False)

def prompt_of(n):
    return (filler * (n // len(filler) + 1))[:n]

def prefill_s(n):
    tokens = mx.array(prompt_of(n))
    mx.synchronize()
    t0 = time.perf_counter()
    for _ in generate_step(tokens, loaded.model, max_tokens=0, sampler=greedy,
                           prefill_step_size=step):
        pass
    mx.synchronize()
    return time.perf_counter() - t0

def decode(ids, n):
    stamps, out = [], []
    for token, _ in generate_step(mx.array(ids), loaded.model, max_tokens=n,
                                  sampler=greedy, prefill_step_size=step):
        stamps.append(time.perf_counter())
        out.append(token)
    mx.synchronize()
    return (len(out) - 1) / (stamps[-1] - stamps[0]), out

progress(f"loaded in {load_s:.1f} s, profile: {list(loaded.profile) or 'none'}")
prefill_s(32)  # warm-up
decode(prompt_of(16), 4)
prefill = {}
for n in args["lengths"]:
    runs = []
    for _ in range(args["repeats"]):
        runs.append(prefill_s(n))
        progress(f"prefill {n} tokens: {runs[-1]:.2f} s, {n / runs[-1]:.1f} tok/s")
    prefill[str(n)] = {"seconds": runs, "tps": n / min(runs)}
ids = render_prompt(loaded.tokenizer, [ChatMessage("user", args["decode_prompt"])], [])
rates = []
for _ in range(args["repeats"]):
    rate, out = decode(ids, args["decode_tokens"])
    rates.append(rate)
    progress(f"decode {len(out)} tokens: {rate:.1f} tok/s")
print("RESULT " + json.dumps({
    "load_s": load_s,
    "device": str(mx.default_device()),
    "profile": list(loaded.profile),
    "prefill": prefill,
    "decode_runs_tps": rates,
    "decode_tps": max(rates),
    "decode_prompt_ids": ids,
    "decode_text": loaded.tokenizer.decode(out),
}), flush=True)
"""

# Runs in the llama.cpp virtualenv's interpreter. argv[1] is a JSON object:
# gguf, lengths, decode_tokens, repeats, threads, n_ctx, filler,
# decode_prompt_ids. Prints PROGRESS lines and one RESULT line.
LLAMA_CHILD = r"""
import json, sys, time
args = json.loads(sys.argv[1])
import llama_cpp
import numpy as np

def progress(text):
    print("PROGRESS " + text, flush=True)

t0 = time.perf_counter()
llm = llama_cpp.Llama(
    model_path=args["gguf"], n_ctx=args["n_ctx"], n_batch=512,
    n_threads=args["threads"], n_threads_batch=args["threads"], verbose=False,
)
load_s = time.perf_counter() - t0
filler = llm.tokenize(args["filler"].encode(), add_bos=False, special=False)

def prompt_of(n):
    return (filler * (n // len(filler) + 1))[:n]

n_vocab = llm.n_vocab()

def greedy():  # the last evaluated token's logits, argmax
    logits = llama_cpp.llama_get_logits_ith(llm.ctx, -1)
    return int(np.argmax(np.ctypeslib.as_array(logits, shape=(n_vocab,))))

def prefill_s(n):
    tokens = prompt_of(n)
    llm.reset()
    t0 = time.perf_counter()
    llm.eval(tokens)
    greedy()
    return time.perf_counter() - t0

def decode(ids, n):
    llm.reset()
    llm.eval(ids)
    out = [greedy()]
    stamps = [time.perf_counter()]
    while len(out) < n:
        llm.eval([out[-1]])
        out.append(greedy())
        stamps.append(time.perf_counter())
    return (len(out) - 1) / (stamps[-1] - stamps[0]), out

progress(f"llama.cpp {llama_cpp.__version__} loaded in {load_s:.1f} s")
prefill_s(32)  # warm-up
decode(prompt_of(16), 4)
prefill = {}
for n in args["lengths"]:
    runs = []
    for _ in range(args["repeats"]):
        runs.append(prefill_s(n))
        progress(f"prefill {n} tokens: {runs[-1]:.2f} s, {n / runs[-1]:.1f} tok/s")
    prefill[str(n)] = {"seconds": runs, "tps": n / min(runs)}
rates = []
for _ in range(args["repeats"]):
    rate, out = decode(args["decode_prompt_ids"], args["decode_tokens"])
    rates.append(rate)
    progress(f"decode {len(out)} tokens: {rate:.1f} tok/s")
print("RESULT " + json.dumps({
    "version": llama_cpp.__version__,
    "load_s": load_s,
    "system_info": llama_cpp.llama_print_system_info().decode(errors="replace"),
    "prefill": prefill,
    "decode_runs_tps": rates,
    "decode_tps": max(rates),
    "decode_text": llm.detokenize(out).decode(errors="replace"),
}), flush=True)
"""


def run_child(
    command: list[str], label: str, timeout: float, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run a measuring child; echo its PROGRESS lines, return its RESULT JSON."""
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
        watchdog = threading.Timer(timeout, process.kill)
        watchdog.start()
        result: dict[str, Any] | None = None
        try:
            assert process.stdout is not None
            for line in process.stdout:
                if line.startswith("PROGRESS "):
                    print(f"      {label}: {line.removeprefix('PROGRESS ').rstrip()}")
                    sys.stdout.flush()
                elif line.startswith("RESULT "):
                    result = json.loads(line.removeprefix("RESULT "))
            process.wait()
        finally:
            watchdog.cancel()
            if process.poll() is None:
                process.kill()
                process.wait()
        if process.returncode != 0 or result is None:
            stderr.seek(0)
            tail = stderr.read().decode(errors="replace")[-4000:]
            raise RuntimeError(
                f"{label} failed (exit {process.returncode}, timeout {timeout:.0f} s)"
                f":\n{tail}"
            )
        return result


def bench_mlx(
    model_dir: Path,
    profile: str,
    lengths: list[int],
    decode_tokens: int,
    prefill_step_size: int,
    repeats: int,
) -> dict[str, Any]:
    """(a)/(b): plain MLX or the CPU profile, in a fresh interpreter."""
    args = {
        "model_dir": str(model_dir),
        "profile": profile,
        "lengths": lengths,
        "decode_tokens": decode_tokens,
        "prefill_step_size": prefill_step_size,
        "repeats": repeats,
        "filler": FILLER,
        "decode_prompt": DECODE_PROMPT,
    }
    label = "after" if profile == "on" else "before"
    return run_child(
        [sys.executable, "-c", MLX_CHILD, json.dumps(args)], label, CHILD_TIMEOUT_S
    )


def llama_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def llama_build_command(venv: Path) -> str:
    python = shlex.quote(str(llama_python(venv)))
    return (
        f"python3 -m venv {shlex.quote(str(venv))} && "
        f'CMAKE_ARGS="{LLAMA_CMAKE_ARGS}" {python} -m pip install llama-cpp-python'
    )


def llama_installed(venv: Path) -> str | None:
    """The llama_cpp version installed in `venv`, or None."""
    python = llama_python(venv)
    if not python.exists():
        return None
    done = subprocess.run(
        [str(python), "-c", "import llama_cpp; print(llama_cpp.__version__)"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.stdout.strip() if done.returncode == 0 else None


def build_llama(venv: Path) -> None:
    """Create `venv` and build llama-cpp-python in it, without native tuning."""
    if not llama_python(venv).exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = {**os.environ, "CMAKE_ARGS": LLAMA_CMAKE_ARGS}
    subprocess.run(
        [str(llama_python(venv)), "-m", "pip", "install", "llama-cpp-python"],
        env=env,
        check=True,
        timeout=BUILD_TIMEOUT_S,
    )


def bench_llama(
    venv: Path,
    gguf: Path,
    lengths: list[int],
    decode_tokens: int,
    repeats: int,
    decode_prompt_ids: list[int],
) -> dict[str, Any]:
    """(d): llama.cpp on the same GGUF, with the same decode prompt ids."""
    args = {
        "gguf": str(gguf),
        "lengths": lengths,
        "decode_tokens": decode_tokens,
        "repeats": repeats,
        "threads": LLAMA_THREADS,
        "n_ctx": LLAMA_N_CTX,
        "filler": FILLER,
        "decode_prompt_ids": decode_prompt_ids,
    }
    return run_child(
        [str(llama_python(venv)), "-c", LLAMA_CHILD, json.dumps(args)],
        "llama.cpp",
        CHILD_TIMEOUT_S,
    )


HEADERS = anthropic_headers(API_KEY)


def count_tokens(url: str, text: str) -> int:
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
        decodes = []
        for _ in range(repeats):
            run = stream_message(url, DECODE_PROMPT, decode_tokens)
            decodes.append(run)
            print(
                f"      server: decode {run['output_tokens']} tokens "
                f"({run['stop_reason']}): {run['decode_tps'] or 0:.1f} tok/s",
                flush=True,
            )
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


def estimate_s(
    before_lengths: list[int], repeats: int, decode_tokens: int, llama: str
) -> float:
    """Rough total runtime, from typical speeds on a 2-core VM."""
    total = 20.0  # GGUF import, interpreter start-ups
    total += 10 + sum(before_lengths) / EST_BEFORE_PREFILL_TPS
    total += decode_tokens / EST_BEFORE_DECODE_TPS
    total += 15 + repeats * (
        sum(PREFILL_LENGTHS) / EST_AFTER_PREFILL_TPS
        + decode_tokens / EST_AFTER_DECODE_TPS
    )
    total += 25 + repeats * (
        SERVER_PREFILL_TOKENS / EST_AFTER_PREFILL_TPS
        + decode_tokens / EST_AFTER_DECODE_TPS
    )
    if llama != "skip":
        total += 5 + repeats * (
            sum(PREFILL_LENGTHS) / EST_LLAMA_PREFILL_TPS
            + decode_tokens / EST_LLAMA_DECODE_TPS
        )
    if llama == "build":
        total += EST_BUILD_S
    return total


def fmt(value: float | None, digits: int = 1, unit: str = "") -> str:
    return "n/a" if value is None else f"{value:.{digits}f}{unit}"


def ratio(top: float | None, bottom: float | None) -> float | None:
    return top / bottom if top and bottom else None


def prefill_tps(result: dict[str, Any] | None, n: int) -> float | None:
    if result is None or str(n) not in result["prefill"]:
        return None
    return result["prefill"][str(n)]["tps"]


def without_ids(result: dict[str, Any] | None) -> dict[str, Any] | None:
    """A child's result without the prompt token ids (long, not a figure)."""
    if result is None:
        return None
    return {key: value for key, value in result.items() if key != "decode_prompt_ids"}


def step(number: int, total: int, text: str) -> None:
    print(f"[{number}/{total}] {text} ...", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="skip the slow before-2048 prefill"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--decode-tokens", type=int, default=128)
    parser.add_argument(
        "--llama-venv", type=Path, default=Path("/tmp/pensieve-bench-llama")
    )
    parser.add_argument(
        "--build-llama",
        action="store_true",
        help="build llama-cpp-python in --llama-venv if it is missing",
    )
    args = parser.parse_args()
    repeats = max(1, args.repeats)
    lengths = list(PREFILL_LENGTHS)
    before_lengths = [n for n in lengths if not (args.quick and n == 2048)]
    step_size = int(load_settings()["PREFILL_STEP_SIZE"])

    llama_version = llama_installed(args.llama_venv)
    llama_plan = "run" if llama_version else "build" if args.build_llama else "skip"
    info = machine_info()
    print(banner("Pensieve CPU-profile benchmark", info))
    print(
        f"prefill lengths {lengths} (before: {before_lengths}), prefill_step_size "
        f"{step_size}, decode {args.decode_tokens} tokens, best of {repeats} "
        f"(before: 1 run), llama.cpp: {llama_plan}"
        + (f" ({llama_version})" if llama_version else "")
    )
    estimate = estimate_s(before_lengths, repeats, args.decode_tokens, llama_plan)
    print(f"estimated runtime: about {estimate / 60:.0f} min\n", flush=True)
    started = time.perf_counter()

    total_steps = 5
    with tempfile.TemporaryDirectory(prefix="pensieve-bench-") as tmp:
        cache_dir = Path(tmp) / "cache"
        step(1, total_steps, "importing the bundled GGUF")
        gguf = bundled_gguf_path()
        model_dir = resolve_model("bundled", cache_dir=cache_dir, fallback=False).path
        print(f"      {gguf.name} -> {model_dir}", flush=True)

        step(2, total_steps, "(a) before: plain MLX, profile off, in a subprocess")
        before = bench_mlx(
            model_dir, "off", before_lengths, args.decode_tokens, step_size, 1
        )
        step(3, total_steps, "(b) after: CPU profile on, in a subprocess")
        after = bench_mlx(
            model_dir, "on", lengths, args.decode_tokens, step_size, repeats
        )
        step(4, total_steps, "(c) server: gunicorn, streaming /v1/messages")
        server = bench_server(
            cache_dir, Path(tmp) / "gunicorn.log", args.decode_tokens, repeats
        )

        step(5, total_steps, "(d) llama.cpp on the same GGUF")
        llama: dict[str, Any] | None = None
        if llama_plan == "build":
            print(f"      building: {llama_build_command(args.llama_venv)}", flush=True)
            try:
                build_llama(args.llama_venv)
            except (OSError, subprocess.SubprocessError) as error:
                print(f"      build failed: {error}")
            llama_version = llama_installed(args.llama_venv)
        if llama_version:
            try:
                llama = bench_llama(
                    args.llama_venv,
                    gguf,
                    lengths,
                    args.decode_tokens,
                    repeats,
                    after["decode_prompt_ids"],
                )
            except RuntimeError as error:  # keep the other columns
                print(f"      skipped: {error}")
        else:
            print(
                f"      skipped: no llama_cpp in {args.llama_venv}. Build it with "
                f"--build-llama, or:\n      {llama_build_command(args.llama_venv)}"
            )
    info["loadavg_end"] = loadavg()
    elapsed = time.perf_counter() - started

    llama_decode = llama["decode_tps"] if llama else None
    cells: list[tuple[str, float | None, float | None, float | None, float | None]]
    cells = [
        (
            f"prefill@{n}",
            prefill_tps(before, n),
            prefill_tps(after, n),
            server["prefill_tps"] if n == SERVER_PREFILL_TOKENS else None,
            prefill_tps(llama, n),
        )
        for n in lengths
    ]
    cells.append(
        (
            "decode",
            before["decode_tps"],
            after["decode_tps"],
            server["decode_tps"],
            llama_decode,
        )
    )
    goals = {
        f"prefill@{SERVER_PREFILL_TOKENS}": f"server >= {GOAL_PREFILL_TPS:.0f}",
        "decode": f"server >= {GOAL_DECODE_TPS:.0f}",
    }
    header = (
        f"{'tok/s':<13}{'before':>9}{'after':>9}{'server':>9}{'llama.cpp':>11}"
        f"{'after/before':>14}{'after/llama':>13}{'server/llama':>14}  goal"
    )
    print("\n" + header)
    print("-" * (len(header) + 14))
    rows: dict[str, dict[str, float | None]] = {}
    for name, b, a, s, ll in cells:
        rows[name] = {
            "before": b,
            "after": a,
            "server": s,
            "llama_cpp": ll,
            "after_over_before": ratio(a, b),
            "after_over_llama": ratio(a, ll),
            "server_over_llama": ratio(s, ll),
        }
        print(
            f"{name:<13}{fmt(b):>9}{fmt(a):>9}{fmt(s):>9}{fmt(ll):>11}"
            f"{fmt(ratio(a, b), 2, 'x'):>14}{fmt(ratio(a, ll), 2):>13}"
            f"{fmt(ratio(s, ll), 2):>14}  {goals.get(name, '')}"
        )
    print(
        f"\nserver prefill row: a {server['prefill_prompt_tokens']}-token prompt, "
        f"{server['prefill_input_tokens']} input_tokens not from the prompt cache "
        f"(input_tokens / time to first delta); server decode: "
        f"{server['decode_output_tokens']} tokens ({server['decode_stop_reason']})."
    )
    if args.quick:
        print("--quick: before@2048 not measured.")

    server_prefill = server["prefill_tps"]
    server_decode = server["decode_tps"] or 0.0
    checks = [
        (
            f"prefill >= {GOAL_PREFILL_TPS:.0f} tok/s at ~{SERVER_PREFILL_TOKENS} "
            "tokens via /v1/messages",
            server_prefill,
            server_prefill >= GOAL_PREFILL_TPS,
        ),
        (
            f"decode >= {GOAL_DECODE_TPS:.0f} tok/s via /v1/messages",
            server_decode,
            server_decode >= GOAL_DECODE_TPS,
        ),
    ]
    if llama:
        llama_prefill = prefill_tps(llama, SERVER_PREFILL_TOKENS) or 0.0
        checks += [
            (
                f"stretch: prefill >= {STRETCH_FRACTION} x llama.cpp "
                f"({STRETCH_FRACTION * llama_prefill:.1f} tok/s) via /v1/messages",
                server_prefill,
                server_prefill >= STRETCH_FRACTION * llama_prefill,
            ),
            (
                f"stretch: decode >= {STRETCH_FRACTION} x llama.cpp "
                f"({STRETCH_FRACTION * (llama_decode or 0):.1f} tok/s) via "
                "/v1/messages",
                server_decode,
                server_decode >= STRETCH_FRACTION * (llama_decode or 0.0),
            ),
        ]
    print("\ngoals:")
    for text, value, met in checks:
        print(f"  [{'met' if met else 'MISSED'}] {text}: {value:.1f}")

    print(
        f"\nload avg start / end: {info['loadavg_start']} / {info['loadavg_end']}; "
        f"elapsed {elapsed / 60:.1f} min (estimated {estimate / 60:.0f} min)"
    )
    warning = load_warning(info)
    if warning:
        print(warning)
    if after["decode_text"] != before["decode_text"]:
        print("note: before and after decoded different greedy text.")

    def rounded(value: Any) -> Any:
        if isinstance(value, float):
            return round(value, 3)
        if isinstance(value, dict):
            return {key: rounded(item) for key, item in value.items()}
        if isinstance(value, list):
            return [rounded(item) for item in value]
        return value

    figures = {
        "machine": info,
        "quick": args.quick,
        "repeats": repeats,
        "decode_tokens": args.decode_tokens,
        "prefill_step_size": step_size,
        "elapsed_s": elapsed,
        "estimated_s": estimate,
        "table": rows,
        "goals": {text: {"value": value, "met": met} for text, value, met in checks},
        "before": without_ids(before),
        "after": without_ids(after),
        "server": server,
        "llama_cpp": without_ids(llama),
    }
    print("\nJSON: " + json.dumps(rounded(figures), separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())

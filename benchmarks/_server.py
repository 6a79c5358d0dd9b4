"""Helpers shared by the benchmark scripts in this folder.

skeleton.py, cpu_profile.py and agent_session.py each start a server on
127.0.0.1 (gunicorn + Pensieve, or mlx_lm.server) on a free port, poll its
`GET /health` until it answers 200, measure through its HTTP API and stop it
in a `finally`; each also prints the machine, the load average and a few
statistics. This module holds one copy of those helpers, with parameters
where the scripts differ (Readiness: timeout, poll interval, how much of
the log an early exit shows, SIGTERM detection; and the process-group kill
and grace period of the stop).

The scripts run as `python benchmarks/<script>.py` from the repository root,
which puts this folder on sys.path: they import this module as `_server`.
Nothing here contacts anything but 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent

HOST = "127.0.0.1"
ANTHROPIC_VERSION = "2023-06-01"
GUNICORN_SIGTERM_LINE = "Handling signal: term"  # gunicorn master's log line


class ExternalStop(RuntimeError):
    """Another process sent one of our servers SIGTERM (the machine is shared)."""


# --- the machine -------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def package_version(name: str) -> str:
    """The installed version of distribution `name`, or "absent"."""
    try:
        return version(name)
    except PackageNotFoundError:
        return "absent"


def loadavg() -> float:
    """The 1-minute load average, rounded to 2 decimals."""
    return round(os.getloadavg()[0], 2)


def machine_info(*, with_machine: bool = True) -> dict[str, Any]:
    """Platform, CPUs, Python, mlx and mlx-lm versions, load average now.

    `with_machine` adds `platform.machine()` under "machine" (after
    "platform"); the key order is the order of the scripts' JSON output.
    """
    info: dict[str, Any] = {"platform": platform.platform()}
    if with_machine:
        info["machine"] = platform.machine()
    info.update(
        cpu_count=os.cpu_count(),
        python=platform.python_version(),
        mlx=package_version("mlx"),
        mlx_lm=package_version("mlx-lm"),
        loadavg_start=loadavg(),
    )
    return info


def banner(title: str, info: Mapping[str, Any]) -> str:
    """The first line a script prints: `title` and the machine of `info`."""
    where = info["platform"]
    if "machine" in info:
        where += f" ({info['machine']})"
    return (
        f"{title} - {where}, "
        f"{info['cpu_count']} CPUs, Python {info['python']}, mlx {info['mlx']}, "
        f"mlx-lm {info['mlx_lm']}, load avg {info['loadavg_start']}"
    )


def load_warning(info: Mapping[str, Any], *more: float) -> str | None:
    """A warning when the load average (start, end, `more`) exceeded half the CPUs."""
    busiest = max(info["loadavg_start"], info["loadavg_end"], *more)
    if busiest <= 0.5 * (info["cpu_count"] or 1):
        return None
    return (
        f"WARNING: load average reached {busiest} on {info['cpu_count']} CPUs: "
        "other processes competed for the CPU, figures are noisy."
    )


# --- statistics and formatting -----------------------------------------------


def median(values: list[float]) -> float | None:
    """The median of `values`, None when empty."""
    return statistics.median(values) if values else None


def spread(values: list[float]) -> dict[str, float | None]:
    """min / median / max of `values` (None when empty)."""
    return {
        "min": min(values) if values else None,
        "median": median(values),
        "max": max(values) if values else None,
    }


def fmt(value: Any, unit: str = "") -> str:
    """A table cell: "n/a", 3 decimals below 10, 1 decimal from 10 on."""
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.3f}{unit}" if value < 10 else f"{value:.1f}{unit}"
    return f"{value}{unit}"


# --- servers -----------------------------------------------------------------


def gunicorn_command() -> list[str]:
    """The command that serves Pensieve (run it in the repository root)."""
    return [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]


def pensieve_env(
    port: int,
    cache_dir: Path,
    api_key: str,
    settings: Mapping[str, str] | None = None,
    *,
    model: str = "bundled",
    inherit_pensieve: bool = True,
) -> dict[str, str]:
    """This process's environment plus a Pensieve server's PENSIEVE_* settings.

    `settings` are further PENSIEVE_* values by name without the prefix (they
    win over the ones set here). With `inherit_pensieve` False, no PENSIEVE_*
    variable of this process's environment is passed on.
    """
    env = {
        key: value
        for key, value in os.environ.items()
        if inherit_pensieve or not key.startswith("PENSIEVE_")
    }
    env.update(
        PENSIEVE_MODEL=model,
        PENSIEVE_CACHE_DIR=str(cache_dir),
        PENSIEVE_HOST=HOST,
        PENSIEVE_PORT=str(port),
        PENSIEVE_API_KEY=api_key,
    )
    env.update({f"PENSIEVE_{key}": value for key, value in (settings or {}).items()})
    return env


def anthropic_headers(api_key: str) -> dict[str, str]:
    """The headers of a /v1/messages request."""
    return {"x-api-key": api_key, "anthropic-version": ANTHROPIC_VERSION}


@dataclass(frozen=True)
class Readiness:
    """How to wait for a server's `GET /health` to answer 200."""

    timeout_s: float = 300.0  # RuntimeError "server not ready" after this
    poll_s: float = 0.1  # pause between two polls
    log_tail: int | None = None  # characters of the log an early exit shows; all
    read_health: bool = True  # parse /health's JSON body (else {} is returned)
    stop_marker: str | None = None  # in the log of an exited server: ExternalStop


def wait_until_ready(
    url: str,
    process: subprocess.Popen[bytes],
    log_path: Path,
    readiness: Readiness = Readiness(),
) -> dict[str, Any]:
    """Poll `url`/health until it answers 200; return its JSON body.

    If the server exits first: ExternalStop when `readiness.stop_marker` (e.g.
    GUNICORN_SIGTERM_LINE) is in its log, else RuntimeError with the log.
    """
    deadline = time.monotonic() + readiness.timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            text = log_path.read_text(errors="replace")
            if readiness.stop_marker is not None and readiness.stop_marker in text:
                raise ExternalStop(f"{log_path.name}: SIGTERM from another process")
            tail = text if readiness.log_tail is None else text[-readiness.log_tail :]
            raise RuntimeError(f"server exited early:\n{tail}")
        try:
            response = requests.get(f"{url}/health", timeout=2)
            if response.status_code == 200:
                return response.json() if readiness.read_health else {}
        except requests.RequestException:
            pass
        time.sleep(readiness.poll_s)
    raise RuntimeError(f"server not ready after {readiness.timeout_s} s")


def stop_server(
    process: subprocess.Popen[bytes], *, grace_s: float = 30.0, kill_group: bool = False
) -> None:
    """SIGTERM, SIGKILL after `grace_s`; `kill_group`: then SIGKILL its group.

    `kill_group` is for a server started in a session of its own (a worker
    left behind, if any); the group is the server's pid.
    """
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if kill_group:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)


@dataclass
class Ready:
    """A server that answered /health 200."""

    url: str
    ready_s: float  # from just before the process started to /health 200
    health: dict[str, Any]  # /health's JSON body ({} unless read_health)


@contextlib.contextmanager
def running_server(
    command: list[str],
    env: Mapping[str, str],
    port: int,
    log_path: Path,
    readiness: Readiness = Readiness(),
    *,
    new_session: bool = False,
    stop_grace_s: float = 30.0,
) -> Iterator[Ready]:
    """Run `command` in the repository root, output to `log_path`; stop it after.

    Waits until http://127.0.0.1:`port`/health answers 200 as `readiness`
    says, yields the Ready server, and stops it in a `finally` (stop_server).
    `new_session` starts it in a session of its own, whose process group is
    killed at the end.
    """
    url = f"http://{HOST}:{port}"
    with open(log_path, "wb") as log:
        started = time.perf_counter()
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=new_session,
        )
    try:
        health = wait_until_ready(url, process, log_path, readiness)
        yield Ready(url, time.perf_counter() - started, health)
    finally:
        stop_server(process, grace_s=stop_grace_s, kill_group=new_session)


@contextlib.contextmanager
def running_pensieve(
    cache_dir: Path,
    log_path: Path,
    api_key: str,
    *,
    settings: Mapping[str, str] | None = None,
    readiness: Readiness = Readiness(),
) -> Iterator[Ready]:
    """gunicorn + Pensieve on the bundled model and a free port (running_server).

    The environment is this process's plus pensieve_env's settings.
    """
    port = free_port()
    env = pensieve_env(port, cache_dir, api_key, settings)
    with running_server(gunicorn_command(), env, port, log_path, readiness) as ready:
        yield ready


# --- requests ----------------------------------------------------------------


@dataclass
class TimedMessage:
    """A streamed /v1/messages answer, with the client's time of its events."""

    started: float  # time.perf_counter() as the request was sent
    first_delta: float  # ... when the first content_block_delta arrived
    message_stop: float  # ... when message_stop arrived
    input_tokens: int  # message_start's usage
    cache_read_input_tokens: int  # message_start's usage (0 when absent)
    output_tokens: int  # the last message_delta's usage (0 when absent)
    stop_reason: str | None
    text: str

    @property
    def ttft_s(self) -> float:
        """Request start to the first content_block_delta."""
        return self.first_delta - self.started

    @property
    def decode_s(self) -> float:
        """The first content_block_delta to message_stop."""
        return self.message_stop - self.first_delta

    @property
    def total_s(self) -> float:
        """Request start to message_stop."""
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
    first_delta = message_stop = None
    input_tokens = output_tokens = cache_read = 0
    stop_reason = None
    pieces: list[str] = []
    started = time.perf_counter()
    with requests.post(
        f"{url}/v1/messages",
        json=body,
        headers=anthropic_headers(api_key),
        stream=True,
        timeout=timeout_s,
    ) as response:
        response.raise_for_status()
        buffer = b""
        for chunk in response.iter_content(chunk_size=None):
            now = time.perf_counter()
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if not line.startswith(b"data:"):
                    continue
                event = json.loads(line[5:])
                kind = event.get("type")
                if kind == "message_start":
                    usage = event["message"]["usage"]
                    input_tokens = int(usage["input_tokens"])
                    cache_read = int(usage.get("cache_read_input_tokens") or 0)
                elif kind == "content_block_delta":
                    first_delta = first_delta or now
                    pieces.append(event["delta"]["text"])
                elif kind == "message_delta":
                    output_tokens = int(event.get("usage", {}).get("output_tokens", 0))
                    stop_reason = event["delta"].get("stop_reason")
                elif kind == "message_stop":
                    message_stop = now
                elif kind == "error":
                    raise RuntimeError(f"server error event: {event}")
    if first_delta is None or message_stop is None:
        raise RuntimeError("stream ended without a delta or message_stop")
    return TimedMessage(
        started=started,
        first_delta=first_delta,
        message_stop=message_stop,
        input_tokens=input_tokens,
        cache_read_input_tokens=cache_read,
        output_tokens=output_tokens,
        stop_reason=stop_reason,
        text="".join(pieces),
    )

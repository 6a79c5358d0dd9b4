"""The servers the benchmarks start: gunicorn + Pensieve, or mlx_lm.server.

skeleton.py, cpu_profile.py and agent_session.py each start a server on
127.0.0.1 on a free port, poll its `GET /health` until it answers 200,
measure through its HTTP API and stop it in a `finally`. This module holds
one copy of those helpers, with parameters where the scripts differ
(Readiness: timeout, poll interval, how much of the log an early exit shows,
SIGTERM detection; and the process-group kill and grace period of the stop).

The scripts run as `python benchmarks/<script>.py` from the repository root,
which puts this folder on sys.path: they import this module as `_server`.
Nothing here contacts anything but 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from _files import ROOT

HOST = "127.0.0.1"
ANTHROPIC_VERSION = "2023-06-01"
GUNICORN_SIGTERM_LINE = "Handling signal: term"  # gunicorn master's log line


class ExternalStop(RuntimeError):
    """Another process sent one of our servers SIGTERM (the machine is shared)."""


# --- servers -----------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def gunicorn_command() -> list[str]:
    """The command that serves Pensieve (run it in the repository root)."""
    return [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]


def mlx_lm_server_command(model_dir: Path, port: int) -> list[str]:
    """`python -m mlx_lm.server` on `model_dir`, 127.0.0.1:`port`, else defaults."""
    return [
        sys.executable,
        "-m",
        "mlx_lm.server",
        "--model",
        str(model_dir),
        "--host",
        HOST,
        "--port",
        str(port),
    ]


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
    headers: Mapping[str, str] | None = None,
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
            # With a key /health shows all (the benchmarks pass theirs).
            response = requests.get(f"{url}/health", timeout=2, headers=headers)
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
    cwd: Path = ROOT,
) -> Iterator[Ready]:
    """Run `command` in `cwd` (default: this checkout); stop it after.

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
            cwd=cwd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=new_session,
        )
    try:
        key = env.get("PENSIEVE_API_KEY")
        headers = {"x-api-key": key} if key else None
        health = wait_until_ready(url, process, log_path, readiness, headers)
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

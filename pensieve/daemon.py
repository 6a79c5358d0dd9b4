"""Running the server for the `pensieve` command: gunicorn's argv, PID files,
the detached daemon and its log, health polling, stopping.

The server is always `python -m gunicorn -c pensieve/gunicorn_conf.py
'pensieve:create_app()'`: the settings and hooks of `gunicorn -c
gunicorn.conf.py wsgi:app`, which re-exports the same module. gunicorn writes
the PID file (`--pid`) and removes it when it exits cleanly.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

GUNICORN_CONFIG = Path(__file__).with_name("gunicorn_conf.py")
WSGI_APP = "pensieve:create_app()"


class StartFailed(RuntimeError):
    """The daemon exited or reported a failure before it was ready."""


@dataclass(frozen=True)
class Address:
    """Where a server listens, and the URL a client on this machine uses."""

    host: str
    port: int

    @property
    def url(self) -> str:
        # A wildcard bind is reached through loopback.
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(
            self.host, self.host
        )
        return (
            f"http://[{host}]:{self.port}"
            if ":" in host
            else f"http://{host}:{self.port}"
        )


def connect_lines(url: str, api_key: str) -> str:
    """The lines to paste into a shell for Claude Code or an Anthropic SDK."""
    return (
        "Point Claude Code or any Anthropic SDK at it:\n"
        f"  export ANTHROPIC_BASE_URL={url}\n"
        f"  export ANTHROPIC_API_KEY={api_key}"
    )


def pid_file(instance: Path, port: int) -> Path:
    """The PID file of the server on `port` (one server per port)."""
    return instance / f"pensieve-{port}.pid"


def default_log_file(instance: Path, port: int) -> Path:
    return instance / f"pensieve-{port}.log"


def gunicorn_argv(pid_path: Path) -> list[str]:
    """The command that runs the server, writing its master's PID to `pid_path`."""
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "-c",
        str(GUNICORN_CONFIG),
        "--pid",
        str(pid_path),
        WSGI_APP,
    ]


def process_command(pid: int) -> str | None:
    """The command line of a live process, or None if there is none (or a zombie)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # exists, owned by someone else
    proc = Path(f"/proc/{pid}")
    if proc.is_dir():
        try:
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            return None
        return None if state == "Z" else command.decode(errors="replace")
    result = subprocess.run(
        ["ps", "-o", "stat=,command=", "-p", str(pid)], capture_output=True, text=True
    )
    state, _, command = result.stdout.strip().partition(" ")
    return None if not state or state.startswith("Z") else command


@dataclass(frozen=True)
class PidFileState:
    """A PID file read: the live server's pid, or why a stale file was removed."""

    pid: int | None
    removed_because: str | None = None


def check_pid_file(path: Path) -> PidFileState:
    """Read `path`; remove it if its process is gone or is not a gunicorn server."""
    try:
        pid = int(path.read_text().strip())
    except FileNotFoundError:
        return PidFileState(None)
    except (OSError, ValueError):
        path.unlink(missing_ok=True)
        return PidFileState(None, "it was unreadable")
    command = process_command(pid)
    if command is not None and "gunicorn" in command:
        return PidFileState(pid)
    path.unlink(missing_ok=True)
    if command is None:
        return PidFileState(None, f"process {pid} is gone")
    return PidFileState(None, f"process {pid} is not a Pensieve server")


def port_in_use(host: str, port: int) -> bool:
    """True if something already listens on host:port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def fetch_health(
    url: str, timeout: float = 3.0, api_key: str | None = None
) -> dict[str, Any] | None:
    """The server's /health body (all of it with the key), or None when
    nothing (Pensieve) answers."""
    headers = {"x-api-key": api_key} if api_key else {}
    try:
        body = requests.get(f"{url}/health", timeout=timeout, headers=headers).json()
    except (requests.RequestException, ValueError):
        return None
    return body if isinstance(body, dict) and "status" in body else None


@dataclass(frozen=True)
class Daemon:
    """A detached server and the process writing its log file."""

    server: subprocess.Popen[bytes]
    log_writer: subprocess.Popen[bytes]

    def wait_for_log(self, timeout: float = 5.0) -> None:
        """Let the writer flush what the exited server wrote."""
        with suppress(subprocess.TimeoutExpired):
            self.log_writer.wait(timeout=timeout)


def spawn_daemon(
    argv: list[str],
    env: dict[str, str],
    log_path: Path,
    *,
    max_bytes: int,
    backups: int,
) -> Daemon:
    """Start the server detached, its output piped into a rotated log file.

    The log writer (`python -m pensieve.logs`) is the file's only writer; it
    ends when the server and its worker have closed the pipe.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    writer = subprocess.Popen(
        [sys.executable, "-m", "pensieve.logs", str(log_path)]
        + ["--max-bytes", str(max_bytes), "--backups", str(backups)],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    assert writer.stdin is not None  # stdin=PIPE
    try:
        server = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=writer.stdin,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # no terminal's Ctrl-C or hang-up reaches it
        )
    finally:
        writer.stdin.close()
    return Daemon(server, writer)


def wait_until_ready(
    url: str, process: subprocess.Popen[bytes], timeout: float, api_key: str
) -> dict[str, Any]:
    """Poll /health until the model is ready; StartFailed with the reason if not."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise StartFailed(f"the server exited with status {process.returncode}")
        health = fetch_health(url, timeout=2.0, api_key=api_key)
        if health and health["status"] == "ready":
            return health
        if health and health["status"] == "failed":
            raise StartFailed(health.get("error") or "the model failed to load")
        time.sleep(0.25)
    raise TimeoutError(f"not ready after {timeout:.0f} s")


def stop_process(pid: int, timeout: float) -> bool:
    """SIGTERM `pid` and wait for it to exit; False if it is still running."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process_command(pid) is None:
            return True
        time.sleep(0.1)
    return process_command(pid) is None


def failure_reason(log_path: Path) -> str | None:
    """The reason the server's start-up hook logged (`cannot start: …`), if any."""
    marker = "cannot start: "
    for line in reversed(log_tail(log_path, 200).splitlines()):
        if marker in line:
            return line.split(marker, 1)[1]
    return None


def log_tail(path: Path, lines: int = 15) -> str:
    """The last lines of a log file ('' if it is missing)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])

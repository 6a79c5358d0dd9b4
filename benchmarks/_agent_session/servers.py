"""The servers of agent_session.py: Pensieve (gunicorn) and mlx_lm.server.

Each runs in a session of its own from a fresh instance folder (no
pensieve.toml: defaults) and is stopped in a `finally`. The machine is
shared: a server that another process sends SIGTERM gives worthless figures,
so that part is started over (with_pensieve).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _server import (
    GUNICORN_SIGTERM_LINE,
    ExternalStop,
    free_port,
    gunicorn_command,
    mlx_lm_server_command,
    pensieve_env,
    running_server,
)

from .fixtures import API_KEY, READINESS


@dataclass
class Server:
    """A started server: its name, address, log and time to /health 200."""

    name: str
    url: str
    log_path: Path
    ready_s: float

    def log_text(self) -> str:
        """The server's log so far."""
        return self.log_path.read_text(errors="replace")


@contextlib.contextmanager
def serving(
    name: str, command: list[str], env: dict[str, str], port: int, log_path: Path
) -> Iterator[Server]:
    """Start a server in its own session, wait for /health, stop it at the end.

    The end is SIGTERM, SIGKILL after 45 s, then SIGKILL to the session's
    process group (a worker left behind, if any).
    """
    with running_server(
        command, env, port, log_path, READINESS, new_session=True, stop_grace_s=45.0
    ) as ready:
        yield Server(name, ready.url, log_path, ready.ready_s)


@contextlib.contextmanager
def pensieve_server(
    name: str, cache_dir: Path, work: Path, **settings: str
) -> Iterator[Server]:
    """gunicorn + Pensieve on the bundled model, `settings` as PENSIEVE_* env.

    Raises ExternalStop when the server was sent SIGTERM by someone else
    before the block ended (its figures are then worthless).
    """
    port = free_port()
    instance = work / f"instance-{name}"
    instance.mkdir()
    env = pensieve_env(
        port,
        cache_dir,
        API_KEY,
        {
            "INSTANCE_PATH": str(instance),  # no pensieve.toml: defaults
            "LOG_LEVEL": "info",
            "LOG_FORMAT": "plain",
            **settings,
        },
        inherit_pensieve=False,
    )
    command = gunicorn_command()
    with serving(name, command, env, port, work / f"{name}.log") as server:
        try:
            yield server
        except Exception as error:
            if GUNICORN_SIGTERM_LINE in server.log_text():
                raise ExternalStop(f"{name}: SIGTERM from another process") from error
            raise
        if GUNICORN_SIGTERM_LINE in server.log_text():
            raise ExternalStop(f"{name}: SIGTERM from another process")


def with_pensieve(
    name: str,
    cache_dir: Path,
    work: Path,
    body: Callable[[Server], dict[str, Any]],
    **settings: str,
) -> dict[str, Any]:
    """`body` on a fresh server; started over (twice at most) after ExternalStop."""
    for attempt in range(1, 4):
        label = name if attempt == 1 else f"{name}-{attempt}"
        try:
            with pensieve_server(label, cache_dir, work, **settings) as server:
                return body(server)
        except ExternalStop as error:
            if attempt == 3:
                raise
            print(f"      {error}: starting this part over", flush=True)
    raise AssertionError("unreachable")


@contextlib.contextmanager
def mlx_lm_server(model_dir: Path, work: Path) -> Iterator[Server]:
    """`python -m mlx_lm.server` on the model directory, every option at default."""
    port = free_port()
    command = mlx_lm_server_command(model_dir, port)
    with serving(
        "mlx_lm.server", command, dict(os.environ), port, work / "mlx.log"
    ) as s:
        yield s

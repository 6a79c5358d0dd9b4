"""Shared fixtures: the imported bundled model and a real gunicorn server."""

from __future__ import annotations

import inspect
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient

from fake_engine import FakeEngine, script, scripted_app
from pensieve.models.resolve import resolve_model

ROOT = Path(__file__).resolve().parent.parent
API_KEY = "pensieve-local-key"
# `pytest -m "not slow"`: the tests that start no server and run no model.
SERVER_FIXTURES = {"server", "servers", "claude"}
SERVER_CALLS = ("running_server(", "bundled_server(")
SLOW_MODULES = {"test_cpu_profile", "test_gguf_reference", "test_connection"}
SLOW_MODULES |= {"test_lifecycle", "test_queue_and_cache_e2e"}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: starts a server or runs a model")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        function = getattr(item, "function", None)
        source = inspect.getsource(function) if function else ""
        if (
            SERVER_FIXTURES & set(getattr(item, "fixturenames", ()))
            or any(call in source for call in SERVER_CALLS)
            or item.module.__name__ in SLOW_MODULES  # type: ignore[attr-defined]
        ):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Pensieve cache folder of this test session's own."""
    return tmp_path_factory.mktemp("pensieve-cache")


@pytest.fixture(scope="session")
def bundled_model_dir(cache_dir: Path) -> Path:
    """The bundled GGUF imported into an mlx-lm model directory (once a session)."""
    return resolve_model("bundled", cache_dir=cache_dir, fallback=False).path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Server:
    """A real `gunicorn -c gunicorn.conf.py wsgi:app` on a free port."""

    url: str
    process: subprocess.Popen[str]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextmanager
def running_server(env: dict[str, str], log_path: Path) -> Iterator[Server]:
    """Start gunicorn with `env` added, wait until /health is ready, stop it after."""
    port = free_port()
    # Only the test's own settings: none inherited from the developer's shell.
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("PENSIEVE_")}
    environment = {**inherited, "PENSIEVE_PORT": str(port), **env}
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
            cwd=ROOT,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
    server = Server(f"http://127.0.0.1:{port}", process, log_path)
    try:
        wait_until_ready(server, timeout=180)
        yield server
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def wait_until_ready(server: Server, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{server.log()}")
        try:
            if requests.get(f"{server.url}/health", timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"server not ready after {timeout} s:\n{server.log()}")


def bundled_env(cache_dir: Path, **settings: str) -> dict[str, str]:
    """Environment for a server on the bundled model; `settings` by name."""
    return {
        "PENSIEVE_MODEL": "bundled",
        "PENSIEVE_CACHE_DIR": str(cache_dir),
        "PENSIEVE_HOST": "127.0.0.1",
        "PENSIEVE_API_KEY": API_KEY,
        **{f"PENSIEVE_{name}": value for name, value in settings.items()},
    }


@contextmanager
def bundled_server(
    cache_dir: Path, tmp_path_factory: pytest.TempPathFactory, **settings: str
) -> Iterator[Server]:
    """A real server on the bundled model with `settings` (e.g. QUEUE_DEPTH="1")."""
    log_path = tmp_path_factory.mktemp("server") / "gunicorn.log"
    with running_server(bundled_env(cache_dir, **settings), log_path) as running:
        yield running


@pytest.fixture(scope="session")
def server(
    cache_dir: Path, bundled_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """The real server on the bundled model, shared by the integration tests."""
    with bundled_server(
        cache_dir,
        tmp_path_factory,
        KEEPALIVE_SECONDS="1",  # so that prefill pings show in tests
        MAX_REQUEST_BYTES="2000000",
    ) as running:
        yield running


@pytest.fixture
def engine() -> FakeEngine:
    """A scripted engine, for the fast HTTP tests: it answers "Hello!"."""
    return FakeEngine(script(["Hel", "lo", "!"]))


@pytest.fixture
def app(engine: FakeEngine) -> Flask:
    """The real app on the scripted engine."""
    return scripted_app(engine)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def headers() -> dict[str, str]:
    return {"x-api-key": API_KEY, "anthropic-version": "2023-06-01"}

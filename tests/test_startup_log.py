"""What a user reads when README's main command starts the server."""

from __future__ import annotations

import time
from pathlib import Path

import requests

from conftest import Server, running_server
from pensieve.config import DEFAULT_MODEL

OWN_KEY = "a-key-of-my-own-0123"


def ready_line_of(server: Server) -> None:
    """Wait for the ready line: /health turns ready as the load finishes, and
    the line is written just after, on the inference thread."""
    deadline = time.monotonic() + 10
    while "ready: " not in server.log() and time.monotonic() < deadline:
        time.sleep(0.1)


def test_the_log_says_when_the_server_answers_and_how_to_connect(
    cache_dir: Path, bundled_model_dir: Path, tmp_path: Path
) -> None:
    """On the default model offline: one FALLBACK banner, no gevent warning,
    a ready line after "Listening at" with the lines to paste, and no access
    line for the /health polls (the fixture polls it until ready)."""
    env = {
        "PENSIEVE_CACHE_DIR": str(cache_dir),
        "PENSIEVE_API_KEY": "pensieve-local-key",  # the default: shown
        "HF_HUB_CACHE": str(tmp_path / "hf"),
        "HF_ENDPOINT": "http://127.0.0.1:9",
    }
    log_path = tmp_path / "gunicorn.log"
    with running_server(env, log_path) as server:
        ready_line_of(server)
        headers = {"x-api-key": "pensieve-local-key"}
        assert requests.get(f"{server.url}/v1/models", headers=headers).ok
        requests.get(f"{server.url}/health", timeout=5)
    log = log_path.read_text()
    assert log.count(f"FALLBACK: {DEFAULT_MODEL} is not available") == 1, log
    assert "MonkeyPatchWarning" not in log, log
    listening = log.index("Listening at")
    ready = log.index(f"ready: {server.url} answers requests")
    assert listening < ready
    assert f"export ANTHROPIC_BASE_URL={server.url}\n" in log[ready:]
    assert "export ANTHROPIC_API_KEY=pensieve-local-key" in log[ready:]
    assert '"GET /v1/models' in log and '"GET /health' not in log


def test_a_key_of_the_users_own_is_not_written_to_the_log(
    cache_dir: Path, bundled_model_dir: Path, tmp_path: Path
) -> None:
    env = {
        "PENSIEVE_MODEL": "bundled",
        "PENSIEVE_CACHE_DIR": str(cache_dir),
        "PENSIEVE_API_KEY": OWN_KEY,
    }
    with running_server(env, tmp_path / "gunicorn.log") as server:
        ready_line_of(server)
    log = server.log()
    assert "export ANTHROPIC_API_KEY=$PENSIEVE_API_KEY" in log
    assert OWN_KEY not in log

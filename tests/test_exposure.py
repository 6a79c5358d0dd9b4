"""Exposure: requests for other hosts are refused; an exposed default key
stops the server before it starts. (DNS rebinding lets a web page reach
127.0.0.1 under its own name; the default key is in every README.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient

from fake_engine import KEY, FakeEngine, script, scripted_app
from pensieve.cli import cli
from pensieve.exposure import exposure_problem, host_name, is_loopback

ROOT = Path(__file__).resolve().parent.parent
BODY = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "Hi"}]}


def client_with(**config: str) -> FlaskClient:
    app = scripted_app(FakeEngine(script(["Hi"])))
    app.config.update(config)
    return app.test_client()


def ask(client: FlaskClient, path: str = "/v1/messages", **headers: str) -> Any:
    return client.post(path, json=BODY, headers={"x-api-key": KEY, **headers})


LOCAL = ["localhost", "localhost:7777", "127.0.0.1:7777", "[::1]:7777", "a.localhost"]


@pytest.mark.parametrize("host", LOCAL)
def test_localhost_names_and_loopback_addresses_are_served(host: str) -> None:
    assert ask(client_with(), Host=host).status_code == 200


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/chat/completions", "/health"])
def test_another_host_is_a_403_in_the_faces_envelope(path: str) -> None:
    client = client_with()
    if path == "/health":
        response = client.get(path, headers={"Host": "evil.example.com"})
    else:
        response = ask(client, path, Host="evil.example.com:7777")
    assert response.status_code == 403
    body = response.get_json()
    error = body["error"]
    if path == "/v1/messages":
        assert body["type"] == "error" and error["type"] == "permission_error"
    else:  # /health speaks as its client does: OpenAI's envelope here
        assert error["type"] == "invalid_request_error" and "code" in error
    assert "host not allowed: 'evil.example.com'" in error["message"]
    assert "model" not in body  # nothing of the server is shown
    assert ask(client).status_code == 200  # and it serves on


@pytest.mark.parametrize(
    ("origin", "status"),
    [
        ("http://localhost:3000", 200),
        ("http://127.0.0.1", 200),
        ("https://evil.example.com", 403),
        ("null", 403),  # a sandboxed frame or a local file
    ],
)
def test_a_page_of_another_origin_is_refused(origin: str, status: int) -> None:
    assert ask(client_with(), Origin=origin).status_code == status


def test_allowed_hosts_extend_the_list_and_a_star_allows_any() -> None:
    named = client_with(ALLOWED_HOSTS="my-mac.local, studio.lan")
    assert ask(named, Host="studio.lan:7777").status_code == 200
    assert ask(named, Host="other.lan").status_code == 403
    assert ask(client_with(ALLOWED_HOSTS="*"), Host="any.example").status_code == 200
    bound = client_with(HOST="192.168.1.20")  # the address it binds is its own
    assert ask(bound, Host="192.168.1.20:7777").status_code == 200


def test_host_parsing() -> None:
    assert host_name("[::1]:7777") == "::1"
    assert host_name("Example.COM:80") == "example.com"
    assert is_loopback("127.8.0.1") and is_loopback("::1")
    assert not is_loopback("10.0.0.1")


@pytest.mark.parametrize(
    ("host", "key", "refused"),
    [
        ("127.0.0.1", "pensieve-local-key", False),
        ("0.0.0.0", "pensieve-local-key", True),
        ("192.168.1.20", "pensieve-local-key", True),
        ("0.0.0.0", "a-key-of-my-own", False),
    ],
)
def test_an_exposed_default_key_is_a_problem(
    host: str, key: str, refused: bool
) -> None:
    problem = exposure_problem({"HOST": host, "API_KEY": key})
    assert (problem is not None) == refused
    if refused:
        assert "PENSIEVE_API_KEY" in problem  # type: ignore[operator]


def test_config_validate_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PENSIEVE_INSTANCE_PATH", str(tmp_path))
    monkeypatch.setenv("PENSIEVE_HOST", "0.0.0.0")
    monkeypatch.delenv("PENSIEVE_API_KEY", raising=False)
    result = CliRunner().invoke(cli, ["config", "validate"])
    assert result.exit_code == 1
    expected = "PENSIEVE_HOST: PENSIEVE_HOST=0.0.0.0 would serve the network"
    assert expected in result.stderr


def test_the_server_refuses_to_start_exposed_with_the_default_key(
    tmp_path: Path,
) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "PENSIEVE_INSTANCE_PATH": str(tmp_path),
        "PENSIEVE_HOST": "0.0.0.0",
        "PENSIEVE_PORT": "7999",
        "PENSIEVE_MODEL": "bundled",
    }
    started = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert started.returncode != 0
    assert "cannot start: PENSIEVE_HOST=0.0.0.0 would serve the network" in (
        started.stdout + started.stderr
    )

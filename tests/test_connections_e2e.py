"""Slow and idle clients against the real server: a flood of sockets that send
nothing or trickle bytes never keeps a keyed client from being served.

Every socket goes to 127.0.0.1 only, and each test ends by itself.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from conftest import API_KEY, Server, bundled_server

pytestmark = pytest.mark.slow

READ_TIMEOUT = 3.0


@pytest.fixture(scope="module")
def guarded(
    cache_dir: Path, bundled_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A server with a short read timeout and a small connection cap."""
    with bundled_server(
        cache_dir,
        tmp_path_factory,
        READ_TIMEOUT=str(READ_TIMEOUT),
        MAX_CONNECTIONS="200",
    ) as running:
        yield running


def address(server: Server) -> tuple[str, int]:
    parts = urlsplit(server.url)
    assert parts.hostname == "127.0.0.1" and parts.port is not None
    return parts.hostname, parts.port


def keyed_answer(server: Server) -> tuple[requests.Response, float]:
    started = time.monotonic()
    response = requests.post(
        f"{server.url}/v1/messages",
        headers={"x-api-key": API_KEY},
        json={
            "model": "local",
            "max_tokens": 4,
            "temperature": 0,
            "messages": [{"role": "user", "content": "Hi"}],
        },
        timeout=60,
    )
    return response, time.monotonic() - started


def trickle_head(server: Server, length: int) -> bytes:
    """A request head announcing a JSON body of `length` bytes."""
    host, port = address(server)
    return (
        f"POST /v1/messages HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"x-api-key: {API_KEY}\r\ncontent-type: application/json\r\n"
        f"content-length: {length}\r\n\r\n"
    ).encode()


def test_a_flood_of_idle_and_trickling_sockets_does_not_lock_a_client_out(
    guarded: Server,
) -> None:
    _, normal = keyed_answer(guarded)
    with ExitStack() as stack:
        # Past the cap (200) by half: the oldest idle ones are closed for newcomers.
        idle = [
            stack.enter_context(socket.create_connection(address(guarded)))
            for _ in range(300)
        ]
        tricklers = [
            stack.enter_context(socket.create_connection(address(guarded)))
            for _ in range(20)
        ]
        for sock in tricklers:
            sock.sendall(trickle_head(guarded, 1000)[:20])  # half a request line
        response, elapsed = keyed_answer(guarded)
        assert response.status_code == 200, response.text
        assert elapsed < normal + 5.0, (elapsed, normal)
        closed = sum(1 for sock in idle if closed_by_server(sock, wait=0.0))
        assert closed > 0  # the cap made room by closing idle connections
    assert requests.get(f"{guarded.url}/health", timeout=5).status_code == 200


def test_a_body_trickled_byte_by_byte_is_cut_off_at_the_read_timeout(
    guarded: Server,
) -> None:
    body = json.dumps({"model": "local", "max_tokens": 1, "messages": []}).encode()
    with socket.create_connection(address(guarded)) as sock:
        sock.sendall(trickle_head(guarded, len(body)))
        started = time.monotonic()
        sent, said = 0, None
        while time.monotonic() - started < READ_TIMEOUT + 10:
            try:
                sock.sendall(body[sent : sent + 1])
            except OSError:
                break  # the server closed the connection
            sent += 1
            if (said := server_said(sock, wait=1.0)) is not None:
                break
        elapsed = time.monotonic() - started
    assert sent < len(body)  # it never got to send the whole body
    assert elapsed < READ_TIMEOUT + 5, elapsed
    assert said is not None and said.startswith(b"HTTP/1.1 408"), said
    assert b"not received within" in said
    response, _ = keyed_answer(guarded)
    assert response.status_code == 200


def test_a_request_head_trickled_is_cut_off_at_the_read_timeout(
    guarded: Server,
) -> None:
    head = trickle_head(guarded, 2)
    with socket.create_connection(address(guarded)) as sock:
        started = time.monotonic()
        for byte in head[:-4]:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                break
            if closed_by_server(sock, wait=0.5):
                break
        elapsed = time.monotonic() - started
    assert elapsed < READ_TIMEOUT + 3, elapsed


def closed_by_server(sock: socket.socket, wait: float) -> bool:
    """Whether the server answered or closed `sock`, waiting up to `wait` s."""
    return server_said(sock, wait) is not None


def server_said(sock: socket.socket, wait: float) -> bytes | None:
    """What the server sent before closing `sock` (b"" for a bare close), or
    None while it stays open and silent for `wait` seconds."""
    sock.settimeout(wait if wait > 0 else 0.001)
    try:
        said = sock.recv(65536)
    except TimeoutError:
        return None
    except OSError:
        return b""  # reset by the server
    sock.settimeout(1.0)  # the rest of an answer may come in later packets
    try:
        while said and (more := sock.recv(65536)):
            said += more
    except OSError:
        pass
    return said


def test_health_answers_while_a_large_request_is_prepared(server: Server) -> None:
    # ~1.9 MB of short turns: parsing, validating, rendering and tokenising
    # them takes seconds, off the event loop.
    turns = [
        {"role": ("user", "assistant")[i % 2], "content": f"m{i}"}
        for i in range(46_000)
    ]
    body = json.dumps({"model": "m", "max_tokens": 4, "messages": turns}).encode()
    keyed = {"x-api-key": API_KEY}
    answer: dict[str, requests.Response] = {}

    def large() -> None:
        answer["large"] = requests.post(
            f"{server.url}/v1/messages",
            data=body,
            headers={**keyed, "content-type": "application/json"},
            timeout=300,
        )

    worker = threading.Thread(target=large)
    started = time.monotonic()
    worker.start()
    slowest = 0.0
    while worker.is_alive():
        asked = time.monotonic()
        assert requests.get(f"{server.url}/health", headers=keyed, timeout=30).ok
        slowest = max(slowest, time.monotonic() - asked)
        time.sleep(0.05)
    worker.join()
    took = time.monotonic() - started
    assert answer["large"].status_code == 400  # far past the window
    assert "prompt is too long" in answer["large"].json()["error"]["message"]
    assert took > 1.5, took  # long enough for a stalled loop to show
    assert slowest < 1.0, (slowest, took)


def test_a_body_past_the_window_s_limit_is_a_413_unread(guarded: Server) -> None:
    # The bundled model's 8k window: at most 1 MiB (128 bytes a token).
    padding = "x" * (1024 * 1024)
    response = requests.post(
        f"{guarded.url}/v1/messages",
        headers={"x-api-key": API_KEY},
        json={"model": "m", "max_tokens": 1, "messages": [], "pad": padding},
        timeout=30,
    )
    assert response.status_code == 413
    assert response.json()["error"]["type"] == "request_too_large"
    assert keyed_answer(guarded)[0].status_code == 200

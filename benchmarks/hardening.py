"""Hardening probes: each finding of the hardening issue, against a real server.

    python benchmarks/hardening.py [--root DIR]

Starts Pensieve on the bundled model at its default settings (in `--root`, a
checkout of another commit, to compare), runs every probe against
127.0.0.1 only, prints one row per finding (what a hardened server answers,
what this one did) and exits 1 if any row misses. Every probe is bounded in
time; the whole run takes about two minutes.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from _files import ROOT
from _server import free_port, gunicorn_command, pensieve_env, running_server

KEY = "pensieve-local-key"
KEYED = {"x-api-key": KEY}
HI = [{"role": "user", "content": "Hi"}]
Probe = Callable[[str], tuple[str, bool]]


def post(url: str, path: str, body: Any, **headers: str) -> requests.Response:
    return requests.post(
        f"{url}{path}", json=body, headers={**KEYED, **headers}, timeout=60
    )


def raw(url: str, path: str, data: bytes, kind: str = "application/json") -> Any:
    headers = {**KEYED, "content-type": kind}
    return requests.post(f"{url}{path}", data=data, headers=headers, timeout=120)


def status(response: requests.Response) -> str:
    try:
        message = response.json()["error"]["message"][:60]
    except (ValueError, KeyError, TypeError):
        return str(response.status_code)
    return f"{response.status_code} {message}"


def address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").split(":")
    return host, int(port)


def idle_flood(url: str) -> tuple[str, bool]:
    sockets = [socket.create_connection(address(url)) for _ in range(150)]
    try:
        started = time.monotonic()
        try:
            answer = requests.post(
                f"{url}/v1/messages",
                json={"model": "m", "max_tokens": 2, "messages": HI},
                headers=KEYED,
                timeout=20,
            )
            took = time.monotonic() - started
            return f"{answer.status_code} in {took:.1f} s", answer.ok and took < 10
        except requests.RequestException:
            return "no answer within 20 s", False
    finally:
        for sock in sockets:
            sock.close()


def trickled_body(url: str) -> tuple[str, bool]:
    host, port = address(url)
    head = (
        f"POST /v1/messages HTTP/1.1\r\nHost: {host}:{port}\r\nx-api-key: {KEY}\r\n"
        "content-type: application/json\r\ncontent-length: 1000\r\n\r\n"
    ).encode()
    with socket.create_connection((host, port)) as sock:
        sock.sendall(head)
        sock.settimeout(1.0)
        started = time.monotonic()
        while time.monotonic() - started < 30:
            try:
                sock.sendall(b" ")
                if sock.recv(4096) is not None:
                    took = time.monotonic() - started
                    return f"cut off after {took:.0f} s", took < 25
            except TimeoutError:
                continue
            except OSError:
                took = time.monotonic() - started
                return f"reset after {took:.0f} s", took < 25
    return "still held after 30 s", False


def top_k_then_sampling(url: str) -> tuple[str, bool]:
    body = {"model": "m", "max_tokens": 4, "temperature": 1.0, "messages": HI}
    big = post(url, "/v1/messages", {**body, "top_k": 50_000})
    huge = post(url, "/v1/messages", {**body, "top_k": 10**30})
    after = [post(url, "/v1/messages", body).status_code for _ in range(2)]
    chat = post(url, "/v1/chat/completions", body).status_code
    shown = f"{big.status_code}, {huge.status_code}; then sampled {after} + chat {chat}"
    ok = big.status_code == huge.status_code == 400 and after == [200, 200]
    return shown, ok and chat == 200


def health_during(url: str, body: bytes) -> tuple[float, requests.Response]:
    """The slowest /health answer while `body` is being served."""
    answer: dict[str, requests.Response] = {}
    worker = threading.Thread(
        target=lambda: answer.update(big=raw(url, "/v1/messages", body))
    )
    worker.start()
    slowest = 0.0
    while worker.is_alive():
        asked = time.monotonic()
        requests.get(f"{url}/health", headers=KEYED, timeout=120)
        slowest = max(slowest, time.monotonic() - asked)
        time.sleep(0.05)
    worker.join()
    return slowest, answer["big"]


def turns(count: int) -> bytes:
    many = [
        {"role": ("user", "assistant")[i % 2], "content": f"m{i}"} for i in range(count)
    ]
    return json.dumps({"model": "m", "max_tokens": 4, "messages": many}).encode()


def loop_blocked_1mb(url: str) -> tuple[str, bool]:
    slowest, answer = health_during(url, turns(23_000))  # ~0.95 MB
    return f"/health {slowest:.2f} s at worst; {answer.status_code}", slowest < 1.0


def loop_blocked_4mb(url: str) -> tuple[str, bool]:
    slowest, answer = health_during(url, turns(100_000))  # ~4.1 MB
    return f"/health {slowest:.2f} s at worst; {status(answer)}", slowest < 1.0


def deep_json(url: str) -> tuple[str, bool]:
    deep = b"[" * 100_000 + b"]" * 100_000
    answers = [raw(url, p, deep) for p in ("/v1/messages", "/v1/chat/completions")]
    return ", ".join(status(a)[:40] for a in answers), all(
        a.status_code == 400 for a in answers
    )


def deep_schema(url: str) -> tuple[str, bool]:
    schema = '{"type": "object", "properties": {"a": ' * 450 + '{"type": "string"}'
    schema += "}}" * 450
    body = (
        '{"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": '
        f'"Hi"}}], "tools": [{{"name": "deep", "input_schema": {schema}}}]}}'
    )
    answer = raw(url, "/v1/messages", body.encode())
    return status(answer), answer.status_code == 400


def lone_surrogate(url: str) -> tuple[str, bool]:
    body = json.dumps(
        {
            "model": "m",
            "max_tokens": 2,
            "messages": [{"role": "user", "content": "a\ud800b"}],
        }
    )
    answer = raw(url, "/v1/messages", body.encode())
    return status(answer), answer.status_code == 400


def openai_seeds(url: str) -> tuple[str, bool]:
    body = {"model": "m", "max_tokens": 2, "messages": HI}
    codes = [
        post(url, "/v1/chat/completions", {**body, "seed": s}).status_code
        for s in (2**64, -1)
    ]
    return f"{codes}", codes == [400, 400]


def openai_bad_schema(url: str) -> tuple[str, bool]:
    tool = {
        "type": "function",
        "function": {
            "name": "f",
            "parameters": {
                "type": "object",
                "properties": {"a": {"type": "strin"}},
            },
        },
    }
    body = {
        "model": "m",
        "max_tokens": 8,
        "messages": HI,
        "tools": [tool],
        "tool_choice": "required",
    }
    plain = post(url, "/v1/chat/completions", body)
    streamed = post(url, "/v1/chat/completions", {**body, "stream": True})
    shown = f"{plain.status_code}; stream {streamed.status_code}"
    return shown, plain.status_code == 400 and streamed.status_code == 400


def chunked_over_limit(url: str) -> tuple[str, bool]:
    def chunks():
        for _ in range(33):
            yield b" " * (1024 * 1024)

    headers = {**KEYED, "content-type": "application/json"}
    answer = requests.post(
        f"{url}/v1/messages", data=chunks(), headers=headers, timeout=60
    )
    return status(answer), answer.status_code == 413


def accepted_before(url: str) -> tuple[str, bool]:
    base = {"model": "m", "max_tokens": 2, "messages": HI}
    cases = {
        "content []": {**base, "messages": [{"role": "user", "content": []}]},
        'stop [""]': {**base, "stop_sequences": [""]},
        "any, no tools": {**base, "tool_choice": {"type": "any"}},
        "1 MB model": {**base, "model": "m" * 10**6},
    }
    codes = {
        name: post(url, "/v1/messages", body).status_code
        for name, body in cases.items()
    }
    for kind in ("text/plain", "application/x-www-form-urlencoded"):
        codes[kind] = raw(
            url, "/v1/messages", json.dumps(base).encode(), kind
        ).status_code
    shown = ", ".join(f"{name} {code}" for name, code in codes.items())
    return shown, all(code == 400 for code in codes.values())


def exposure(url: str) -> tuple[str, bool]:
    body = {"model": "m", "max_tokens": 2, "messages": HI}
    host = post(url, "/v1/messages", body, Host="evil.example.com").status_code
    origin = post(url, "/v1/messages", body, Origin="http://evil.example.com")
    keyless = sorted(requests.get(f"{url}/health", timeout=10).json())
    shown = f"Host {host}, Origin {origin.status_code}, keyless /health {keyless}"
    return shown, host == origin.status_code == 403 and keyless == ["status"]


def queued_client_leaves(url: str) -> tuple[str, bool]:
    long = {
        "model": "m",
        "max_tokens": 400,
        "temperature": 0,
        "stream": True,
        "messages": [{"role": "user", "content": "Count to 500."}],
    }
    running = requests.post(
        f"{url}/v1/messages", json=long, headers=KEYED, stream=True, timeout=60
    )
    next(running.iter_lines())
    host, port = address(url)
    body = json.dumps({"model": "m", "max_tokens": 2, "messages": HI}).encode()
    head = (
        f"POST /v1/messages HTTP/1.1\r\nHost: {host}:{port}\r\nx-api-key: {KEY}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    try:
        with socket.create_connection((host, port)) as queued:
            queued.sendall(head.encode() + body)
            until_queued = time.monotonic() + 10
            while waiting(url) < 1 and time.monotonic() < until_queued:
                time.sleep(0.05)
        left = time.monotonic()
        while waiting(url) > 0 and time.monotonic() - left < 10:
            time.sleep(0.05)
        took = time.monotonic() - left
        return f"left the queue {took:.2f} s after closing", took < 1.0
    finally:
        running.close()


def waiting(url: str) -> int:
    return requests.get(f"{url}/health", headers=KEYED, timeout=10).json()[
        "requests_waiting"
    ]


PROBES: list[tuple[str, str, Probe]] = [
    ("1", "150 idle sockets, then a keyed request", idle_flood),
    ("1", "a body trickled 1 byte/s", trickled_body),
    ("3", "/health during a 0.95 MB request", loop_blocked_1mb),
    ("3", "/health during a 4.1 MB request", loop_blocked_4mb),
    ("4", "JSON nested 100,000 deep (both faces)", deep_json),
    ("4", "input_schema nested 900 deep", deep_schema),
    ("4", "a lone surrogate in content", lone_surrogate),
    ("4", "OpenAI seed 2**64, -1", openai_seeds),
    ("4", "OpenAI tool with an unsupported schema", openai_bad_schema),
    ("4", "a chunked 33 MiB body", chunked_over_limit),
    ("5", "bodies accepted before", accepted_before),
    ("6", "foreign Host / Origin, keyless /health", exposure),
    ("7", "a queued client that closes", queued_client_leaves),
    # Last: before the fix, it broke every later sampled request.
    ("2", "top_k 50000 / 10**30, then sampling", top_k_then_sampling),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=ROOT)
    args = parser.parse_args()
    port = free_port()
    cache = Path.home() / ".cache" / "pensieve"
    env = pensieve_env(port, cache, KEY, {"QUEUE_DEPTH": "2"}, inherit_pensieve=False)
    log = Path(tempfile.mkdtemp()) / "hardening.log"
    command = gunicorn_command()
    missed = 0
    print(f"hardening probes against {args.root} (bundled model; log {log})")
    print("| finding | probe | observed | hardened |\n|---|---|---|---|")
    with running_server(command, env, port, log, cwd=args.root) as ready:
        for finding, what, probe in PROBES:
            try:
                shown, ok = probe(ready.url)
            except Exception as error:  # a probe that breaks is a miss, shown
                shown, ok = f"probe failed: {type(error).__name__} {error}"[:90], False
            missed += not ok
            print(
                f"| {finding} | {what} | {shown} | {'yes' if ok else 'NO'} |",
                flush=True,
            )
        alive = requests.get(f"{ready.url}/health", headers=KEYED, timeout=10).ok
    print(f"server still serving at the end: {alive}; {missed} probes missed")
    return 1 if missed or not alive else 0


if __name__ == "__main__":
    sys.exit(main())

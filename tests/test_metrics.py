"""Observability: /metrics (Prometheus), log lines carrying the request id
(plain and JSON), the daemon log's size-based rotation."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from pathlib import Path

import requests
from flask import Flask, g
from flask.testing import FlaskClient

from conftest import Server
from fake_engine import KEY, FakeEngine
from pensieve.engine import GenerationStats, Usage
from pensieve.logs import (
    ACCESS_LOG_FORMAT,
    JSONFormatter,
    RequestIdFilter,
    logging_config,
    write_rotated,
)
from pensieve.metrics import metrics_of

BODY = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "Hi"}]}


def sample(text: str, name: str, **labels: str) -> float:
    """One sample's value from Prometheus' text format (0 when absent)."""
    wanted = ",".join(f'{key}="{value}"' for key, value in labels.items())
    series = f"{name}{{{wanted}}}" if labels else name
    pattern = rf"^{re.escape(series)} (\S+)$"
    match = re.search(pattern, text, re.MULTILINE)
    return float(match[1]) if match else 0.0


def test_metrics_need_no_key_and_count_requests_by_route_and_status(
    client: FlaskClient,
) -> None:
    before = client.get("/metrics")
    assert before.status_code == 200
    assert before.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    ok = {"endpoint": "/v1/messages", "method": "POST", "status": "200"}
    denied = {**ok, "status": "401"}
    counts = [sample(before.text, "pensieve_http_requests_total", **ok)]
    counts.append(sample(before.text, "pensieve_http_requests_total", **denied))

    answered = client.post("/v1/messages", json=BODY, headers={"x-api-key": KEY})
    assert answered.status_code == 200
    denial = client.post("/v1/messages", json=BODY)
    assert denial.status_code == 401
    for response in (answered, denial):
        response.close()  # as a server does once a response is sent
    after = client.get("/metrics").text
    assert sample(after, "pensieve_http_requests_total", **ok) == counts[0] + 1
    assert sample(after, "pensieve_http_requests_total", **denied) == counts[1] + 1
    duration = "pensieve_http_request_duration_seconds_count"
    assert sample(after, duration, endpoint="/v1/messages") >= 2


def test_queue_length_and_model_gauges_read_the_engine(
    engine: FakeEngine, client: FlaskClient
) -> None:
    engine.waiting = 3  # type: ignore[misc]
    text = client.get("/metrics").text
    assert sample(text, "pensieve_queue_length") == 3
    assert sample(text, "pensieve_model_ready") == 1
    assert "pensieve_model_load_seconds NaN" in text  # the fake loads nothing


def test_openmetrics_when_the_scraper_asks_for_it(client: FlaskClient) -> None:
    response = client.get(
        "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert response.headers["Content-Type"].startswith("application/openmetrics-text")
    assert response.text.endswith("# EOF\n")


def test_the_engine_hooks_move_the_generation_metrics(
    app: Flask, client: FlaskClient
) -> None:
    def figures() -> dict[str, float]:
        text = client.get("/metrics").text
        names = [
            "pensieve_time_to_first_token_seconds_count",
            "pensieve_generation_duration_seconds_sum",
            "pensieve_prompt_tokens_total",
            "pensieve_generated_tokens_total",
            "pensieve_prompt_cache_hit_tokens_total",
            "pensieve_decode_tokens_per_second_count",
            "pensieve_queue_wait_seconds_sum",
        ]
        return {name: sample(text, name) for name in names}

    before = figures()
    metrics = metrics_of(app)
    usage = Usage(input_tokens=40, output_tokens=21, cache_read_input_tokens=30)
    metrics.generation_finished(GenerationStats(0.5, 2.5, usage))
    metrics.queue_waited(1.5)
    after = figures()
    assert [after[n] - before[n] for n in before] == [1, 2.5, 40, 21, 30, 1, 1.5]


def test_log_lines_carry_the_request_id_plain_and_json(app: Flask) -> None:
    records: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(self.format(record))

    for log_format in ("plain", "json"):
        config = logging_config({"LOG_LEVEL": "info", "LOG_FORMAT": log_format})
        handler = Collect()
        handler.addFilter(RequestIdFilter())
        formatter = config["formatters"]["pensieve"]
        handler.setFormatter(
            JSONFormatter()
            if "()" in formatter
            else logging.Formatter(formatter["format"])
        )
        logger = logging.getLogger("pensieve.test")
        logger.addHandler(handler)
        try:
            with app.test_request_context("/v1/messages"):
                app.preprocess_request()  # assigns the request id
                request_id = g.request_id
                logger.warning("inside %s", "a request")
            logger.warning("outside")
        finally:
            logger.removeHandler(handler)
        inside, outside = records[-2:]
        if log_format == "plain":
            assert f"[WARNING] [{request_id}] pensieve.test: inside a request" in inside
            assert "[-] pensieve.test: outside" in outside
        else:
            entry = json.loads(inside)
            assert entry["request_id"] == request_id
            assert entry["message"] == "inside a request"
            assert entry["level"] == "warning" and entry["logger"] == "pensieve.test"
            assert json.loads(outside)["request_id"] == "-"


def test_access_lines_take_the_request_id_from_the_response_header() -> None:
    atoms = {"{request-id}o": "req_abc", "h": "127.0.0.1", "r": "GET / HTTP/1.1"}
    record = logging.LogRecord(
        "gunicorn.access", logging.INFO, "", 0, ACCESS_LOG_FORMAT, (atoms,), None
    )
    assert RequestIdFilter().filter(record) and record.request_id == "req_abc"


def test_the_daemon_log_is_rotated_by_size(tmp_path: Path) -> None:
    log = tmp_path / "pensieve.log"
    lines = [f"line {i:04d} ".ljust(99, "x").encode() + b"\n" for i in range(100)]
    write_rotated(iter(lines), log, max_bytes=2000, backups=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "pensieve.log",
        "pensieve.log.1",
        "pensieve.log.2",
    ]
    assert all(p.stat().st_size <= 2000 for p in tmp_path.iterdir())
    kept = [tmp_path / "pensieve.log.2", tmp_path / "pensieve.log.1", log]
    numbers = [int(line[5:9]) for p in kept for line in p.read_text().splitlines()]
    assert numbers == list(range(numbers[0], 100))  # oldest first, none lost

    # The same through the process a daemon pipes its output into.
    piped = tmp_path / "piped" / "server.log"
    subprocess.run(
        [sys.executable, "-m", "pensieve.logs", str(piped), "--max-bytes", "2000"],
        input=b"".join(lines) + "é".encode() + b"\xff",  # not UTF-8 at the end
        check=True,
        timeout=60,
    )
    assert piped.read_text().splitlines()[-1] == "é\ufffd"
    assert (piped.parent / "server.log.3").is_file()


def test_metrics_and_request_ids_on_the_real_server(
    server: Server, headers: dict[str, str]
) -> None:
    ok = {"endpoint": "/v1/messages", "method": "POST", "status": "200"}
    before = requests.get(f"{server.url}/metrics", timeout=10).text
    response = requests.post(
        f"{server.url}/v1/messages", json=BODY, headers=headers, timeout=120
    )
    assert response.status_code == 200
    after = requests.get(f"{server.url}/metrics", timeout=10).text
    count = "pensieve_http_requests_total"
    assert sample(after, count, **ok) == sample(before, count, **ok) + 1
    assert sample(after, "pensieve_model_ready") == 1
    assert sample(after, "pensieve_model_load_seconds") > 0
    request_id = response.headers["request-id"]
    mine = [line for line in server.log().splitlines() if f"[{request_id}]" in line]
    assert any(
        "gunicorn.access" in line and "POST /v1/messages" in line for line in mine
    )
    assert any("pensieve.engine" in line for line in mine), mine


def test_generated_tokens_are_counted_on_the_real_server(
    server: Server, headers: dict[str, str]
) -> None:
    name = "pensieve_generated_tokens_total"
    before = sample(requests.get(f"{server.url}/metrics", timeout=10).text, name)
    response = requests.post(
        f"{server.url}/v1/messages", json=BODY, headers=headers, timeout=120
    )
    generated = response.json()["usage"]["output_tokens"]
    after = sample(requests.get(f"{server.url}/metrics", timeout=10).text, name)
    assert after - before == generated > 0

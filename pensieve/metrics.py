"""Prometheus metrics, served at `GET /metrics`.

Metrics are per process, as prometheus-client keeps them, and gunicorn runs
one worker, so this is the server's whole picture (a replaced worker starts
from zero, which Prometheus handles as a counter reset). Request counts and
durations come from this module's request hooks; generation figures from the
engine, through `observe_queue_wait` and `observe_generation`; the queue
length and the model's load time are read from the engine at each scrape.
"""

from __future__ import annotations

import math
import time
from typing import Any

from flask import Flask, Response, g, request
from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder

SECONDS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
RATE_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)

HTTP_REQUESTS = Counter(
    "pensieve_http_requests",
    "HTTP requests answered, by route, method and status code.",
    ["endpoint", "method", "status"],
)
HTTP_REQUEST_SECONDS = Histogram(
    "pensieve_http_request_duration_seconds",
    "From a request's arrival until its whole response (a whole stream) is sent.",
    ["endpoint"],
    buckets=SECONDS_BUCKETS,
)
QUEUE_WAIT = Histogram(
    "pensieve_queue_wait_seconds",
    "Time generations waited for the model (behind other requests).",
    buckets=SECONDS_BUCKETS,
)
TIME_TO_FIRST_TOKEN = Histogram(
    "pensieve_time_to_first_token_seconds",
    "From a generation getting the model to its first new token (the prefill).",
    buckets=SECONDS_BUCKETS,
)
GENERATION_SECONDS = Histogram(
    "pensieve_generation_duration_seconds",
    "Whole generations once they have the model: prefill and decode.",
    buckets=SECONDS_BUCKETS,
)
DECODE_RATE = Histogram(
    "pensieve_decode_tokens_per_second",
    "Decode speed of each generation, after its first token.",
    buckets=RATE_BUCKETS,
)
PROMPT_TOKENS = Counter("pensieve_prompt_tokens", "Prompt tokens of generations.")
GENERATED_TOKENS = Counter("pensieve_generated_tokens", "Tokens generated.")
CACHE_HIT_TOKENS = Counter(
    "pensieve_prompt_cache_hit_tokens",
    "Prompt tokens read from the prompt cache instead of being computed.",
)
QUEUE_LENGTH = Gauge("pensieve_queue_length", "Requests waiting for the model.")
MODEL_READY = Gauge("pensieve_model_ready", "1 when the model is loaded and serving.")
MODEL_LOAD_SECONDS = Gauge(
    "pensieve_model_load_seconds", "Time the model took to load (NaN until loaded)."
)


def observe_generation(
    *,
    ttft_seconds: float,
    total_seconds: float,
    input_tokens: int,
    output_tokens: int,
    cache_read_tokens: int = 0,
) -> None:
    """Record one finished generation (called by the engine).

    Both durations start when the generation got the model; the wait before
    that is `observe_queue_wait`'s.
    """
    TIME_TO_FIRST_TOKEN.observe(ttft_seconds)
    GENERATION_SECONDS.observe(total_seconds)
    PROMPT_TOKENS.inc(input_tokens)
    GENERATED_TOKENS.inc(output_tokens)
    CACHE_HIT_TOKENS.inc(cache_read_tokens)
    decode_seconds = total_seconds - ttft_seconds
    if output_tokens > 1 and decode_seconds > 0:
        DECODE_RATE.observe((output_tokens - 1) / decode_seconds)


def observe_queue_wait(seconds: float) -> None:
    """Record how long a generation waited for the model (called by the engine)."""
    QUEUE_WAIT.observe(seconds)


def exposition(accept: str | None) -> tuple[bytes, str]:
    """The metrics and their content type: Prometheus' text format, or
    OpenMetrics when the scraper's Accept header asks for it."""
    encoder, content_type = choose_encoder(accept)
    return encoder(REGISTRY), content_type


def start_timer() -> None:
    g.request_started = time.monotonic()


def count_request(response: Response) -> Response:
    """Count the response by route and status; time it once it is fully sent."""
    endpoint = request.url_rule.rule if request.url_rule else "unmatched"
    HTTP_REQUESTS.labels(endpoint, request.method, str(response.status_code)).inc()
    started = g.get("request_started", time.monotonic())
    response.call_on_close(
        lambda: HTTP_REQUEST_SECONDS.labels(endpoint).observe(
            time.monotonic() - started
        )
    )
    return response


def init_app(app: Flask) -> None:
    """Time and count every request; read engine figures at scrape time."""

    def engine() -> Any:  # the app's current one (tests swap it after create_app)
        return app.extensions["pensieve"]

    def load_seconds() -> float:
        loaded = engine().loaded_now()
        return loaded.load_seconds if loaded is not None else math.nan

    QUEUE_LENGTH.set_function(lambda: engine().waiting)
    MODEL_READY.set_function(lambda: float(engine().status == "ready"))
    MODEL_LOAD_SECONDS.set_function(load_seconds)
    app.before_request(start_timer)
    app.after_request(count_request)

"""Prometheus metrics, served at `GET /metrics`: one registry per app.

gunicorn runs one worker, so one app's registry is the server's whole
picture (a replaced worker starts from zero, which Prometheus handles as a
counter reset). Request counts and durations come from this module's request
hooks; generation figures from the engine, which reports to `AppMetrics` as
one of its observers; the queue length and the model's load time are read
from the engine at each scrape.
"""

from __future__ import annotations

import math
import time

from flask import Flask, Response, current_app, g, request
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder

from .engine import Engine, GenerationStats
from .extension import engine_of

SECONDS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
RATE_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
EXTENSION = "pensieve.metrics"


class AppMetrics:
    """The metrics of one app and its engine, in a registry of their own."""

    def __init__(self, engine: Engine) -> None:
        self.registry = CollectorRegistry()
        self._requests(self.registry)
        self._generations(self.registry)
        self._engine_gauges(self.registry, engine)

    def _requests(self, registry: CollectorRegistry) -> None:
        self.http_requests = Counter(
            "pensieve_http_requests",
            "HTTP requests answered, by route, method and status code.",
            ["endpoint", "method", "status"],
            registry=registry,
        )
        self.http_request_seconds = Histogram(
            "pensieve_http_request_duration_seconds",
            "From a request's arrival until its whole response (a whole stream) "
            "is sent.",
            ["endpoint"],
            buckets=SECONDS_BUCKETS,
            registry=registry,
        )

    def _generations(self, registry: CollectorRegistry) -> None:
        def seconds(name: str, help: str) -> Histogram:
            return Histogram(name, help, buckets=SECONDS_BUCKETS, registry=registry)

        self.queue_wait = seconds(
            "pensieve_queue_wait_seconds",
            "Time generations waited for the model (behind other requests).",
        )
        self.time_to_first_token = seconds(
            "pensieve_time_to_first_token_seconds",
            "From a generation getting the model to its first new token (the prefill).",
        )
        self.generation_seconds = seconds(
            "pensieve_generation_duration_seconds",
            "Whole generations once they have the model: prefill and decode.",
        )
        self.decode_rate = Histogram(
            "pensieve_decode_tokens_per_second",
            "Decode speed of each generation, after its first token.",
            buckets=RATE_BUCKETS,
            registry=registry,
        )
        self.prompt_tokens = Counter(
            "pensieve_prompt_tokens", "Prompt tokens of generations.", registry=registry
        )
        self.generated_tokens = Counter(
            "pensieve_generated_tokens", "Tokens generated.", registry=registry
        )
        self.cache_hit_tokens = Counter(
            "pensieve_prompt_cache_hit_tokens",
            "Prompt tokens read from the prompt cache instead of being computed.",
            registry=registry,
        )

    @staticmethod
    def _engine_gauges(registry: CollectorRegistry, engine: Engine) -> None:
        def load_seconds() -> float:
            loaded = engine.loaded_now()
            return loaded.load_seconds if loaded is not None else math.nan

        Gauge(
            "pensieve_queue_length",
            "Requests waiting for the model.",
            registry=registry,
        ).set_function(lambda: engine.waiting)
        Gauge(
            "pensieve_running_requests",
            "Requests holding a slot of the batch (prefilling or decoding).",
            registry=registry,
        ).set_function(lambda: len(engine.running))
        Gauge(
            "pensieve_batch_slots",
            "Requests the batch may hold at once (MAX_BATCH, once loaded).",
            registry=registry,
        ).set_function(lambda: engine.max_batch)
        Gauge(
            "pensieve_batch_occupancy",
            "Share of the batch's slots in use (0 to 1).",
            registry=registry,
        ).set_function(lambda: len(engine.running) / engine.max_batch)
        Gauge(
            "pensieve_model_ready",
            "1 when the model is loaded and serving.",
            registry=registry,
        ).set_function(lambda: float(engine.status == "ready"))
        Gauge(
            "pensieve_model_load_seconds",
            "Time the model took to load (NaN until loaded).",
            registry=registry,
        ).set_function(load_seconds)

    def queue_waited(self, seconds: float) -> None:
        """A generation got the model after waiting `seconds` (engine observer)."""
        self.queue_wait.observe(seconds)

    def generation_finished(self, stats: GenerationStats) -> None:
        """Record one finished generation (engine observer)."""
        self.time_to_first_token.observe(stats.ttft_seconds)
        self.generation_seconds.observe(stats.total_seconds)
        self.prompt_tokens.inc(stats.usage.processed_tokens)
        self.generated_tokens.inc(stats.usage.output_tokens)
        self.cache_hit_tokens.inc(stats.usage.cache_read_input_tokens)
        if stats.decode_rate > 0:
            self.decode_rate.observe(stats.decode_rate)

    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        """The metrics and their content type: Prometheus' text format, or
        OpenMetrics when the scraper's Accept header asks for it."""
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type


def metrics_of(app: Flask) -> AppMetrics:
    """The metrics of an app built by `create_app`."""
    return app.extensions[EXTENSION]


def start_timer() -> None:
    g.request_started = time.monotonic()


def count_request(response: Response) -> Response:
    """Count the response by route and status; time it once it is fully sent."""
    metrics = metrics_of(current_app)
    endpoint = request.url_rule.rule if request.url_rule else "unmatched"
    status = str(response.status_code)
    metrics.http_requests.labels(endpoint, request.method, status).inc()
    started = g.get("request_started", time.monotonic())
    histogram = metrics.http_request_seconds.labels(endpoint)
    response.call_on_close(lambda: histogram.observe(time.monotonic() - started))
    return response


def init_app(app: Flask) -> None:
    """Time and count every request; hear of the engine's generations."""
    metrics = AppMetrics(engine_of(app))
    app.extensions[EXTENSION] = metrics
    engine_of(app).observers.append(metrics)
    app.before_request(start_timer)
    app.after_request(count_request)

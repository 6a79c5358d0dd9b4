"""HTTP surfaces, one blueprint each."""

from __future__ import annotations

from collections.abc import Iterator

from flask import Flask, current_app, g, request

from ..connection import client_gone_probe
from ..engine import Constraint, Engine, Event, Prompt, SamplingParams


def get_engine() -> Engine:
    """The app's engine (created by `create_app`)."""
    return current_app.extensions["pensieve"]


def generate(
    engine: Engine,
    prompt: Prompt,
    sampling: SamplingParams,
    constraint: Constraint | None = None,
) -> Iterator[Event]:
    """`engine.generate` for the current request: its id, its client's socket."""
    return engine.generate(
        prompt,
        sampling,
        request_id=g.request_id,
        constraint=constraint,
        client_gone=client_gone_probe(request.environ),
    )


def init_app(app: Flask) -> None:
    """Register every blueprint."""
    from . import health, messages, metrics, models, openai

    app.register_blueprint(health.bp)
    app.register_blueprint(messages.bp)
    app.register_blueprint(models.bp)
    app.register_blueprint(openai.bp)
    app.register_blueprint(metrics.bp)

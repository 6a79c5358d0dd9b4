"""HTTP surfaces, one blueprint each, and the one way a view starts a generation."""

from __future__ import annotations

from flask import Flask, g, request

from ..connection import client_gone_probe
from ..engine import Generation, GenerationRequest
from ..extension import get_engine


def start_generation(generation: GenerationRequest) -> Generation:
    """`Engine.start_generation` for the current request: its id, its socket."""
    return get_engine().start_generation(
        generation,
        request_id=g.request_id,
        client_gone=client_gone_probe(request.environ),
    )


def init_app(app: Flask) -> None:
    """Register every blueprint."""
    from . import health, messages, metrics, models, openai, openapi

    app.register_blueprint(health.bp)
    app.register_blueprint(messages.bp)
    app.register_blueprint(models.bp)
    app.register_blueprint(openai.bp)
    app.register_blueprint(metrics.bp)
    app.register_blueprint(openapi.bp)

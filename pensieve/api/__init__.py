"""HTTP surfaces, one blueprint each."""

from __future__ import annotations

from flask import Flask, current_app

from ..engine import Engine


def get_engine() -> Engine:
    """The app's engine (created by `create_app`)."""
    return current_app.extensions["pensieve"]


def init_app(app: Flask) -> None:
    """Register every blueprint."""
    from . import health, messages, metrics, models, openai

    app.register_blueprint(health.bp)
    app.register_blueprint(messages.bp)
    app.register_blueprint(models.bp)
    app.register_blueprint(openai.bp)
    app.register_blueprint(metrics.bp)

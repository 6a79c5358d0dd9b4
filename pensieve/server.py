"""Glue between gunicorn's hooks and the app."""

from __future__ import annotations

from flask import Flask

from .engine import Engine


def engine_of(app: Flask) -> Engine:
    """The engine of an app built by `create_app`."""
    return app.extensions["pensieve"]

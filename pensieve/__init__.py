"""Pensieve: a local LLM server speaking the Anthropic Messages API."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, g

from . import api, auth, errors, exposure, extension, lifecycle, metrics
from .config import instance_path, load_settings
from .engine import Engine
from .limits import PROVISIONAL_BODY_BYTES


def create_app(
    test_config: Mapping[str, Any] | None = None, engine: Engine | None = None
) -> Flask:
    """Build the app. Creates the engine but loads nothing: see gunicorn.conf.py.

    Tests may pass settings (`test_config`) and an engine of their own.
    """
    app = Flask(
        __name__, instance_path=str(instance_path()), instance_relative_config=True
    )
    app.config.from_mapping(load_settings(test_config))
    if app.config["MAX_REQUEST_BYTES"] == "auto":  # the default, unparsed
        app.config["MAX_REQUEST_BYTES"] = None
    # If None, sized from the model's window once it loads (limits.py).
    app.config["MAX_CONTENT_LENGTH"] = (
        app.config["MAX_REQUEST_BYTES"] or PROVISIONAL_BODY_BYTES
    )
    app.json.sort_keys = False  # keep API objects in their documented order
    extension.init_app(app, engine)

    # Request hooks run in this order; a refusal (529, 401) skips the rest.
    app.before_request(assign_request_id)
    app.after_request(send_request_id)
    exposure.init_app(app)  # a request for another host is refused first
    metrics.init_app(app)
    lifecycle.init_app(app)
    errors.init_app(app)
    auth.init_app(app)
    api.init_app(app)
    return app


def assign_request_id() -> None:
    g.request_id = f"req_{uuid.uuid4().hex[:24]}"


def send_request_id(response: Response) -> Response:
    response.headers["request-id"] = (
        g.get("request_id") or f"req_{uuid.uuid4().hex[:24]}"
    )
    return response

"""API-key check: `x-api-key` or `Authorization: Bearer`, on every API route."""

from __future__ import annotations

import hmac

from flask import Flask, current_app, request

from .errors import AuthenticationFailed

# Endpoints that answer without a key (health checks, the index, metrics).
PUBLIC_ENDPOINTS = {"health.health", "health.index", "metrics.metrics", "static"}


def presented_key() -> str | None:
    if key := request.headers.get("x-api-key"):
        return key
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def check_api_key() -> None:
    if request.endpoint in PUBLIC_ENDPOINTS or request.endpoint is None:
        return  # unknown routes fall through to the 404 handler
    key = presented_key()
    if key is None:
        raise AuthenticationFailed(
            "missing API key: send it in the x-api-key header or as a Bearer token"
        )
    if not hmac.compare_digest(key.encode(), current_app.config["API_KEY"].encode()):
        raise AuthenticationFailed("invalid x-api-key")


def init_app(app: Flask) -> None:
    app.before_request(check_api_key)

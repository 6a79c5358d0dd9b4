"""API-key check: `x-api-key` or `Authorization: Bearer`, on every API route."""

from __future__ import annotations

import hmac
from typing import NamedTuple

from flask import Flask, current_app, request

from .errors import AuthenticationFailed

# Endpoints that answer without a key (health checks, the index, metrics);
# /health shows only its status then.
PUBLIC_ENDPOINTS = {"health.health", "health.index", "metrics.metrics", "static"}


class PresentedKey(NamedTuple):
    """The key a client sent and the words naming where it sent it."""

    key: str
    source: str


def presented_key() -> PresentedKey | None:
    """The client's key, from `x-api-key` first, then `Authorization: Bearer`."""
    if key := request.headers.get("x-api-key"):
        return PresentedKey(key, "x-api-key")
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        return PresentedKey(token.strip(), "API key (Authorization: Bearer token)")
    return None


def key_is_valid() -> bool:
    """Whether the request carries the configured key (constant-time compare)."""
    presented = presented_key()
    expected = current_app.config["API_KEY"].encode()
    return presented is not None and hmac.compare_digest(
        presented.key.encode(), expected
    )


def check_api_key() -> None:
    """Reject API requests without the configured key (401, in the route's envelope)."""
    if request.endpoint in PUBLIC_ENDPOINTS or request.endpoint is None:
        return  # unknown routes fall through to the 404 handler
    presented = presented_key()
    if presented is None:
        raise AuthenticationFailed(
            "missing API key: send it in the x-api-key header or as a Bearer token"
        )
    if not key_is_valid():
        # Name the header the client used, so a wrong Bearer token is not
        # reported as a wrong x-api-key.
        raise AuthenticationFailed(f"invalid {presented.source}")


def init_app(app: Flask) -> None:
    app.before_request(check_api_key)

"""Draining on shutdown: requests in flight finish, new ones get 529.

The app counts the requests it has admitted. On SIGTERM the gunicorn worker
(`pensieve.server.DrainingGeventWorker`) calls `Drain.begin()`, keeps its
socket open so that new requests get a clean 529 `overloaded_error` instead of
a refused connection, and exits once `in_flight` is zero or the grace period
(`GRACEFUL_TIMEOUT`) is over. Health checks and scrapes keep answering.
"""

from __future__ import annotations

from flask import Flask, Response, current_app, g, request

from .errors import Overloaded

# Routes that answer while draining: health checks and metric scrapes.
ALWAYS_OPEN = {"health.health", "health.index", "metrics.metrics", "static"}


class Drain:
    """Whether the server is shutting down, and how many requests it is serving."""

    def __init__(self) -> None:
        self.draining = False
        self.in_flight = 0

    def begin(self) -> None:
        """Stop admitting new work."""
        self.draining = True

    def finished(self) -> None:
        """One admitted request has sent its whole response (or was closed)."""
        self.in_flight -= 1


def drain_of(app: Flask) -> Drain:
    """The drain state of an app built by `create_app`."""
    return app.extensions["pensieve.drain"]


def admit_request() -> None:
    """Count the request in, or refuse it with 529 while draining."""
    drain = drain_of(current_app)
    if drain.draining and request.endpoint not in ALWAYS_OPEN:
        retry = {"retry-after": str(current_app.config["QUEUE_RETRY_AFTER"])}
        raise Overloaded("the server is shutting down; retry in a moment", retry)
    drain.in_flight += 1
    g.admitted = True


def count_request_out(response: Response) -> Response:
    """Count the request out when its response is closed (after a whole stream)."""
    if g.pop("admitted", False):
        response.call_on_close(drain_of(current_app).finished)
    return response


def init_app(app: Flask) -> None:
    app.extensions["pensieve.drain"] = Drain()
    app.before_request(admit_request)
    app.after_request(count_request_out)

"""`GET /metrics`: Prometheus' text format. No key needed, like /health:
scrapers rarely send one, and the figures hold no prompt or answer text."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, request

from ..metrics import metrics_of

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def metrics() -> Response:
    accept = request.headers.get("Accept")
    body, content_type = metrics_of(current_app).exposition(accept)
    return Response(body, headers={"Content-Type": content_type})

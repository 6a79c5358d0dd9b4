"""`GET /metrics`: Prometheus' text format. No key needed, like /health:
scrapers rarely send one, and the figures hold no prompt or answer text."""

from __future__ import annotations

from flask import Blueprint, Response, request

from .. import metrics as server_metrics

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def metrics() -> Response:
    body, content_type = server_metrics.exposition(request.headers.get("Accept"))
    return Response(body, headers={"Content-Type": content_type})

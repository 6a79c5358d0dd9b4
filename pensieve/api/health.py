"""`GET /health` and `/`: what is loaded and whether it can serve. No key
needed for the status; with the key, /health shows the model, memory, queue.

While the server drains on shutdown, the status is `draining` (and 503).
"""

from __future__ import annotations

import os
import resource
import sys
import time
from dataclasses import asdict
from typing import Any

from flask import Blueprint, Response, current_app, jsonify

from ..auth import key_is_valid
from ..engine.memory import mlx_memory
from ..extension import get_engine
from ..lifecycle import drain_of

bp = Blueprint("health", __name__)


def rss_bytes() -> int:
    """Resident memory of this process (peak where the current value is unknown)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


@bp.get("/health")
def health() -> tuple[Response, int]:
    engine = get_engine()
    loaded = engine.loaded_now()
    resolved = engine.resolved
    status = "draining" if drain_of(current_app).draining else engine.status
    code = 200 if status == "ready" else 503
    if not key_is_valid():  # no key: whether it serves, and nothing else
        return jsonify({"status": status}), code
    running = engine.running  # one reading for the list and the batch
    body: dict[str, Any] = {
        "status": status,
        "model": resolved.model_id if resolved else None,
        "model_path": str(resolved.path) if resolved else None,
        "model_source": resolved.source if resolved else None,
        "fallback": resolved.fallback_reason if resolved else None,
        "backend": loaded.backend if loaded else None,
        "context_length": loaded.context_length if loaded else None,
        "load_seconds": round(loaded.load_seconds, 3) if loaded else None,
        "cpu_profile": list(loaded.profile) if loaded else None,
        "memory": {"rss_bytes": rss_bytes(), **(mlx_memory() if loaded else {})},
        "uptime_seconds": round(time.time() - engine.started_at, 1),
        "requests_waiting": engine.waiting,
        "running": [asdict(request) for request in running],
        "batch": {
            "max": engine.max_batch,
            "running": len(running),
            "occupancy": round(len(running) / engine.max_batch, 3),
        },
        "prompt_cache": {
            "entries": len(engine.prompt_cache),
            "bytes": engine.prompt_cache.nbytes,
        },
        "error": engine.error,
    }
    return jsonify(body), code


@bp.route("/", methods=["GET", "HEAD"])
def index() -> Response:
    return jsonify({"name": "pensieve", "status": get_engine().status})

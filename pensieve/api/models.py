"""`GET /v1/models` and `GET /v1/models/{id}` in the Anthropic shape.

Any model id is served by the loaded model, so any id can be retrieved; the
listing shows the local model's id followed by the configured aliases.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from flask import Blueprint, Response, current_app, jsonify

from . import get_engine

bp = Blueprint("models", __name__)


def model_object(model_id: str) -> dict[str, Any]:
    resolved = get_engine().resolve()
    try:
        created = datetime.fromtimestamp(resolved.path.stat().st_mtime, timezone.utc)
    except OSError:
        created = datetime.now(timezone.utc)
    display = resolved.model_id
    if model_id != resolved.model_id:
        display = f"{model_id} (served by {resolved.model_id})"
    return {
        "type": "model",
        "id": model_id,
        "display_name": display,
        "created_at": created.isoformat().replace("+00:00", "Z"),
    }


def model_ids() -> list[str]:
    aliases = [a.strip() for a in current_app.config["MODEL_ALIASES"].split(",")]
    ids = [get_engine().resolve().model_id, *aliases]
    return list(dict.fromkeys(i for i in ids if i))


@bp.get("/v1/models")
def list_models() -> Response:
    data = [model_object(model_id) for model_id in model_ids()]
    return jsonify(
        {
            "data": data,
            "has_more": False,
            "first_id": data[0]["id"],
            "last_id": data[-1]["id"],
        }
    )


@bp.get("/v1/models/<path:model_id>")
def get_model(model_id: str) -> Response:
    return jsonify(model_object(model_id))

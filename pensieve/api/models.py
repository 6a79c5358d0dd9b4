"""`GET /v1/models` and `GET /v1/models/{id}`, in Anthropic's or OpenAI's shape.

Anthropic clients (an `anthropic-version` or `x-api-key` header) get the
Anthropic shape, every other client OpenAI's (see `pensieve.dialect`). Any
model id is served by the loaded model, so any id can be retrieved; the
listing shows the local model's id followed by the configured aliases.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from flask import Blueprint, Response, current_app, jsonify

from ..dialect import speaks_openai
from ..extension import get_engine

bp = Blueprint("models", __name__)
OWNER = "pensieve"


def created_at() -> datetime:
    """When the local model's files were made (now, where that is unknown)."""
    try:
        mtime = get_engine().resolve().path.stat().st_mtime
    except OSError:
        return datetime.now(timezone.utc)
    return datetime.fromtimestamp(mtime, timezone.utc)


def model_object(model_id: str) -> dict[str, Any]:
    """The model in the shape of the API the request speaks."""
    created = created_at()
    if speaks_openai():
        return {
            "id": model_id,
            "object": "model",
            "created": int(created.timestamp()),
            "owned_by": OWNER,
        }
    local_id = get_engine().resolve().model_id
    display = local_id
    if model_id != local_id:
        display = f"{model_id} (served by {local_id})"
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
    if speaks_openai():
        return jsonify({"object": "list", "data": data})
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

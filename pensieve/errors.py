"""The API error hierarchy and the one place that renders errors.

Views raise; the handlers here turn every failure into the Anthropic error
envelope `{"type": "error", "error": {"type": ..., "message": ...}}`. After a
stream has started, `error_event` gives the same object as a final SSE frame.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, jsonify
from marshmallow import ValidationError
from werkzeug.exceptions import HTTPException

from .engine import EngineBusy, EngineUnavailable, PromptTooLong
from .sse import ServerSentEvent

log = logging.getLogger(__name__)


class APIError(Exception):
    """An error with an HTTP status and an Anthropic error type."""

    status = 500
    type = "api_error"

    def __init__(self, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class InvalidRequest(APIError):
    status = 400
    type = "invalid_request_error"


class AuthenticationFailed(APIError):
    status = 401
    type = "authentication_error"


class NotFound(APIError):
    status = 404
    type = "not_found_error"


class RequestTooLarge(APIError):
    status = 413
    type = "request_too_large"


class Overloaded(APIError):
    """529: the model is busy; clients such as Claude Code retry by themselves."""

    status = 529
    type = "overloaded_error"


class ModelUnavailable(APIError):
    status = 503
    type = "api_error"


# Werkzeug's HTTP errors mapped onto Anthropic error types.
HTTP_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "request_too_large",
    429: "rate_limit_error",
}


def validation_message(messages: Any, path: str = "") -> str:
    """Flatten marshmallow's nested error dict into `field.path: problem` text."""
    if isinstance(messages, Mapping):
        parts = [
            validation_message(value, f"{path}.{key}" if path else str(key))
            for key, value in messages.items()
        ]
        return "; ".join(parts)
    if isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        text = " ".join(messages)
        return f"{path}: {text}" if path else text
    if isinstance(messages, list):
        return "; ".join(validation_message(m, path) for m in messages)
    return f"{path}: {messages}" if path else str(messages)


def error_body(error_type: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type, "message": message}}


def as_api_error(error: Exception) -> APIError:
    """Any exception as the APIError a client should see (never a stack trace)."""
    if isinstance(error, APIError):
        return error
    if isinstance(error, ValidationError):
        return InvalidRequest(validation_message(error.messages))
    if isinstance(error, PromptTooLong):
        return InvalidRequest(str(error))
    if isinstance(error, EngineBusy):
        return Overloaded(str(error), {"retry-after": str(error.retry_after)})
    if isinstance(error, EngineUnavailable):
        return ModelUnavailable(f"the model is unavailable: {error}")
    if isinstance(error, HTTPException):
        api_error = APIError(error.description or error.name)
        api_error.status = error.code or 500
        api_error.type = HTTP_ERROR_TYPES.get(api_error.status, "api_error")
        return api_error
    log.exception("unexpected error", exc_info=error)
    return APIError("internal server error")


def error_response(error: Exception) -> tuple[Response, int]:
    api_error = as_api_error(error)
    response = jsonify(error_body(api_error.type, api_error.message))
    response.headers.update(api_error.headers)
    return response, api_error.status


def error_event(error: Exception) -> ServerSentEvent:
    """The final frame of a stream that failed after it started."""
    api_error = as_api_error(error)
    return ServerSentEvent("error", error_body(api_error.type, api_error.message))


def init_app(app: Flask) -> None:
    """Route every error through the one renderer."""
    app.register_error_handler(Exception, error_response)

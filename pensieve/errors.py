"""The API error hierarchy and the one place that renders errors.

Views raise; the handlers here turn every failure into the error envelope of
the API the request speaks (see `pensieve.dialect`): Anthropic's
`{"type": "error", "error": {"type": ..., "message": ...}}` or OpenAI's
`{"error": {"message": ..., "type": ..., "param": ..., "code": ...}}`, with the
same status, except that OpenAI clients get 503 where Anthropic's get 529.
After a stream has started, `error_event` and `openai_error_event` give the
same objects as a final SSE frame.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, jsonify, request
from marshmallow import ValidationError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from .dialect import speaks_openai
from .engine import (
    ClientGone,
    EngineBusy,
    EngineUnavailable,
    PromptTooLong,
    SamplingOutOfRange,
)
from .engine.prompt import TemplateRenderError
from .engine.tools import GrammarError
from .sse import DataEvent, ServerSentEvent

log = logging.getLogger(__name__)


class APIError(Exception):
    """An error with an HTTP status and an Anthropic error type.

    `param` (the offending field) and `code` show in OpenAI's envelope only.
    """

    status = 500
    type = "api_error"

    def __init__(
        self,
        message: str,
        headers: dict[str, str] | None = None,
        *,
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}
        self.param = param
        self.code = code


class InvalidRequest(APIError):
    status = 400
    type = "invalid_request_error"


class AuthenticationFailed(APIError):
    status = 401
    type = "authentication_error"


class PermissionDenied(APIError):
    status = 403
    type = "permission_error"


class NotFound(APIError):
    status = 404
    type = "not_found_error"


class RequestTimedOut(APIError):
    """408: the client did not send its whole request in time."""

    status = 408
    type = "invalid_request_error"


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

# Anthropic error types as OpenAI's: (type, code for errors that set none).
OPENAI_ERROR_TYPES: dict[str, tuple[str, str | None]] = {
    "invalid_request_error": ("invalid_request_error", None),
    "authentication_error": ("invalid_request_error", "invalid_api_key"),
    "permission_error": ("invalid_request_error", None),
    "not_found_error": ("invalid_request_error", None),
    "request_too_large": ("invalid_request_error", "request_too_large"),
    "rate_limit_error": ("requests", "rate_limit_exceeded"),
    "overloaded_error": ("server_error", "overloaded"),
    "api_error": ("server_error", None),
}
# 529 is Anthropic's own status; OpenAI clients know 503 with retry-after.
OPENAI_STATUSES = {529: 503}


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


def first_field(messages: Any, path: str = "") -> str | None:
    """The path of the first field in marshmallow's error dict (OpenAI's `param`)."""
    if isinstance(messages, Mapping) and messages:
        key, value = next(iter(messages.items()))
        if key == "_schema":
            return path or None
        return first_field(value, f"{path}.{key}" if path else str(key))
    return path or None


def error_body(error_type: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type, "message": message}}


def openai_error_body(api_error: APIError) -> dict[str, Any]:
    error_type, code = OPENAI_ERROR_TYPES.get(api_error.type, ("server_error", None))
    return {
        "error": {
            "message": api_error.message,
            "type": error_type,
            "param": api_error.param,
            "code": api_error.code or code,
        }
    }


CLIENT_CLOSED = 499  # nginx's status for a request whose client went away


def as_api_error(error: Exception) -> APIError:
    """Any exception as the APIError a client should see (never a stack trace)."""
    if isinstance(error, APIError):
        return error
    if isinstance(error, ValidationError):
        return InvalidRequest(
            validation_message(error.messages), param=first_field(error.messages)
        )
    if isinstance(error, GrammarError):  # schemas check first; this is a backstop
        return InvalidRequest(f"not supported for constrained decoding: {error}")
    if isinstance(error, TemplateRenderError):
        return InvalidRequest(str(error))
    if isinstance(error, RecursionError):  # a body nested past what we handle
        return InvalidRequest("request is nested too deeply")
    if isinstance(error, SamplingOutOfRange):
        return InvalidRequest(str(error), param=error.param)
    if isinstance(error, PromptTooLong):
        return InvalidRequest(str(error), code="context_length_exceeded")
    if isinstance(error, EngineBusy):
        return Overloaded(str(error), {"retry-after": str(error.retry_after)})
    if isinstance(error, EngineUnavailable):
        return ModelUnavailable(f"the model is unavailable: {error}")
    if isinstance(error, ClientGone):
        api_error = APIError("the client closed the connection")
        api_error.status = CLIENT_CLOSED  # nobody reads it: an access-log mark
        return api_error
    if isinstance(error, RequestEntityTooLarge):
        return RequestTooLarge(
            f"request body exceeds {request.max_content_length} bytes"
        )
    if isinstance(error, HTTPException):
        api_error = APIError(error.description or error.name)
        api_error.status = error.code or 500
        api_error.type = HTTP_ERROR_TYPES.get(api_error.status, "api_error")
        return api_error
    log.exception("unexpected error", exc_info=error)
    return APIError("internal server error")


def error_response(error: Exception) -> tuple[Response, int]:
    """The error in the envelope of the API the request speaks."""
    api_error = as_api_error(error)
    if speaks_openai():
        response = jsonify(openai_error_body(api_error))
        status = OPENAI_STATUSES.get(api_error.status, api_error.status)
    else:
        response = jsonify(error_body(api_error.type, api_error.message))
        status = api_error.status
    response.headers.update(api_error.headers)
    return response, status


def error_event(error: Exception) -> ServerSentEvent:
    """The final frame of a stream that failed after it started."""
    api_error = as_api_error(error)
    return ServerSentEvent("error", error_body(api_error.type, api_error.message))


def openai_error_event(error: Exception) -> DataEvent:
    """The final frame of an OpenAI stream that failed after it started."""
    return DataEvent(openai_error_body(as_api_error(error)))


def init_app(app: Flask) -> None:
    """Route every error through the one renderer."""
    app.register_error_handler(Exception, error_response)

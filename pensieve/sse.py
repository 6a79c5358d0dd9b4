"""Server-sent events: frame value objects and the streaming response.

Anthropic streams name every frame (`event:` then `data:`); OpenAI streams send
bare `data:` frames, end with `data: [DONE]`, and keep alive with comments.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from flask import Response, stream_with_context

log = logging.getLogger(__name__)


class Frame(Protocol):
    """Anything that encodes to SSE text."""

    def encode(self) -> str: ...


@dataclass(frozen=True)
class ServerSentEvent:
    """One SSE frame: `event: <name>` and a JSON `data:` line."""

    event: str
    data: Any

    def encode(self) -> str:
        payload = json.dumps(self.data, ensure_ascii=False, separators=(",", ":"))
        return f"event: {self.event}\ndata: {payload}\n\n"


@dataclass(frozen=True)
class DataEvent:
    """One unnamed SSE frame, OpenAI's kind: a JSON `data:` line only."""

    data: Any

    def encode(self) -> str:
        payload = json.dumps(self.data, ensure_ascii=False, separators=(",", ":"))
        return f"data: {payload}\n\n"


@dataclass(frozen=True)
class Comment:
    """An SSE comment line: clients ignore it; it keeps the connection alive."""

    text: str

    def encode(self) -> str:
        return f": {self.text}\n\n"


@dataclass(frozen=True)
class Done:
    """The `data: [DONE]` sentinel that ends an OpenAI stream."""

    def encode(self) -> str:
        return "data: [DONE]\n\n"


def sse_response(
    frames: Iterable[Frame],
    *,
    on_error: Callable[[Exception], Frame],
) -> Response:
    """Stream `frames`; an exception mid-stream becomes one final error frame.

    Closing the response (the client went away) closes `frames`, so generation
    stops and the model lock is released in the generator's `finally`.
    """

    def body() -> Iterator[str]:
        iterator = iter(frames)
        try:
            for frame in iterator:
                yield frame.encode()
        except Exception as error:
            yield on_error(error).encode()
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    return Response(
        stream_with_context(body()),
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )

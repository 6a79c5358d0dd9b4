"""Server-sent events: a frame value object and the streaming response."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from flask import Response, stream_with_context

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerSentEvent:
    """One SSE frame: `event: <name>` and a JSON `data:` line."""

    event: str
    data: Any

    def encode(self) -> str:
        payload = json.dumps(self.data, ensure_ascii=False, separators=(",", ":"))
        return f"event: {self.event}\ndata: {payload}\n\n"


def sse_response(
    frames: Iterable[ServerSentEvent],
    *,
    on_error: Callable[[Exception], ServerSentEvent],
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

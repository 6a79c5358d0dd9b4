"""Admission to the model: the running batch's slots, and the queue before it.

`MAX_BATCH` requests run at once (one when the model cannot batch); later
ones wait in arrival order, up to `QUEUE_DEPTH` of them and `QUEUE_TIMEOUT`
long, and get EngineBusy (529 with retry-after) beyond that.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass

from .events import KeepAlive
from .generation import ClientGone
from .runner import FairLock
from .settings import EngineSettings

# How often a queued request looks at whether its client is still there.
QUEUE_POLL_SECONDS = 0.5


class EngineBusy(RuntimeError):
    """The queue is full, or a request waited too long for the model."""

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class RunningRequest:
    """What /health shows of a request that holds a slot of the model."""

    request_id: str
    prompt_tokens: int
    started_at: float


class Admission:
    """The slots of the batch (a FairLock), the queue, and who is running."""

    def __init__(self, settings: EngineSettings) -> None:
        self.settings = settings
        self.lock = FairLock()
        self.running: list[RunningRequest] = []  # in the order they got a slot

    @property
    def waiting(self) -> int:
        return self.lock.waiting

    def check(self) -> None:
        """Refuse a new request while the queue is full (the client may retry)."""
        if self.waiting >= self.settings.queue_depth:
            raise EngineBusy(
                f"the model is busy: {self.waiting} requests are waiting",
                retry_after=self.settings.queue_retry_after,
            )

    def wait(
        self, ticket: threading.Event, client_gone: Callable[[], bool]
    ) -> Generator[KeepAlive, None, float]:
        """Keep-alives until `ticket` is granted; ClientGone or EngineBusy
        instead. Returns the seconds waited.

        The client is looked at every half second, so one that left gives up
        its place at once, not at the next keep-alive.
        """
        settings = self.settings
        started = pinged = time.monotonic()
        while not ticket.wait(
            timeout=min(QUEUE_POLL_SECONDS, settings.keepalive_seconds)
        ):
            if client_gone():
                raise ClientGone
            now = time.monotonic()
            if now - started > settings.queue_timeout:
                raise EngineBusy(
                    "timed out waiting for the model",
                    retry_after=settings.queue_retry_after,
                )
            if now - pinged >= settings.keepalive_seconds:
                pinged = now
                yield KeepAlive()
        return time.monotonic() - started

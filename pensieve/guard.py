"""Limits on slow and idle clients, for the gunicorn worker (`server.py`).

Every connection's socket is wrapped in a `GuardedSocket`, which knows
whether the server is waiting on the client (a read pending) or working for
it. Two rules follow:

- A request must arrive whole, head and body, within `READ_TIMEOUT` of its
  first byte. A client trickling bytes is cut off: its read sees end of file,
  as if it had closed, and the request ends as a disconnected one would.
- Near the connection cap, the connections the server waits on longest are
  closed, those that never sent a whole request first. Connections the
  server is working for (a request running, a stream being written) are
  never closed this way, so a flood of idle or slow sockets cannot lock a
  real client out.
"""

from __future__ import annotations

import os
import resource
import socket
import time
from collections.abc import Iterable, Mapping
from contextlib import suppress
from typing import Any

import gevent

# Descriptors kept for what is not a client connection (logs, the model's
# files, the listener, gunicorn's pipes).
RESERVED_DESCRIPTORS = 64
# How long a cut-off client's late bytes are read before its connection closes.
LINGER_SECONDS = 2.0


class GuardedSocket:
    """A client socket that times a request's arrival and says whether the
    server is waiting on its client. Everything else is the socket's own."""

    def __init__(self, sock: socket.socket, read_timeout: float) -> None:
        self._sock = sock
        self.read_timeout = read_timeout
        self.deadline: float | None = None  # set from a request's first byte
        self.reading = False  # a read is pending: the server waits on the client
        self.waiting_since = time.monotonic()
        self.requests = 0  # requests read whole on this connection
        self.timed_out = False
        self.shed = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)

    def recv(self, size: int, *args: Any) -> bytes:
        """The socket's `recv`, ending in end of file past the read deadline
        (and ever after: the rest of a late request is not read)."""
        if self.timed_out:
            return b""
        if self.deadline is not None:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                return self._time_out()
        self.reading = True
        self.waiting_since = time.monotonic()
        try:
            if self.deadline is None:  # idle: gunicorn's keep-alive timeout rules
                data = self._sock.recv(size, *args)
                if data and self.read_timeout > 0:
                    self.deadline = time.monotonic() + self.read_timeout
                return data
            with gevent.Timeout(remaining, False):
                return self._sock.recv(size, *args)
            return self._time_out()
        finally:
            self.reading = False

    def _time_out(self) -> bytes:
        self.timed_out = True
        return b""

    def request_started(self) -> None:
        """The request's head is read: the server now works for the client."""
        self.requests += 1

    def request_done(self) -> None:
        """The answer is written: the next request gets a fresh deadline.

        After a timed-out request, the client's late bytes are read and
        dropped for a moment before the close: closing on unread data resets
        the connection, which may destroy the answer before it is read.
        """
        self.deadline = None
        self.waiting_since = time.monotonic()
        if self.timed_out:
            with suppress(OSError), gevent.Timeout(LINGER_SECONDS, False):
                self._sock.shutdown(socket.SHUT_WR)
                while self._sock.recv(65536):
                    pass

    def end_reads(self) -> None:
        """Make a pending read see end of file (see `end_reads`)."""
        self.shed = True
        end_reads(self._sock)


def read_timed_out(environ: Mapping[str, Any]) -> bool:
    """Whether the request's body stopped short at the read timeout."""
    sock = environ.get("gunicorn.socket")
    return bool(getattr(sock, "timed_out", False))


def end_reads(client: socket.socket) -> None:
    """Make a connection's pending read see end of file.

    The shutdown goes through a duplicate descriptor: gevent's own `shutdown`
    wakes the reader with EBADF, which gunicorn logs as an error. A response
    still being written completes (only reads are shut).
    """
    with suppress(OSError), socket.socket(fileno=os.dup(client.fileno())) as twin:
        twin.shutdown(socket.SHUT_RD)


def to_shed(connections: Iterable[GuardedSocket], cap: int) -> list[GuardedSocket]:
    """The connections to close so that a new one fits well under `cap`.

    Nothing while under 90% of it; past that, enough of those waiting on
    their client to get back to 80%: first those that never sent a whole
    request, then the longest waiting.
    """
    open_now = [c for c in connections if not c.shed]
    if len(open_now) < cap * 0.9:
        return []
    waiting = sorted(
        (c for c in open_now if c.reading),
        key=lambda c: (c.requests > 0, c.waiting_since),
    )
    return waiting[: len(open_now) - int(cap * 0.8)]


def connection_cap(wanted: int) -> int:
    """`wanted`, or what the file limit allows, raising the soft limit to the
    hard one where that is needed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = wanted + RESERVED_DESCRIPTORS
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        with suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(min(wanted, soft - RESERVED_DESCRIPTORS), 8)

"""Noticing a client that went away while its request waits or generates.

A stream learns of a closed connection only when a write fails, a token or
two after the fact, and a non-streaming request never does. A peer that
closed its side makes the socket readable with no data; peeking at it costs
one system call, cheap enough to ask after every token. (A client that only
half-closed, to send no more but still read, would count as gone: HTTP
clients do not do that.)
"""

from __future__ import annotations

import _socket  # the C socket type, never patched by gevent
import socket
from collections.abc import Callable, Mapping
from typing import Any


def client_gone_probe(environ: Mapping[str, Any]) -> Callable[[], bool]:
    """A check of whether the request's client closed its connection.

    Needs the socket gunicorn puts in the WSGI environ (`gunicorn.socket` from
    its own workers, `gunicorn.sock` from the pywsgi one); elsewhere (Flask's
    test client) the check always says no.
    """
    sock = environ.get("gunicorn.socket") or environ.get("gunicorn.sock")
    if sock is None:
        return lambda: False
    fd = sock.fileno()

    def gone() -> bool:
        try:
            probe = _socket.socket(fileno=fd)
        except OSError:
            return True  # the descriptor is already closed
        try:
            return probe.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except (BlockingIOError, InterruptedError):
            return False  # open, nothing to read
        except OSError:
            return True  # reset by the peer
        finally:
            probe.detach()  # the descriptor stays gunicorn's

    return gone

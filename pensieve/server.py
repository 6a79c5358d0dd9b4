"""The gunicorn worker class.

`DrainingGeventWorker` is gunicorn's gevent worker with a gentler SIGTERM.
gunicorn's own closes the listening socket at once, so requests arriving
during shutdown would be refused; this one keeps serving them a 529 (see
`pensieve.lifecycle`) while the requests in flight finish, for up to
`graceful_timeout` seconds, then closes the idle keep-alive connections and
lets gunicorn's shutdown run. It also guards against slow and idle clients
(`pensieve.guard`): a request must arrive within the read timeout, and near
the connection cap the connections waiting on their client are closed.
"""

from __future__ import annotations

import time
from typing import Any

import gevent
from gunicorn.workers.ggevent import GeventWorker

from .extension import engine_of
from .guard import GuardedSocket, to_shed
from .lifecycle import Drain, drain_of

# gunicorn's master kills the worker `graceful_timeout` seconds after SIGTERM;
# the drain ends this much earlier so the worker's own shutdown fits in.
SHUTDOWN_MARGIN_SECONDS = 1.0


class DrainingGeventWorker(GeventWorker):
    """The gevent worker, draining on SIGTERM instead of refusing connections."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.connections: set[GuardedSocket] = set()

    def handle(self, listener: Any, client: Any, addr: Any) -> None:
        """Serve one connection through a guarded socket, first closing the
        connections that wait on their client if the cap is near."""
        for waiting in to_shed(self.connections, self.worker_connections):
            waiting.end_reads()
        guarded = GuardedSocket(client, self.wsgi.config["READ_TIMEOUT"])
        self.connections.add(guarded)
        try:
            super().handle(listener, guarded, addr)
        finally:
            self.connections.discard(guarded)

    def handle_request(
        self, listener_name: Any, req: Any, sock: GuardedSocket, addr: Any
    ) -> Any:
        """One request; while draining, its connection closes after the answer."""
        if drain_of(self.wsgi).draining:
            req.must_close = True  # answer with `Connection: close`
        sock.request_started()
        try:
            return super().handle_request(listener_name, req, sock, addr)
        finally:
            sock.request_done()

    def handle_exit(self, sig: int, frame: Any) -> None:
        """SIGTERM: refuse new work, let the work in flight finish, then exit."""
        if getattr(self, "wsgi", None) is None:  # not booted yet: nothing to drain
            self.alive = False
            return
        drain = drain_of(self.wsgi)
        if not drain.draining:
            drain.begin()
            gevent.spawn(self.finish_drain, drain)

    def finish_drain(self, drain: Drain) -> None:
        """Wait for the requests in flight, then let gunicorn's shutdown run."""
        grace = max(self.cfg.graceful_timeout - SHUTDOWN_MARGIN_SECONDS, 0.0)
        deadline = time.monotonic() + grace
        self.log.info("draining: %d requests in flight", drain.in_flight)
        while drain.in_flight > 0 and time.monotonic() < deadline:
            self.notify()
            gevent.sleep(0.1)
        if drain.in_flight > 0:
            self.log.warning(
                "grace period over with %d requests in flight", drain.in_flight
            )
        else:
            self.log.info("drained: no request in flight")
            engine_of(self.wsgi).persist_prompt_cache()
            for client in list(self.connections):
                client.end_reads()
        self.alive = False

"""The one native OS thread that runs every mlx call.

Under gunicorn's gevent worker, `threading` is monkey-patched and a plain
ThreadPoolExecutor would run its work in a greenlet, blocking the hub for the
length of a prefill. gevent's own executor always uses a native thread and its
futures are waited on cooperatively, so the hub keeps serving meanwhile.
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def gevent_is_active() -> bool:
    """True inside a gevent-patched process (the gunicorn worker)."""
    try:
        from gevent import monkey
    except ImportError:
        return False
    return bool(monkey.is_module_patched("threading"))


class FairLock:
    """Admission to the model: `slots` holders at once (the running batch),
    granted in arrival order, with a visible queue.

    A leaving holder hands its slot to the longest waiter directly, so a
    waiter that wakes up to send a keep-alive never loses its place. Built on
    `threading` primitives, which gevent patches in the gunicorn worker: create
    it after the patch (the engine does, in `start`).
    """

    def __init__(self, slots: int = 1) -> None:
        self.slots = slots
        self._mutex = threading.Lock()
        self._queue: deque[threading.Event] = deque()
        self._held = 0

    @property
    def waiting(self) -> int:
        return len(self._queue)

    @property
    def held(self) -> int:
        return self._held

    def enter(self) -> threading.Event:
        """Join the queue; the returned ticket is set once a slot is granted."""
        ticket = threading.Event()
        with self._mutex:
            if self._held < self.slots and not self._queue:
                self._held += 1
                ticket.set()
            else:
                self._queue.append(ticket)
        return ticket

    def leave(self, ticket: threading.Event) -> None:
        """Give up a ticket: free its slot if granted, else leave the queue."""
        with self._mutex:
            if ticket in self._queue:
                self._queue.remove(ticket)
                return
            if self._queue:
                self._queue.popleft().set()  # hand over directly: no barging
            else:
                self._held -= 1


class InferenceThread:
    """A single native worker thread; work submitted to it runs in order."""

    def __init__(self) -> None:
        executor: concurrent.futures.Executor
        if gevent_is_active():
            from gevent.threadpool import ThreadPoolExecutor

            executor = ThreadPoolExecutor(max_workers=1)
        else:
            executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="pensieve-inference"
            )
        self._executor = executor

    def submit(self, fn: Callable[..., T], *args: Any) -> concurrent.futures.Future[T]:
        """Queue `fn(*args)` on the inference thread."""
        return self._executor.submit(fn, *args)

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(*args)` on the inference thread and wait for its result."""
        return self.submit(fn, *args).result()

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False)


def off_loop(fn: Callable[..., T], *args: Any) -> T:
    """Run CPU-heavy `fn(*args)` (parsing, validating, rendering, tokenising a
    large request) on a native thread, waiting for it cooperatively.

    Under gevent the calling greenlet waits while the hub serves every other
    connection; the thread holds the GIL only in slices, so /health and the
    streams go on answering. Elsewhere it is a plain call. Never for mlx:
    that belongs to the inference thread.
    """
    if not gevent_is_active():
        return fn(*args)
    import gevent

    def outcome() -> tuple[bool, Any]:
        # Returned, not raised: gevent would log a raised error as a crash,
        # and most are a request's own 400s.
        try:
            return True, fn(*args)
        except BaseException as error:  # re-raised in the caller below
            return False, error

    done, value = gevent.get_hub().threadpool.apply(outcome)
    if not done:
        raise value
    return value

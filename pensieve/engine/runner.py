"""The one native OS thread that runs every mlx call.

Under gunicorn's gevent worker, `threading` is monkey-patched and a plain
ThreadPoolExecutor would run its work in a greenlet, blocking the hub for the
length of a prefill. `HubExecutor` runs its work on a native thread, in the
order it was submitted, and hands each result back through the hub, so a
greenlet waits for it cooperatively while the hub keeps serving. (gevent's
own ThreadPoolExecutor lets only as many submitters in as it has threads:
with one thread, the requests of a batch queue for it on a semaphore that
lets a quick resubmitter barge ahead, and one of them can starve.)
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


class HubFuture(concurrent.futures.Future[T]):
    """A result of the native thread, awaited in the hub (cooperatively) or,
    from another native thread, on a native lock."""

    def __init__(self, hub: Any) -> None:
        super().__init__()
        from gevent import monkey
        from gevent.event import AsyncResult

        self._hub = hub
        self._ident = monkey.get_original("_thread", "get_ident")
        self._outcome = AsyncResult()
        self._settled = monkey.get_original("_thread", "allocate_lock")()
        self._settled.acquire()  # released once the work is done
        self._value: Any = None
        self._ok = False

    def settle(self, ok: bool, value: Any) -> None:
        """On the native thread: keep the outcome, then wake the hub's waiters."""
        self._ok, self._value = ok, value
        self._settled.release()
        self._hub.loop.run_callback_threadsafe(self._publish)

    def _publish(self) -> None:
        if self._ok:
            self._outcome.set(self._value)
        else:
            self._outcome.set_exception(self._value)

    def done(self) -> bool:
        return not self._settled.locked()

    def result(self, timeout: float | None = None) -> T:
        if self._ident() == self._hub.thread_ident:
            import gevent

            try:
                return self._outcome.get(timeout=timeout)  # type: ignore[no-any-return]
            except gevent.Timeout:
                raise TimeoutError from None
        if not self._settled.acquire(timeout=-1 if timeout is None else timeout):
            raise TimeoutError
        self._settled.release()
        if not self._ok:
            raise self._value
        return self._value  # type: ignore[no-any-return]

    def exception(self, timeout: float | None = None) -> BaseException | None:
        try:
            self.result(timeout)
        except TimeoutError:
            raise
        except BaseException as error:
            return error
        return None

    def add_done_callback(self, fn: Callable[[Any], object]) -> None:
        """`fn(self)` once done, in the hub."""
        self._outcome.rawlink(lambda _: fn(self))


class HubExecutor(concurrent.futures.Executor):
    """One native thread running submitted work in order (see the module)."""

    def __init__(self) -> None:
        import gevent
        from gevent import monkey

        self._hub = gevent.get_hub()
        self._queue: Any = monkey.get_original("queue", "SimpleQueue")()
        start = monkey.get_original("_thread", "start_new_thread")
        start(self._work, ())

    def submit(  # type: ignore[override]
        self, fn: Callable[..., T], /, *args: Any
    ) -> concurrent.futures.Future[T]:
        future: HubFuture[T] = HubFuture(self._hub)
        self._queue.put((fn, args, future))
        return future

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            fn, args, future = item
            try:
                outcome = True, fn(*args)
            except BaseException as error:  # handed to the waiter
                outcome = False, error
            future.settle(*outcome)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._queue.put(None)


class InferenceThread:
    """A single native worker thread; work submitted to it runs in order."""

    def __init__(self) -> None:
        executor: concurrent.futures.Executor
        if gevent_is_active():
            executor = HubExecutor()
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

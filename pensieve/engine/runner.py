"""The one native OS thread that runs every mlx call.

Under gunicorn's gevent worker, `threading` is monkey-patched and a plain
ThreadPoolExecutor would run its work in a greenlet, blocking the hub for the
length of a prefill. gevent's own executor always uses a native thread and its
futures are waited on cooperatively, so the hub keeps serving meanwhile.
"""

from __future__ import annotations

import concurrent.futures
import threading
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


def new_lock() -> Any:
    """A lock that waits cooperatively under gevent and natively otherwise."""
    if gevent_is_active():
        from gevent.lock import Semaphore

        return Semaphore(1)
    return threading.Lock()


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

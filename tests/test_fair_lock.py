"""The model lock: FIFO grants, a visible queue, direct hand-over; the queue wait."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from pensieve.engine.admission import Admission
from pensieve.engine.engine import Engine
from pensieve.engine.generation import ClientGone
from pensieve.engine.runner import FairLock
from pensieve.engine.settings import EngineSettings

WAIT = 5.0  # seconds; no test waits this long unless it is failing


def test_first_enter_is_granted_at_once() -> None:
    lock = FairLock()
    ticket = lock.enter()
    assert ticket.is_set() and lock.waiting == 0


def test_later_tickets_wait_and_are_granted_in_order() -> None:
    lock = FairLock()
    first, second, third = lock.enter(), lock.enter(), lock.enter()
    assert not second.is_set() and not third.is_set()
    assert lock.waiting == 2
    lock.leave(first)
    assert second.is_set() and not third.is_set() and lock.waiting == 1
    lock.leave(second)
    assert third.is_set() and lock.waiting == 0


def test_release_hands_over_directly_without_barging() -> None:
    lock = FairLock()
    holder, waiter = lock.enter(), lock.enter()
    lock.leave(holder)
    latecomer = lock.enter()  # arrives before the waiter even woke up
    assert waiter.is_set() and not latecomer.is_set()
    assert lock.waiting == 1


def test_a_waiter_that_leaves_the_queue_never_gets_the_lock() -> None:
    lock = FairLock()
    holder, quitter, patient = lock.enter(), lock.enter(), lock.enter()
    lock.leave(quitter)
    assert lock.waiting == 1 and not quitter.is_set()
    lock.leave(holder)
    assert patient.is_set() and not quitter.is_set()
    lock.leave(patient)
    assert lock.enter().is_set()  # the quitter held nothing: the lock is free


def test_leaving_with_an_empty_queue_frees_the_lock() -> None:
    lock = FairLock()
    lock.leave(lock.enter())
    again = lock.enter()
    assert again.is_set() and lock.waiting == 0


def test_a_blocked_thread_wakes_when_granted() -> None:
    lock = FairLock()
    holder = lock.enter()
    ticket = lock.enter()
    granted = threading.Event()

    def wait_for_turn() -> None:
        if ticket.wait(timeout=WAIT):
            granted.set()

    thread = threading.Thread(target=wait_for_turn)
    thread.start()
    assert not granted.wait(timeout=0.05)  # still held
    lock.leave(holder)
    thread.join(timeout=WAIT)
    assert granted.is_set()


def test_threads_are_granted_in_arrival_order() -> None:
    lock = FairLock()
    holder = lock.enter()
    tickets = [lock.enter() for _ in range(6)]
    order: list[int] = []
    failures: list[int] = []

    def work(number: int, ticket: threading.Event) -> None:
        if not ticket.wait(timeout=WAIT):
            failures.append(number)
            return
        order.append(number)
        lock.leave(ticket)

    # Start them in reverse so thread start order cannot explain the result.
    threads = [
        threading.Thread(target=work, args=(number, ticket))
        for number, ticket in reversed(list(enumerate(tickets)))
    ]
    for thread in threads:
        thread.start()
    assert lock.waiting == 6
    lock.leave(holder)
    for thread in threads:
        thread.join(timeout=WAIT)
    assert failures == [] and order == list(range(6))
    assert lock.waiting == 0 and lock.enter().is_set()


def test_only_one_holder_at_a_time_under_contention() -> None:
    lock = FairLock()
    inside = 0
    most = 0
    errors: list[str] = []
    guard = threading.Lock()

    def work() -> None:
        nonlocal inside, most
        for _ in range(50):
            ticket = lock.enter()
            if not ticket.wait(timeout=WAIT):
                errors.append("timed out")
                lock.leave(ticket)
                return
            with guard:
                inside += 1
                most = max(most, inside)
            time.sleep(0.0002)  # let another thread run, were it let in
            with guard:
                inside -= 1
            lock.leave(ticket)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=WAIT * 4)
    assert errors == [] and most == 1
    assert not any(thread.is_alive() for thread in threads)
    assert lock.waiting == 0 and lock.enter().is_set()


def test_a_queued_client_that_leaves_is_noticed_before_the_keepalive() -> None:
    # The engine's queue wait, with the default 5 s keep-alive: a client
    # that closed its connection gives up its place within a second.
    engine = Engine(EngineSettings(model="bundled", cache_dir=Path("/nonexistent")))
    left_at = time.monotonic() + 0.2
    admission = Admission(engine.settings)
    waiting = admission.wait(threading.Event(), lambda: time.monotonic() > left_at)
    started = time.monotonic()
    try:
        next(waiting)
    except ClientGone:
        pass
    else:
        raise AssertionError("a keep-alive came before the client was noticed")
    assert time.monotonic() - started < 1.0


def test_a_lock_of_several_slots_grants_that_many_then_queues_in_order() -> None:
    lock = FairLock(slots=2)
    first, second, third, fourth = (lock.enter() for _ in range(4))
    assert first.is_set() and second.is_set()
    assert not third.is_set() and not fourth.is_set() and lock.waiting == 2
    assert lock.held == 2
    lock.leave(second)  # a slot frees: the longest waiter gets it
    assert third.is_set() and not fourth.is_set() and lock.held == 2
    lock.leave(fourth)  # a waiter gives up
    lock.leave(first)
    lock.leave(third)
    assert lock.held == 0 and lock.waiting == 0

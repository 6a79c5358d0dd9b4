"""The guard against slow and idle clients, on gevent socket pairs."""

from __future__ import annotations

import resource
import time

import pytest
from gevent import socket as gsocket

from pensieve.guard import GuardedSocket, connection_cap, read_timed_out, to_shed


@pytest.fixture
def pair() -> tuple[gsocket.socket, gsocket.socket]:
    server, client = gsocket.socketpair()
    yield server, client
    server.close()
    client.close()


def test_an_idle_read_waits_without_a_deadline(pair) -> None:
    server, client = pair
    guarded = GuardedSocket(server, read_timeout=0.2)
    client.sendall(b"POST")
    assert guarded.recv(100) == b"POST"
    assert guarded.deadline is not None  # the first byte starts the clock


def test_a_request_not_whole_by_the_deadline_reads_as_end_of_file(pair) -> None:
    server, client = pair
    guarded = GuardedSocket(server, read_timeout=0.2)
    client.sendall(b"P")
    guarded.recv(100)
    started = time.monotonic()
    assert guarded.recv(100) == b""  # nothing more came within 0.2 s
    assert 0.1 < time.monotonic() - started < 1.0
    assert guarded.timed_out
    client.sendall(b"OST / HTTP/1.1")
    assert guarded.recv(100) == b""  # the rest of a late request is not read
    assert read_timed_out({"gunicorn.socket": guarded})
    assert not read_timed_out({})


def test_each_request_gets_a_fresh_deadline(pair) -> None:
    server, client = pair
    guarded = GuardedSocket(server, read_timeout=0.3)
    client.sendall(b"first")
    guarded.recv(100)
    guarded.request_started()
    guarded.request_done()
    assert guarded.deadline is None and guarded.requests == 1
    time.sleep(0.4)  # idle between requests: no deadline runs
    client.sendall(b"second")
    assert guarded.recv(100) == b"second"


def test_no_read_timeout_means_no_deadline(pair) -> None:
    server, client = pair
    guarded = GuardedSocket(server, read_timeout=0)
    client.sendall(b"P")
    guarded.recv(100)
    assert guarded.deadline is None


def connection(reading: bool, requests: int, since: float) -> GuardedSocket:
    guarded = GuardedSocket(None, read_timeout=1)  # type: ignore[arg-type]
    guarded.reading, guarded.requests, guarded.waiting_since = reading, requests, since
    return guarded


def test_nothing_is_shed_under_nine_tenths_of_the_cap() -> None:
    assert to_shed([connection(True, 0, 0.0)] * 89, cap=100) == []


def test_the_waiting_are_shed_never_served_first_then_longest_waiting() -> None:
    served_old = connection(True, 3, 1.0)
    fresh_new = connection(True, 0, 5.0)
    fresh_old = connection(True, 0, 2.0)
    working = [connection(False, 1, 0.0) for _ in range(87)]
    shed = to_shed([served_old, fresh_new, fresh_old, *working], cap=100)
    # 90 open, back to 80: ten would go, but only the three waiting may.
    assert shed == [fresh_old, fresh_new, served_old]


def test_connections_already_shed_do_not_count() -> None:
    gone = [connection(True, 0, 0.0) for _ in range(50)]
    for each in gone:
        each.shed = True
    assert to_shed([*gone, *(connection(True, 0, 1.0) for _ in range(50))], 100) == []


def test_the_cap_fits_the_file_limit() -> None:
    assert connection_cap(100) == 100
    cap = connection_cap(10**7)
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    assert cap <= max(soft - 64, 8)

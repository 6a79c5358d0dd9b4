"""Noticing a client that closed its connection, on real sockets."""

from __future__ import annotations

import socket

from pensieve.connection import client_gone_probe


def test_no_socket_in_the_environ_means_never_gone() -> None:
    assert client_gone_probe({})() is False


def test_a_closed_peer_is_gone_an_open_one_is_not() -> None:
    server_side, client_side = socket.socketpair()
    with server_side:
        gone = client_gone_probe({"gunicorn.socket": server_side})
        assert gone() is False
        client_side.sendall(b"next request")  # pipelined bytes: still there
        assert gone() is False
        assert server_side.recv(100) == b"next request"  # the probe only peeked
        client_side.close()
        assert gone() is True
        assert server_side.fileno() != -1  # the probe left the socket open


def test_the_pywsgi_workers_key_works_too() -> None:
    server_side, client_side = socket.socketpair()
    with server_side:
        gone = client_gone_probe({"gunicorn.sock": server_side})
        client_side.close()
        assert gone() is True

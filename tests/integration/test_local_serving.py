"""The local servers' listening socket."""

from __future__ import annotations

import socket

import pytest

from talkturo.local.serving import listening_socket

pytestmark = pytest.mark.integration


def test_the_listening_socket_says_it_is_tcp_so_asyncio_turns_nagle_off() -> None:
    # asyncio sets TCP_NODELAY only on connections of a socket whose proto is IPPROTO_TCP;
    # without it every answer on a kept-alive connection waited for a delayed ACK.
    sock = listening_socket("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP
    finally:
        sock.close()

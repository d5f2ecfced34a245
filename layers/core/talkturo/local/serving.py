"""Serving an ASGI app with uvicorn from a thread of the local platform's process."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound to host:port (0: any free port). Raises OSError when it cannot be."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named: asyncio turns Nagle's algorithm off (TCP_NODELAY) only on connections
    # of a socket that says it is TCP; otherwise each answer on a kept-alive connection waited
    # for the client's delayed ACK (40 ms or more a request).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def http_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def wait_until_started(server: Any, thread: threading.Thread, seconds: float) -> bool:
    """Whether the uvicorn server came up before its thread died or `seconds` passed."""
    deadline = time.monotonic() + seconds
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True

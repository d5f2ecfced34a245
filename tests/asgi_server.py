"""Serve an ASGI app on a free loopback port for the length of a test (fake platforms,
callback receivers, the API and webhooks), the way the local platform serves its own."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import uvicorn

from talkturo.local.serving import http_url, listening_socket, wait_until_started


@contextlib.contextmanager
def served(app: Any) -> Iterator[str]:
    """Yields the app's base URL (http://127.0.0.1:<port>); stops the server afterwards."""
    sock = listening_socket("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_level="error"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        assert wait_until_started(server, thread, seconds=10), "the test server did not start"
        yield http_url("127.0.0.1", sock.getsockname()[1])
    finally:
        server.should_exit = True
        thread.join(timeout=5)

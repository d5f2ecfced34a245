"""An in-process AWS emulator (moto's server) on a loopback port.

Requests are applied one at a time: DynamoDB applies each write and each transaction atomically,
and moto's in-memory backends only match that when nothing interleaves inside them.

SQS long polls (ReceiveMessage with WaitTimeSeconds > 0) are the exception: moto waits for
messages inside the request, which under that one lock would stall every other call for the
whole wait (and a message sent meanwhile could never arrive). So the emulator turns a long poll
into short polls, each applied under the lock, and waits between them without holding it, woken
by any other request. To the client it is the same long poll.
"""

from __future__ import annotations

import copy
import io
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl, urlencode

from moto.dynamodb import models as dynamodb_models
from moto.dynamodb import responses as dynamodb_responses
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType
from moto.dynamodb.models.table import Table
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import BaseWSGIServer, make_server

from talkturo.local import emulator_dynamodb

# Credentials the emulator accepts; never real ones.
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class _TablesNotCopied:
    """Stands in for the `copy` module inside moto's DynamoDB backend.

    moto makes its transactions atomic by deep-copying every table a transaction touches and
    putting the copy back on failure, so each transaction costs time in proportion to the whole
    table (a 450-row import took minutes). Here tables are passed through uncopied, and
    `_transact_with_item_rollback` restores just the items the transaction names instead.
    """

    def deepcopy(self, value: Any, memo: Any = None) -> Any:
        if isinstance(value, Table):
            return value
        return copy.deepcopy(value, memo)

    def __getattr__(self, name: str) -> Any:
        return getattr(copy, name)


def _transact_with_item_rollback(original: Callable[..., Any]) -> Callable[..., Any]:
    def transact_write_items(backend: Any, transact_items: list[dict[str, Any]]) -> Any:
        saved = []
        for entry in transact_items:
            operation: dict[str, Any] = next(iter(entry.values()), {})
            table = backend.tables.get(operation.get("TableName"))
            key = operation.get("Key") or operation.get("Item")
            if table is None or not key or table.hash_key_attr not in key:
                continue
            hash_value = DynamoType(key[table.hash_key_attr])
            range_value = None
            if table.range_key_attr is not None:
                if table.range_key_attr not in key:
                    continue
                range_value = DynamoType(key[table.range_key_attr])
            before = table.get_item(hash_value, range_value)
            saved.append((table, hash_value, range_value, copy.deepcopy(before)))
        try:
            return original(backend, transact_items)
        except Exception:
            # Put back what the transaction had changed before it failed, last change first.
            for table, hash_value, range_value, before in reversed(saved):
                table.delete_item(hash_value, range_value)
                if before is not None:
                    table.put_item(before.to_json()["Attributes"], overwrite=True)
            raise

    return transact_write_items


def _make_transactions_cheap() -> None:
    if getattr(DynamoDBBackend.transact_write_items, "_item_rollback", False):
        return
    dynamodb_models.copy = _TablesNotCopied()  # type: ignore[assignment]
    patched = _transact_with_item_rollback(DynamoDBBackend.transact_write_items)
    patched._item_rollback = True  # type: ignore[attr-defined]
    DynamoDBBackend.transact_write_items = patched  # type: ignore[method-assign]


class _Serialised:
    # How long a waiting long poll sleeps at most before it looks again (messages also become
    # visible again on their own, when a visibility timeout ends).
    RECHECK_SECONDS = 0.1

    def __init__(self, app: WsgiApp) -> None:
        self._app = app
        # Every request runs holding it; a waiting long poll is woken whenever one completes.
        self._changed = threading.Condition(threading.Lock())

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        long_poll = _sqs_long_poll(environ)
        if long_poll is not None:
            return self._long_poll(environ, start_response, *long_poll)
        with self._changed:
            # The body is produced inside the lock too: moto builds it while iterating.
            body = list(self._app(environ, start_response))
            self._changed.notify_all()
        return body

    def _long_poll(
        self,
        environ: dict[str, Any],
        start_response: Callable[..., Any],
        wait_seconds: float,
        short_poll: bytes,
    ) -> Any:
        deadline = time.monotonic() + wait_seconds
        answer: list[Any] = []

        def capture(status: str, headers: Any, exc_info: Any = None) -> Any:
            answer[:] = [status, headers, exc_info]
            return lambda _data: None

        with self._changed:
            while True:
                attempt = {
                    **environ,
                    "wsgi.input": io.BytesIO(short_poll),
                    "CONTENT_LENGTH": str(len(short_poll)),
                }
                body = list(self._app(attempt, capture))
                remaining = deadline - time.monotonic()
                if (
                    remaining <= 0
                    or not str(answer[0]).startswith("200")
                    or _has_messages(b"".join(body))
                ):
                    start_response(*answer)
                    return body
                # Releases the lock while waiting: other requests (a SendMessage…) go on.
                self._changed.wait(timeout=min(remaining, self.RECHECK_SECONDS))


def _sqs_long_poll(environ: dict[str, Any]) -> tuple[float, bytes] | None:
    """(wait, the same request as a short poll) when `environ` is an SQS long poll."""
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    content_type = environ.get("CONTENT_TYPE", "")
    is_json = target == "AmazonSQS.ReceiveMessage"
    is_query = not target and content_type.startswith("application/x-www-form-urlencoded")
    if not (is_json or is_query):
        return None
    length = int(environ.get("CONTENT_LENGTH") or 0)
    raw: bytes = environ["wsgi.input"].read(length) if length else b""
    # The body is consumed: whatever happens next reads this copy.
    environ["wsgi.input"] = io.BytesIO(raw)
    try:
        if is_json:
            request = json.loads(raw or b"{}")
            wait = float(request.get("WaitTimeSeconds") or 0)
            short = json.dumps({**request, "WaitTimeSeconds": 0}).encode()
        else:
            fields = parse_qsl(raw.decode(), keep_blank_values=True)
            values = dict(fields)
            if values.get("Action") != "ReceiveMessage":
                return None
            wait = float(values.get("WaitTimeSeconds") or 0)
            short = urlencode(
                [(k, "0" if k == "WaitTimeSeconds" else v) for k, v in fields]
            ).encode()
    except (ValueError, TypeError, AttributeError):
        return None  # malformed: let moto answer it
    # Without WaitTimeSeconds moto would use the queue's own default wait; none of our queues
    # sets one, so such a request simply goes through as it is.
    if not 0 < wait <= 20:
        return None
    return wait, short


def _has_messages(body: bytes) -> bool:
    try:
        answer = json.loads(body)
    except ValueError:
        return b"<Message>" in body  # the XML (query protocol) answer
    return isinstance(answer, dict) and bool(answer.get("Messages"))


class Emulator:
    """`with Emulator() as aws:` serves moto on 127.0.0.1 (a free port unless given)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._host = host
        self._port = port
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        assert self._server is not None, "start() first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def environment(self) -> dict[str, str]:
        """What a process needs in its environment to use this emulator through boto3/pynamodb."""
        return {**FAKE_CREDENTIALS, "AWS_ENDPOINT_URL": self.endpoint}

    def start(self) -> Emulator:
        # DynamoDB has allowed 100 items per transaction since 2022; moto still says 25.
        dynamodb_responses.TRANSACTION_MAX_ITEMS = 100
        _make_transactions_cheap()
        emulator_dynamodb.install()
        # One log line per AWS call drowns everything else out.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        app = _Serialised(DomainDispatcherApplication(create_backend_app))
        self._server = make_server(
            self._host, self._port, app, threaded=True, request_handler=MotoRequestHandler
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="aws-emulator", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
